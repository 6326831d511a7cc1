"""The run side of `siteclient follow`: the agent, the planner, the executor, outputs and
delivery."""

"""The container runtime: the run specification, the sandbox options, and the Docker adapter."""

"""The site client: follows the ledger, decides what may run, runs it locked down, signs results."""

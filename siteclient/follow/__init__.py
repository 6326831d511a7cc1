"""Following the registry: the follower (a thin I/O shell over `ledger.trust`) and its persisted
state."""

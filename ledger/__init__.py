"""The ledger core: canonical encoding, events, entries, Merkle log, checkpoints, rules, store."""

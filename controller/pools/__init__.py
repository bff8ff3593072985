"""Pools: their records in memory, their agents' live reports, desired state, runtimes."""

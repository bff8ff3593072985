"""Bots: their lifecycle as writes of desired state, and where each one runs."""

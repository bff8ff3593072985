"""Backups of bots' trade databases: restore points, restores, retention."""

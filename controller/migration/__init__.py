"""Migration: legacy containers (one per bot) into pools and back; plan, runs, log, CLI."""

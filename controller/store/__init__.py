"""The SQLite store: schema, allocation, desired-state writes and the events table."""

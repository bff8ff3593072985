"""Code shared by the ftpool controller and agent."""

__version__ = "0.1.0"

"""HTTP API: one module per resource, each a class whose methods are route handlers."""

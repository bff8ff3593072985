"""The command-line client of a running controller: `ftpool bots|pools|events|status`.

A thin, synchronous client of the HTTP API (docs/cli.md): config.py finds the controller and
the token, http.py calls it, output.py prints tables or JSON, command.py turns errors into
messages and exit codes, and one module per command group holds the commands.
"""

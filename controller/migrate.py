"""`python -m controller.migrate`: the migration tool (controller/migration/cli.py)."""

import sys

from controller.migration.cli import main

if __name__ == "__main__":
    sys.exit(main())

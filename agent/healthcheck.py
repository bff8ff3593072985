"""`python -m agent.healthcheck`: the pool container's HEALTHCHECK command."""

import sys

from agent.health import main

if __name__ == "__main__":
    sys.exit(main())

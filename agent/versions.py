"""The FreqTrade version the pool's bots run, as the agent announces it in its hello.

FreqTrade is not installed in the agent's own environment (the pool image keeps it in
ftuser's user site, PYTHONUSERBASE; a local pool in the controller's environment), so its
package metadata is looked up there: no import of FreqTrade, read once per agent.
"""

from __future__ import annotations

import functools
import importlib.metadata
import site
import sys


@functools.cache
def freqtrade_version() -> str:
    """FreqTrade's installed version, or "" if it is not found."""
    paths = [site.getusersitepackages(), *sys.path]
    for dist in importlib.metadata.distributions(path=paths):
        if (dist.metadata["Name"] or "").lower() == "freqtrade":
            return str(dist.version)[:64]
    return ""

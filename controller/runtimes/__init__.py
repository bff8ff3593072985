"""Pool runtimes: how a pool (supervisord + agent + bots) is created, inspected and removed."""

from controller.runtimes.base import PoolLaunch, PoolRuntime, PoolUsage, RuntimeState

__all__ = ["PoolLaunch", "PoolRuntime", "PoolUsage", "RuntimeState"]

"""Which image each pool runs, beside the configured POOL_IMAGE: for /api/pool/status,
GET /api/pool/upgrade and the metric `ftpool_pools_outdated_image`.

Asked of the runtime at most every `max_age` seconds (a Docker inspect per pool), and
kept for the Prometheus collector, which cannot wait on Docker. The routes ask for an
answer at most FRESH seconds old, so dashboards polling them cost one census per FRESH
seconds whatever their number; a pool's runtime made or removed by the controller (a
creation, an upgrade's replacement, a removal) makes the next call ask again at once, so
only a change made outside the controller (an image re-tagged) can show late.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from controller.errors import FtpoolError
from controller.pools.manager import PoolManager
from controller.runtimes.base import ImageInfo

log = structlog.get_logger("controller.upgrade")
FRESH = 5.0  # seconds: the age of a census /api/pool/status and /api/pool/upgrade accept


class ImageCensus(Collector):
    def __init__(
        self, pools: PoolManager, max_age: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.pools = pools
        self.max_age = max_age
        self.clock = clock
        self.target: ImageInfo | None = None
        self.images: dict[str, ImageInfo | None] = {}
        self._taken_at: float | None = None
        self._changes = -1  # the pools' runtime changes the last census saw

    def _current(self, max_age: float) -> bool:
        return (
            self._taken_at is not None
            and self._changes == self.pools.lifecycle.runtime_changes
            and self.clock() - self._taken_at < max_age
        )

    async def refresh(self, max_age: float | None = None) -> None:
        """Ask the runtime again, unless its last answer is younger than `max_age` and no
        pool's runtime was made or removed since."""
        runtime = self.pools.runtime
        if not runtime.has_images or self._current(self.max_age if max_age is None else max_age):
            return
        changes = self.pools.lifecycle.runtime_changes  # one made meanwhile: asked again
        try:
            self.target = await runtime.resolve_image()
            self.images = {p: await runtime.image_of(p) for p in list(self.pools.registry.pools)}
        except FtpoolError as exc:
            log.warning("image_census_failed", error=str(exc))
            return
        self._taken_at, self._changes = self.clock(), changes

    def outdated(self) -> list[str]:
        """Pools whose container runs another image than POOL_IMAGE names now."""
        if self.target is None:
            return []
        return sorted(p for p, image in self.images.items()
                      if image is not None and image.id != self.target.id
                      and p in self.pools.registry.pools)  # fmt: skip

    def pool_view(self, pool_id: str) -> dict[str, Any] | None:
        """The pool's image for /api/pool/status (None where the runtime has none)."""
        image = self.images.get(pool_id)
        if image is None:
            return None
        live = self.pools.registry.live.get(pool_id)
        current = self.target is not None and image.id == self.target.id
        return {**image.to_json(), "current": current,
                "freqtrade": (live.freqtrade_version if live else "") or None}  # fmt: skip

    def summary(self) -> dict[str, Any]:
        return {
            "poolImage": self.target.to_json() if self.target else None,
            "outdatedPools": self.outdated(),
        }

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "ftpool_pools_outdated_image",
            "Pools whose container runs another image than POOL_IMAGE names",
            value=len(self.outdated()),
        )

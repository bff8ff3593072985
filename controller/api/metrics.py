"""/metrics: the controller's Prometheus metrics in the text exposition format."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controller.api.middleware import AUTHENTICATOR, public
from controller.metrics import Metrics


class APIMetrics:
    def __init__(
        self, metrics: Metrics, public_scrape: bool,
        refresh: Callable[[], Awaitable[None]] | None = None,
    ) -> None:  # fmt: skip
        self.metrics = metrics
        self.public_scrape = public_scrape
        self.refresh = refresh  # brings what collectors read from outside up to date

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/metrics", self.scrape)]

    @public
    async def scrape(self, request: web.Request) -> web.Response:
        # Pool ids and fleet size are operational detail: admin only unless METRICS_PUBLIC.
        if not self.public_scrape:
            request.app[AUTHENTICATOR].from_header(
                request.headers.get("Authorization")
            ).require_admin()
        if self.refresh is not None:
            await self.refresh()
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

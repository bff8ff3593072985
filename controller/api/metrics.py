"""/metrics: the controller's Prometheus metrics in the text exposition format."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controller.api.middleware import AUTHENTICATOR, public
from controller.metrics import Metrics


class APIMetrics:
    def __init__(self, metrics: Metrics, public_scrape: bool) -> None:
        self.metrics = metrics
        self.public_scrape = public_scrape

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/metrics", self.scrape)]

    @public
    async def scrape(self, request: web.Request) -> web.Response:
        # Pool ids and fleet size are operational detail: admin only unless METRICS_PUBLIC.
        if not self.public_scrape:
            request.app[AUTHENTICATOR].from_header(
                request.headers.get("Authorization")
            ).require_admin()
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

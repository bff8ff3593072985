"""The bot manager as it is built: its collaborators are given to it, never set later."""

from __future__ import annotations

import pytest

from controller.auth import ADMIN
from controller.bots.manager import BotManager, BotsConfig, ProvisionRequest
from controller.errors import Conflict
from controller.runtimes.legacy import LegacyContainers
from tests.unit.controller.apps import Api


class FoundOnTheHost(LegacyContainers):
    """Docker's legacy containers, as discovery would list them."""

    def __init__(self, ids: set[str]) -> None:
        self.ids = ids

    async def known_ids(self) -> set[str]:
        return self.ids


async def test_a_legacy_bots_id_cannot_be_provisioned(api: Api) -> None:
    c = api.controller
    bots = BotManager(
        c.pools, BotsConfig.from_settings(c.settings), placement=c.bots.placement,
        metrics=c.metrics, guard=c.bots.guard, legacy=FoundOnTheHost({"leg-1"}),
    )  # fmt: skip
    with pytest.raises(Conflict, match="already exists"):
        await bots.provision(ADMIN, ProvisionRequest("leg-1", None, {}))
    assert (await bots.provision(ADMIN, ProvisionRequest("new-1", None, {}))).id == "new-1"


async def test_without_docker_there_are_no_legacy_bots_to_avoid(api: Api) -> None:
    assert api.controller.bots.legacy is None  # the unit tests' runtime is not Docker's
    assert (await api.provision(instanceId="leg-1"))["instanceId"] == "leg-1"

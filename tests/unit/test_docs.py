"""The docs (README and docs/) document every setting and every route the controller serves."""

import re
from pathlib import Path

from common.settings import AgentSettings, ControllerSettings, describe
from controller.app import build, create_app
from tests.support import make_settings

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
# Settings of a part with a page of its own (docs/market-data.md) may be documented there.
DOCS = README + "".join(page.read_text() for page in sorted((ROOT / "docs").glob("*.md")))


def test_every_setting_is_documented():
    for cls in (ControllerSettings, AgentSettings):
        for env, _default, _doc in describe(cls):
            assert f"| `{env}` |" in DOCS, env


def test_every_route_is_documented(tmp_path):
    app = create_app(build(make_settings(tmp_path)))
    for resource in app.router.resources():
        path = resource.canonical
        documented = re.sub(r"\{tail[^}]*\}", "<path>", path)
        assert documented in README or path in README, path

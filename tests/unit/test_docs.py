"""The docs: every setting in docs/settings.md, every route in docs/http-api.md, every relative
link in the README and docs/ reaching an existing file and heading, and the README linking
every page in docs/."""

import re
from pathlib import Path

from common.settings import (
    AgentSettings,
    ClientSettings,
    ControllerSettings,
    HealthcheckSettings,
    describe,
)
from controller.app import build, create_app
from tests.support import make_settings

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(DOCS.glob("*.md"))

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
# [text](target) or [text](target "title"); images too. Not inside `code`.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def prose(text: str) -> list[str]:
    """The lines of a markdown text outside fenced code blocks, with inline code removed."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(re.sub(r"`[^`]*`", "", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, with GitHub's -1, -2 for repeated ones."""
    seen: dict[str, int] = {}
    found = set()
    fenced = False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    """The relative link targets of a markdown file (no URLs with a scheme, no mailto)."""
    text = "\n".join(prose(path.read_text()))  # a link's text may wrap onto the next line
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def test_slug_follows_github():
    assert slug("Memory: pooled vs. one container per bot") == (
        "memory-pooled-vs-one-container-per-bot"
    )
    assert slug("Pools (the seed's endpoints)") == "pools-the-seeds-endpoints"
    assert slug("The `local` runtime") == "the-local-runtime"


def test_every_setting_is_documented():
    settings = (DOCS / "settings.md").read_text()
    for cls in (ControllerSettings, AgentSettings, HealthcheckSettings, ClientSettings):
        for env, _default, _doc in describe(cls):
            assert f"| `{env}` |" in settings, env


def test_every_route_is_documented(tmp_path):
    api = (DOCS / "http-api.md").read_text()
    app = create_app(build(make_settings(tmp_path)))
    for resource in app.router.resources():
        path = resource.canonical
        documented = re.sub(r"\{tail[^}]*\}", "<path>", path)
        assert documented in api or path in api, path


def test_every_relative_link_resolves():
    broken = []
    for page in [README, *PAGES]:
        for target in links(page):
            file, _, anchor = target.partition("#")
            linked = (page.parent / file).resolve() if file else page
            where = f"{page.relative_to(ROOT)}: {target}"
            if not linked.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{where} (no such heading)")
    assert not broken, broken


def test_the_readme_links_every_page():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(README)}
    assert PAGES
    for page in PAGES:
        assert page.resolve() in linked, page.name

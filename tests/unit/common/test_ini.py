"""INI values for supervisord: escaped so that what supervisord reads is what we meant."""

from __future__ import annotations

import pytest
from supervisor.datatypes import dict_of_key_value_pairs
from supervisor.options import UnhosedConfigParser

from common.ini import RenderError, ini_environment, ini_value


def read_back(line_value: str, key: str = "value") -> str:
    """What supervisord reads for `key=<line_value>`, %-expansion included."""
    parser = UnhosedConfigParser()
    parser.read_string(f"[program:x]\n{key}={line_value}\n")
    return parser.saneget("program:x", key, expansions={})


@pytest.mark.parametrize(
    "value",
    ["plain", "/a/b c/d", "100%", "%(here)s", "%%", "semi;colon", "hash#tag", "'quoted'", "é"],
)
def test_values_read_back_unchanged(value: str) -> None:
    assert read_back(ini_value(value)) == value


def test_percent_is_doubled() -> None:
    assert ini_value("50% and %(ENV_HOME)s") == "50%% and %%(ENV_HOME)s"


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\x00b", "\n[program:evil]\ncommand=sh"])
def test_line_breaks_and_nul_are_refused(value: str) -> None:
    with pytest.raises(RenderError):
        ini_value(value)


@pytest.mark.parametrize("value", ["a ;b", "a #b", "a\t;b", "path ;rm -rf"])
def test_inline_comments_are_refused(value: str) -> None:
    # supervisord's parser would cut the value at the comment and run something else.
    with pytest.raises(RenderError):
        ini_value(value)


def test_environment_round_trips_through_supervisord() -> None:
    env = {
        "CONTROLLER_URL": "ws://127.0.0.1:5000/api/agents/ws",
        "POOL_TOKEN": "abc123",
        "POOL_DIR": "/tmp/with space/pool",
        "LIST": "a,b,c",
        "PCT": "50%",
        "APOS": "it's",
        "EMPTY": "",
    }
    rendered = ini_environment(env)
    assert dict_of_key_value_pairs(read_back(rendered, "environment")) == env


@pytest.mark.parametrize(
    "env",
    [
        {"BAD KEY": "x"},
        {"1KEY": "x"},
        {"K": 'has "quote'},
        {"K": "back\\slash"},
        {"K": "line\nbreak"},
        {"K": "'leading"},
        {"K": "trailing'"},
        {"K": "a ;comment"},
    ],
)
def test_environment_refuses_what_it_cannot_render(env: dict[str, str]) -> None:
    with pytest.raises(RenderError):
        ini_environment(env)

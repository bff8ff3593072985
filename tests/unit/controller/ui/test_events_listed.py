"""The dashboard listens to every event type the controller emits (an EventSource gets a
named event only through a listener of that name)."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[4]
# An emit call's type: the string literals before its first keyword argument
# (`"a" if x else "b"` included); migration's `_emit(kind, ...)` helper too.
EMIT = re.compile(r"emit\((.*?)\w+=", re.S)


# ... and a constant's (`emit(MEMORY_LIMIT, ...)`, its value set elsewhere).
EMIT_CONSTANT = re.compile(r"emit\(\s*([A-Z][A-Z_]+),")
TYPE = r'"((?:bot|pool|agent|backup|market_data|upgrade)_[a-z_]+)"'


def emitted_types() -> set[str]:
    found = set()
    constants: set[str] = set()
    texts = [path.read_text() for path in (ROOT / "controller").rglob("*.py")]
    for text in texts:
        # ... and the types a variable passed to emit was given (`kind = "a" if x else "b"`).
        for head in EMIT.findall(text) + re.findall(r"\bkind = (.*)", text):
            found.update(re.findall(TYPE, head))
        constants.update(EMIT_CONSTANT.findall(text))
    for text in texts:
        for name in constants:
            found.update(re.findall(rf"^{name} = {TYPE}", text, re.M))
    return found


def test_every_emitted_event_type_is_followed():
    script = (ROOT / "controller" / "ui" / "static" / "dashboard.js").read_text()
    listed = set(re.search(r"EVENT_TYPES = \[(.*?)\];", script, re.S).group(1).split('"')[1::2])
    types = emitted_types()
    assert {"bot_state", "bot_moved", "bot_migrated", "backup_failed", "bot_memory_limit"} <= types
    assert types <= listed, types - listed

"""Immortal objects (PEP 683) for the preloader: its objects' pages stay shared with its bots.

A bot forked from the preloader writes the reference count of every preloaded object it
touches: each such write copies a whole page of the preloader into the bot (copy on write),
even when the count goes back to what it was. CPython 3.12 and 3.13 leave the count of an
immortal object alone: on a 64-bit build without free threading, an object whose reference
count has the low 32 bits all set (0xFFFFFFFF, `_Py_IMMORTAL_REFCNT` in Include/object.h of
3.12 and Include/refcount.h of 3.13, what `_Py_SetImmortal` writes) is never written by
Py_INCREF (a saturated add that gives 0 in 32 bits returns early) nor by Py_DECREF (the
low 32 bits read as a negative int32 return early), and never deallocated. So the preloader,
once it has imported and warmed up everything, makes every object it can reach immortal,
just before it forks.

Where the representation differs (3.11 and older have no immortal objects; 3.14 changed
the immortal values and flags; free-threaded builds keep counts elsewhere; debug builds
count references in total) nothing is written. Like the preloader, this file runs under
FreqTrade's interpreter and uses the standard library only.

What immortality changes, for the objects that exist before the fork (never for a bot's own
objects): they are never freed (their memory is the preloader's, shared, anyway), so their
finalizers (`__del__`, weakref callbacks) never run, and `sys.getrefcount` of one reports
4294967295, so code that decides by reference count sees a widely shared object: CPython's
in-place string concatenation and numpy's temporary elision copy instead (same result),
`ndarray.resize` refuses to resize such an array in place, pandas' chained-assignment
warning stays silent for such a DataFrame.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import sysconfig
import time
import types

SETTINGS = ("auto", "on", "off")
SUPPORTED = ((3, 12), (3, 13))  # versions whose representation (above) was checked
IMMORTAL_REFCNT = 0xFFFFFFFF
LOW_32_BITS = 0xFFFFFFFF
SIGN_32 = 0x80000000


def unsupported(
    version: tuple[int, int], pointer_bytes: int, gil_disabled: bool, ref_debug: bool
) -> str:
    """Why this interpreter's objects cannot be made immortal here ("" when they can)."""
    if version not in SUPPORTED:
        supported = ", ".join(f"{major}.{minor}" for major, minor in SUPPORTED)
        return f"Python {version[0]}.{version[1]} (immortal objects are made on {supported} only)"
    if pointer_bytes != 8:
        return "a 32-bit build"
    if gil_disabled:
        return "a free-threaded build"
    if ref_debug:
        return "a debug build"
    return ""


def this_interpreter() -> str:
    """unsupported() for the running interpreter."""
    return unsupported(
        tuple(sys.version_info[:2]),
        ctypes.sizeof(ctypes.c_void_p),
        bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        hasattr(sys, "gettotalrefcount"),
    )


def decide(setting: str, reason: str) -> tuple[bool, str]:
    """Whether to make the preloader's objects immortal, and what to log about it.
    `reason`: unsupported()'s answer. `on` never overrides an unsupported interpreter:
    writing another layout's reference counts would corrupt them."""
    if setting == "off":
        return False, "immortal objects off (PRELOAD_IMMORTAL=off)"
    if reason:
        note = "" if setting == "auto" else " despite PRELOAD_IMMORTAL=on"
        return False, f"immortal objects skipped{note}: {reason}"
    return True, ""


def is_immortal(obj: object) -> bool:
    return sys.getrefcount(obj) & LOW_32_BITS >= SIGN_32


def code_parts(code: types.CodeType) -> tuple:
    """What a code object holds (code objects are not tracked by the collector, so
    gc.get_referents finds nothing in them). Only attributes stored as they are: names such
    as co_varnames are built anew on each access."""
    return (
        code.co_consts, code.co_names, code.co_filename, code.co_name, code.co_qualname,
        code.co_linetable, code.co_exceptiontable,
    )  # fmt: skip


def make_immortal(roots: list) -> int:
    """Make every object reachable from `roots` immortal; returns how many were made so.
    The mark is its own visited set: an object already immortal is not walked again (nor
    are the ones statically allocated, immortal from the start)."""
    at = ctypes.c_ssize_t.from_address
    referents = gc.get_referents
    code_type = types.CodeType
    count = 0
    stack = roots
    while stack:
        obj = stack.pop()
        if is_immortal(obj):
            continue
        at(id(obj)).value = IMMORTAL_REFCNT
        count += 1
        stack.extend(referents(obj))
        if type(obj) is code_type:
            stack.extend(code_parts(obj))
    return count


def immortalize(setting: str, log) -> None:
    """The preloader's step, after its warm-ups and gc.collect(), before gc.freeze() (which
    hides the objects from gc.get_objects()): everything the collector tracks, and what it
    refers to, becomes immortal."""
    run, message = decide(setting, this_interpreter())
    if not run:
        log(message)
        return
    start = time.monotonic()
    count = make_immortal(gc.get_objects())
    log(f"{count} objects made immortal in {time.monotonic() - start:.1f} s")

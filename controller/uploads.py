"""A body an agent streams to the controller, written to a private file as it comes: the
restore points it sends (controller/backups/receive.py) and a moving bot's archive
(controller/moves/agent_files.py)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from collections.abc import AsyncIterator
from pathlib import Path

from controller.errors import BadRequest, PayloadTooLarge


async def write_upload(
    path: Path, chunks: AsyncIterator[bytes], digest: str, *, limit: int,
    what: str, bounded_as: str, exclusive: bool, sync: bool,
) -> None:  # fmt: skip
    """Write `chunks` to `path` (0600, never through a link; `exclusive`: a new file),
    at most `limit` bytes, fsynced if `sync`; BadRequest unless their sha256 is `digest`.
    The errors name the body (`what`, "the point") and its bound (`bounded_as`, "a
    database"): PayloadTooLarge "the point is larger than a database may be"."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_EXCL if exclusive else os.O_TRUNC)
    size, sha = 0, hashlib.sha256()
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as out:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"{what} is larger than {bounded_as} may be")
            sha.update(chunk)
            await asyncio.to_thread(out.write, chunk)
        if sync:
            await asyncio.to_thread(_sync, out)
    if not hmac.compare_digest(sha.hexdigest(), digest):
        raise BadRequest(f"{what}'s sha256 does not match")


def _sync(out: object) -> None:
    out.flush()  # type: ignore[attr-defined]
    os.fsync(out.fileno())  # type: ignore[attr-defined]

"""The directories of bots gone from the desired state: archived (with their logs) under
the pool's archive/, or deleted when purged; a bot whose process still runs keeps its."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import structlog

from agent.programs import bot_id_of, program_name
from agent.supervisor import ProcessInfo
from common.protocol import BotSpec
from common.states import ACTIVE

log = structlog.get_logger("agent.reconcile")


async def archive_removed(
    bots_dir: Path, archive_dir: Path, log_dir: Path,
    wanted: dict[str, BotSpec], purge: set[str], processes: dict[str, ProcessInfo],
) -> None:  # fmt: skip
    """Bot directories of bots no longer wanted are archived, or deleted when purged.
    (Its directory listings run on the loop, as they did in Reconciler: ASYNC240 noted.)"""
    if not bots_dir.exists():  # noqa: ASYNC240
        return
    running = {bot_id_of(n) for n, i in processes.items() if i.state in ACTIVE}
    for bot_dir in list(bots_dir.iterdir()):  # noqa: ASYNC240
        bot_id = bot_dir.name
        if bot_id in wanted or bot_id in running:
            continue
        # Its logs go along: a later bot with the same id must not see them.
        logs = list(log_dir.glob(f"{program_name(bot_id)}.log*"))  # noqa: ASYNC240
        if bot_id in purge:
            await asyncio.to_thread(shutil.rmtree, bot_dir, True)
            for log_file in logs:
                log_file.unlink(missing_ok=True)
            log.info("bot_purged", bot=bot_id)
        else:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            archived = archive_dir / f"{bot_id}-{stamp}"
            await asyncio.to_thread(os.rename, bot_dir, archived)
            for log_file in logs:
                os.rename(log_file, archived / log_file.name)
            log.info("bot_archived", bot=bot_id)

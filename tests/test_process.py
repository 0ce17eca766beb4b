"""Stopping the processes ocprobe starts: by their PID or the process group they lead, never by name."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from ocprobe.process import terminate


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_terminate_group_also_stops_members_that_ignore_sigterm() -> None:
    async def scenario() -> int:
        # The leader ends on SIGTERM; its background child ignores SIGTERM and would outlive it.
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "(trap '' TERM; sleep 30) & sleep 30", start_new_session=True)
        await asyncio.sleep(0.3)  # both started
        await terminate(proc, 2.0, group=True)
        assert proc.returncode == -signal.SIGTERM
        return proc.pid

    pgid = asyncio.run(scenario())
    deadline = time.monotonic() + 5
    while _group_alive(pgid) and time.monotonic() < deadline:  # SIGKILL is delivered asynchronously
        time.sleep(0.05)
    assert not _group_alive(pgid)


def test_terminate_a_finished_child_is_a_no_op() -> None:
    async def scenario() -> int | None:
        proc = await asyncio.create_subprocess_exec("true")
        await proc.wait()
        await terminate(proc, 1.0)
        return proc.returncode

    assert asyncio.run(scenario()) == 0

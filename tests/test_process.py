"""Stopping the processes ocprobe starts: by their PID or the process group they lead, never by name."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

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


def test_the_gateway_child_dies_with_ocprobe_even_of_sigkill(tmp_path: Path) -> None:
    """Before: SIGKILL of ocprobe left the embedded gateway running with parent 1, answering /healthz."""
    import subprocess
    import sys

    from ocprobe.process import die_with_parent

    if not die_with_parent():
        pytest.skip("no parent-death signal on this platform (Linux with util-linux's setpriv)")
    probe = subprocess.Popen([sys.executable, "-m", "ocprobe", "sequential", "-n", "2000", "--latency-ms", "200", "-q",
                              "--run-dir", str(tmp_path / "run")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "OCPROBE_CACHE": str(tmp_path / "cache")})
    children: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while not children and time.monotonic() < deadline:
            try:
                children = [int(pid) for pid in Path(f"/proc/{probe.pid}/task/{probe.pid}/children").read_text().split()]
            except OSError:
                pass
            time.sleep(0.1)
        assert children, "the gateway child did not start"
        time.sleep(1.0)  # calls under way
    finally:
        probe.kill()
        probe.wait(timeout=30)
    deadline = time.monotonic() + 10
    alive = children
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in children if Path(f"/proc/{pid}").exists()
                 and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[:1]]
        time.sleep(0.1)
    assert not alive, f"children {alive} outlived ocprobe"


def _limited(soft: int, hard: int):  # type: ignore[no-untyped-def]
    import resource

    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_too_few_open_files_is_ocprobes_error_said_once(tmp_path: Path) -> None:
    """Before: under ulimit -n 128 with -c 200 the provider ran out of descriptors, 262 calls were classed
    fast_fail (the gateway blamed) and ~125,000 tracebacks went to stderr."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "ocprobe", "concurrent", "-n", "20", "-c", "200", "--transport", "relay"],
                          capture_output=True, text=True, timeout=60, preexec_fn=_limited(128, 128),
                          env={**os.environ, "OCPROBE_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: 200 calls in flight need about 864 open files, and this process may open 128 (ulimit -n): raise "
        "the limit (ulimit -n 864) or lower -c"]


def test_the_soft_limit_is_raised_when_the_hard_one_allows(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "ocprobe", "concurrent", "-n", "60", "-c", "60", "--sessions", "60",
                           "--transport", "relay", "-q"],
                          capture_output=True, text=True, timeout=120, preexec_fn=_limited(64, 4096),
                          env={**os.environ, "OCPROBE_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    assert "60/60 real" in proc.stdout and "Traceback" not in proc.stderr

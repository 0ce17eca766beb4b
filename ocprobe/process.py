"""A gateway process ocprobe starts: its output captured to files and fed line by line to a callback,
and stopped by its own PID (SIGTERM, then SIGKILL after a grace period)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, NoReturn

from ocprobe.errors import TargetUnreachable, UsageError

LineCallback = Callable[[str, str, float], None]  # (stream name, line, epoch time)
MAX_LINE = 64 * 1024


# Open files a probe needs: a base for the interpreter, logs and the gateway's process, and per call in
# flight its client socket, the gateway's end of it and, with the in-process provider, the gateway->provider
# connection at both ends.
FILES_BASE, FILES_PER_CALL = 64, 4


def ensure_open_files(concurrency: int) -> None:
    """Raise the soft limit on open files (up to the hard one) when ``concurrency`` calls need more; refuse,
    before anything runs, when even the hard limit is too low: running out of descriptors mid-run looks
    like a gateway failing every call (it was ocprobe's own fault)."""
    try:
        import resource
    except ImportError:  # not on POSIX: nothing to check
        return
    needed = FILES_BASE + FILES_PER_CALL * concurrency
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    ceiling = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
    except (ValueError, OSError):
        ceiling = soft
    if ceiling < needed:
        raise UsageError(f"{concurrency} calls in flight need about {needed} open files, and this process may "
                         f"open {ceiling} (ulimit -n): raise the limit (ulimit -n {needed}) or lower -c")


def die_with_parent() -> tuple[str, ...]:
    """A prefix for a child's argv that has the kernel kill it when ocprobe dies, even of SIGKILL, which no
    finally block outlives (Linux: util-linux's setpriv sets the parent-death signal, then execs the child
    under the same PID). Elsewhere, or without setpriv, nothing: the child is stopped by ocprobe as before."""
    if sys.platform.startswith("linux"):
        setpriv = shutil.which("setpriv")
        if setpriv:
            return (setpriv, "--pdeathsig", "KILL", "--")
    return ()


class ManagedProcess:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_dir: Path,
        name: str,
        env: Mapping[str, str] | None = None,
        on_line: LineCallback | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        """``redact``: applied to every line before it is copied to a file or handed on, so a secret the
        process prints (its token, a provider key) is not stored."""
        self.argv = list(argv)
        self._redact = redact
        self.name = name
        self.env = dict(env) if env is not None else None
        self.stdout_path = log_dir / f"{name}.stdout.log"
        self.stderr_path = log_dir / f"{name}.stderr.log"
        self._on_line = on_line
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._stdout_lines: asyncio.Queue[str] = asyncio.Queue()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    async def start(self) -> None:
        self.stdout_path.parent.mkdir(parents=True, exist_ok=True)
        self._proc = await asyncio.create_subprocess_exec(
            *die_with_parent(), *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            limit=MAX_LINE,
            # Its own session: a Ctrl-C in the terminal reaches ocprobe, which then stops it in order.
            start_new_session=True,
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._pump(self._proc.stdout, "stdout", self.stdout_path, self._stdout_lines)),
            asyncio.create_task(self._pump(self._proc.stderr, "stderr", self.stderr_path, None)),
        ]

    async def _pump(
        self, stream: asyncio.StreamReader, name: str, path: Path, lines: asyncio.Queue[str] | None
    ) -> None:
        """Copy a stream to ``path`` and hand on its lines. It is read in chunks and split here, so a
        flood never holds more than MAX_LINE of a line, and a longer line goes on in pieces, not lost."""
        pending = b""
        with path.open("ab") as copy:
            while True:
                chunk = await stream.read(MAX_LINE)
                pieces = (pending + chunk).split(b"\n")
                # Complete lines keep their newline in the copy; the rest waits for more, up to MAX_LINE.
                done = [(raw, b"\n") for raw in pieces[:-1]]
                pending = pieces[-1]
                while len(pending) > MAX_LINE or (pending and not chunk):
                    done.append((pending[:MAX_LINE], b""))
                    pending = pending[MAX_LINE:]
                at = time.time()
                for raw, end in done:
                    self._line(name, raw, end, at, copy, lines)
                copy.flush()
                if not chunk:
                    break

    def _line(self, name: str, raw: bytes, end: bytes, at: float, copy: BinaryIO, lines: asyncio.Queue[str] | None) -> None:
        if self._redact is not None:
            # surrogateescape: bytes that are not UTF-8 reach the copy unchanged
            raw = self._redact(raw.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
        copy.write(raw + end)
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        if lines is not None:
            lines.put_nowait(line)
        if self._on_line is not None:
            self._on_line(name, line, at)

    async def wait(self) -> int:
        """Until the process exits and its output is drained; its exit code."""
        assert self._proc is not None
        code = await self._proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        return code

    async def next_stdout_line(self, timeout: float) -> str:
        """The next stdout line; raises TargetUnreachable if the process exits or the time runs out."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await asyncio.wait_for(self._stdout_lines.get(), 0.1)
            except asyncio.TimeoutError:
                pass
            if self._proc.returncode is not None and self._stdout_lines.empty():
                tail = self.stderr_tail()
                raise TargetUnreachable(
                    f"{self.name} exited with code {self._proc.returncode} before it was ready"
                    + (f": {tail}" if tail else "")
                )
            if time.monotonic() > deadline:
                raise TargetUnreachable(f"{self.name} was not ready within {timeout:g}s (logs: {self.stderr_path})")

    def stderr_tail(self, limit: int = 300) -> str:
        return last_line(self.stderr_path, limit)

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM to our child's PID, SIGKILL to the same PID if it has not exited after ``grace``."""
        proc = self._proc
        if proc is None:
            return
        await terminate(proc, grace)
        await asyncio.gather(*self._readers, return_exceptions=True)
        self._readers = []


def last_line(path: Path, limit: int) -> str:
    """The last line of a process's log (at most ``limit`` characters), or "" if it has none."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip()[:limit] if lines else ""


async def terminate(proc: asyncio.subprocess.Process, grace: float, *, group: bool = False) -> None:
    """SIGTERM to our child ``proc`` (with ``group``, to the process group it leads), SIGKILL after ``grace``
    seconds if it has not exited. Only ever by its PID: nothing is stopped by name."""
    send = os.killpg if group else os.kill
    try:
        if proc.returncode is None:
            send(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except asyncio.TimeoutError:
                send(proc.pid, signal.SIGKILL)
                await proc.wait()
        if group:  # the leader is gone; members that ignored SIGTERM and outlived it go too
            os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # nothing (left) to stop
        pass


def exit_now(code: int) -> NoReturn:
    """End this process at once, skipping the interpreter's teardown (freeing the ~400 modules aiohttp, rich
    and websockets bring: tens of ms at the end of every run). Only for a process whose files are closed and
    whose children are stopped: its buffered stdout and stderr are flushed, nothing else runs."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a reader that went away (ocprobe ... | head): nothing left to tell it
        pass
    os._exit(code)

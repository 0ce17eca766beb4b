"""Watch a gateway's logs for known error patterns and keep timestamped matches.

Lines come from two places: log files tailed by polling (paths may be globs, re-expanded on every
poll so a daily log file created mid-run is picked up) and lines of a process's stderr/stdout handed
in with :meth:`LogWatcher.feed_line`. The probe later ties each :class:`LogMatch` to the call whose
time window holds it, so the time of a match is the log's own timestamp when the line carries one.

Files are tracked by identity (device, inode) and kept open: a rotated (renamed) or deleted file is
still drained through its open handle before it is let go, a renamed file that still matches the
globs is not read again from the start, and a file recreated under the same path is read from 0. A
file truncated in place (copytruncate) is read from 0 again, even when it has grown past the old
offset by the next poll: the bytes just before the offset are remembered and compared. Each poll
reads everything written before it began, a chunk at a time.

Nothing slow runs on the event loop that times the calls: a poll (globbing, reading, matching) runs in a
worker thread, globs are expanded at most once a second and to a bounded number of entries, and patterns
are RE2 (``ocprobe.patterns``), linear in the line.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import re
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

from ocprobe.models import LogMatch
from ocprobe.patterns import compile_pattern

DEFAULT_PATTERNS: tuple[str, ...] = ("ReplyRunAlreadyActiveError", "followup queue drain failed")

CHUNK = 1024 * 1024  # bytes read at a time: a flooding log cannot stall the event loop
MARK = 64  # bytes before the offset remembered to notice a file rewritten in place
MAX_PENDING = CHUNK  # a "line" with no newline past this size is taken as complete, bounding memory
MAX_LINE = 2000  # characters of a matched line that are kept
EXPAND_INTERVAL = 1.0  # seconds between two expansions of the globs (files already followed are read every poll)
MAX_GLOB_ENTRIES = 10_000  # paths a glob may yield before the rest are ignored (a tree of symlink loops)
MAX_FILES = 256  # files followed at once; more are ignored, and said so

# CSI sequences (colours, cursor moves), OSC sequences (titles, links) and the remaining
# two-character escapes: gateway consoles are coloured.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_FRACTION = re.compile(r"\.(\d+)")

Ident = tuple[int, int]  # (st_dev, st_ino): a file's identity, independent of its current name


def _clean(text: str) -> str:
    if "\x1b" in text:  # most lines carry no escape: spare the substitution
        text = _ANSI.sub("", text)
    return text.rstrip("\r\n")


def _parse_time(value: str) -> float | None:
    """Epoch seconds of an ISO 8601 time, or None when it is not one."""
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"  # Python < 3.11 does not read "Z"
    # Python < 3.11 reads only 3 or 6 fractional digits: normalise to microseconds.
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.timestamp()  # a naive time is the local time of the machine that wrote it


def _line_time(line: str) -> float | None:
    """The ``time`` field of a JSON-object log line (OpenClaw writes one object per line)."""
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: nesting too deep for the parser
        return None
    value = record.get("time") if isinstance(record, dict) else None
    return _parse_time(value) if isinstance(value, str) else None


@dataclass
class _Tail:
    path: str
    ident: Ident
    offset: int  # bytes of the file already consumed (complete lines plus ``pending``)
    fh: BinaryIO | None = None  # None while the file cannot be opened (e.g. permissions)
    pending: bytearray = field(default_factory=bytearray)  # a partial line awaiting its newline
    mark: bytes = b""  # the bytes just before ``offset``, as read


class LogWatcher:
    def __init__(
        self,
        patterns: Sequence[str] = DEFAULT_PATTERNS,
        paths: Sequence[str] = (),
        *,
        poll_interval: float = 0.05,
    ) -> None:
        # Duplicates are dropped so a line never yields two matches for one pattern.
        self._patterns = [(source, compile_pattern(source)) for source in dict.fromkeys(patterns)]
        self._paths = [os.path.expanduser(path) for path in paths]
        self._poll_interval = poll_interval
        self._matches: list[LogMatch] = []
        self._tails: dict[Ident, _Tail] = {}
        self._task: asyncio.Task[None] | None = None
        self._polling = asyncio.Lock()  # a poll runs in a thread: two must not read one file at once
        self._expanded: list[tuple[str, os.stat_result]] = []  # the globs' files at the last expansion
        self._expanded_at = float("-inf")  # monotonic
        self.skipped_files = 0  # files under the globs beyond MAX_FILES, not followed
        self._running = False
        self._stopped = False

    async def start(self) -> None:
        if self._running or self._stopped:
            return
        if self._paths:
            await asyncio.to_thread(self._baseline)
        self._running = True
        if self._paths:  # with no file to tail, a poll loop would only wake the process every 50 ms
            self._task = asyncio.create_task(self._run())

    def _baseline(self) -> None:
        """The files under the globs now, each followed from its current end (in a worker thread)."""
        self._expanded, self._expanded_at = self._expand(), time.monotonic()
        for path, st in self._expanded:
            ident = (st.st_dev, st.st_ino)
            if ident in self._tails:
                continue  # the same file reached through two globs or a hard link
            tail = _Tail(path, ident, st.st_size)
            self._open(tail)
            if tail.fh is not None:
                # The open handle is authoritative: the file may have grown since the stat.
                tail.offset = os.fstat(tail.fh.fileno()).st_size
                tail.mark = os.pread(tail.fh.fileno(), min(MARK, tail.offset), tail.offset - min(MARK, tail.offset))
            self._tails[ident] = tail

    def add_path(self, path: str) -> None:
        """Watch one more file or glob from now on, e.g. the log file of a gateway ocprobe starts after
        ``start``: files it names that appear later are read from their first line."""
        path = os.path.expanduser(path)
        if path not in self._paths:
            self._paths.append(path)
        if self._running and self._task is None:
            self._task = asyncio.create_task(self._run())

    def add_patterns(self, patterns: Sequence[str]) -> None:
        """Watch for more patterns from now on, e.g. those of the release a target turned out to be."""
        known = {source for source, _ in self._patterns}
        # A new list, not an append: a poll in its thread may be iterating over the old one.
        self._patterns = [*self._patterns,
                          *((source, compile_pattern(source)) for source in dict.fromkeys(patterns) if source not in known)]

    def feed_line(self, source: str, line: str, at: float | None = None) -> None:
        self._match(source, _clean(line), time.time() if at is None else at)

    async def poll(self, *, expand: bool = True) -> None:
        """Read what the logs hold now. ``expand``: look for new files under the globs now (the background
        loop does so at most every EXPAND_INTERVAL)."""
        async with self._polling:
            if self._paths or self._tails:
                await asyncio.to_thread(self._poll, expand)

    def _poll(self, expand: bool) -> None:
        """One poll, in a worker thread: nothing here may hold up the event loop that times the calls."""
        # Before start there is no baseline (everything would count); after stop the files are closed.
        if not self._running:
            return
        now = time.time()
        current: dict[Ident, str] = {}
        for path, st in self._current_files(expand):
            current.setdefault((st.st_dev, st.st_ino), path)
        # Older lines first: files no longer under the globs (rotated away or deleted) are drained
        # to their end and let go, then the files already followed, then files new since last poll.
        for ident in [ident for ident in self._tails if ident not in current]:
            tail = self._tails[ident]
            if tail.fh is not None:
                self._drain(tail, now)
            self._flush(tail, now)
            self._close(tail)
            del self._tails[ident]
        known = [ident for ident in current if ident in self._tails]
        for ident in known + [ident for ident in current if ident not in self._tails]:
            tail = self._tails.get(ident)
            if tail is None:
                # Created (or recreated) after start: every line in it is new.
                tail = self._tails[ident] = _Tail(current[ident], ident, 0)
            tail.path = current[ident]  # a renamed file keeps its place, under its new name
            if tail.fh is None:
                self._open(tail)
            if tail.fh is not None:
                self._drain(tail, now)

    def _current_files(self, expand: bool) -> list[tuple[str, os.stat_result]]:
        """The globs' files: expanded when asked or EXPAND_INTERVAL after the last time; in between, the last
        expansion's files, stat'ed again (a file followed is read every poll, a new one found within a second)."""
        if expand or time.monotonic() - self._expanded_at >= EXPAND_INTERVAL:
            self._expanded = self._expand()
            self._expanded_at = time.monotonic()
            return self._expanded
        current = []
        for path, _ in self._expanded:
            try:
                st = os.stat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                current.append((path, st))
        return current

    async def stop(self) -> None:
        if not self._running:
            return
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])  # unlike awaiting it, does not raise the task's CancelledError
        try:
            await self.poll()
        finally:
            self._running = False
            self._stopped = True
            for tail in self._tails.values():
                self._close(tail)
            self._tails.clear()
        failure = None if task is None or task.cancelled() else task.exception()
        if failure is not None:
            raise failure  # polling died of a bug: it must not pass silently

    @property
    def matches(self) -> list[LogMatch]:
        return list(self._matches)

    def counts(self) -> dict[str, int]:
        counts = {source: 0 for source, _ in self._patterns}
        for match in self._matches:
            counts[match.pattern] += 1
        return counts

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            await self.poll(expand=False)

    def _expand(self) -> list[tuple[str, os.stat_result]]:
        """Regular files under the globs, in a stable order; anything else (a FIFO would block
        the reader, a directory cannot be tailed) and files vanishing meanwhile are left out."""
        found: list[tuple[str, os.stat_result]] = []
        skipped = 0
        for pattern in self._paths:
            paths = []
            for n, path in enumerate(glob.iglob(pattern, recursive=True)):
                if n >= MAX_GLOB_ENTRIES:
                    break
                paths.append(path)
            for path in sorted(paths):
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                if len(found) >= MAX_FILES:
                    skipped += 1
                    continue
                found.append((path, st))
        self.skipped_files = skipped
        return found

    def _open(self, tail: _Tail) -> None:
        try:
            fh = open(tail.path, "rb")  # held open across polls so a rotated file can be drained
        except OSError:
            return  # unreadable for now: tried again on the next poll
        # The path may have been replaced since it was stat'ed; that file is seen on the next poll.
        st = os.fstat(fh.fileno())
        if (st.st_dev, st.st_ino) != tail.ident:
            fh.close()
            return
        tail.fh = fh

    def _close(self, tail: _Tail) -> None:
        if tail.fh is not None:
            tail.fh.close()
            tail.fh = None

    def _drain(self, tail: _Tail, now: float) -> None:
        """Read what the file holds now, a chunk at a time; lines written meanwhile wait for the next poll."""
        try:
            end = os.fstat(tail.fh.fileno()).st_size if tail.fh is not None else 0
        except OSError:
            return
        while self._read(tail, now) and tail.offset < end:
            pass

    def _read(self, tail: _Tail, now: float) -> bool:
        """Consume up to one chunk of new bytes; True while bytes remain to be read."""
        assert tail.fh is not None
        try:
            fd = tail.fh.fileno()
            size = os.fstat(fd).st_size
            if size < tail.offset or (tail.mark and os.pread(fd, len(tail.mark), tail.offset - len(tail.mark)) != tail.mark):
                # Truncated in place (and maybe written again past the old offset): read it from 0.
                tail.offset = 0
                tail.pending.clear()
                tail.mark = b""
            tail.fh.seek(tail.offset)
            data = tail.fh.read(CHUNK)
        except OSError:
            return False
        tail.offset += len(data)
        tail.mark = (tail.mark + data)[-MARK:]
        tail.pending += data
        *lines, rest = tail.pending.split(b"\n")
        for raw in lines:
            self._file_line(tail.path, raw, now)
        if len(rest) > MAX_PENDING:
            self._file_line(tail.path, rest, now)
            rest = bytearray()
        tail.pending = rest
        return tail.offset < size

    def _flush(self, tail: _Tail, now: float) -> None:
        """A file that is let go will not complete its last line: take it as it is."""
        if tail.pending:
            self._file_line(tail.path, tail.pending, now)
            tail.pending = bytearray()

    def _file_line(self, path: str, raw: bytes | bytearray, now: float) -> None:
        line = _clean(raw.decode("utf-8", errors="replace"))
        hits = self._hits(line)
        if hits:  # the line's own time matters only for a match: parsed only then
            at = _line_time(line)
            self._record(hits, path, line, now if at is None else at)

    def _match(self, source: str, line: str, at: float) -> None:
        self._record(self._hits(line), source, line, at)

    def _hits(self, line: str) -> list[str]:
        return [pattern for pattern, regex in self._patterns if regex.search(line)]

    def _record(self, hits: list[str], source: str, line: str, at: float) -> None:
        self._matches.extend(LogMatch(pattern=pattern, line=line[:MAX_LINE], source=source, at=at) for pattern in hits)

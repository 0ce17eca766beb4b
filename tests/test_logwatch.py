"""The log watcher against real files in a temporary directory, driven by explicit polls."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ocprobe import logwatch
from ocprobe.patterns import PatternError
from ocprobe.logwatch import MAX_FILES, DEFAULT_PATTERNS, LogWatcher
from ocprobe.process import ManagedProcess
from ocprobe.secret import Redactor

BUSY = "ReplyRunAlreadyActiveError"
DRAIN = "followup queue drain failed"
IDLE = 3600.0  # no background polls: each test polls when it means to


def run(check: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(check())


def append(path: Path, data: str | bytes) -> None:
    with path.open("ab") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def watching(path: str) -> LogWatcher:
    return LogWatcher(DEFAULT_PATTERNS, [path], poll_interval=IDLE)


def test_lines_before_start_are_ignored_and_appended_lines_counted(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    append(log, f"old {BUSY}\n")

    async def check() -> None:
        watcher = watching(str(log))
        await watcher.poll()  # before start: no baseline yet, nothing is read
        await watcher.start()
        await watcher.poll()
        assert watcher.matches == []
        before = time.time()
        append(log, f"new {BUSY}\nharmless\n{DRAIN}: boom\nagain {BUSY}\n")
        await watcher.poll()
        await watcher.stop()
        assert watcher.counts() == {BUSY: 2, DRAIN: 1}
        assert [m.line for m in watcher.matches] == [f"new {BUSY}", f"{DRAIN}: boom", f"again {BUSY}"]
        assert all(m.source == str(log) and m.at >= before and m.call is None for m in watcher.matches)

    run(check)


def test_glob_picks_up_file_created_after_start(tmp_path: Path) -> None:
    append(tmp_path / "gw-1.log", "day one\n")

    async def check() -> None:
        watcher = watching(str(tmp_path / "gw-*.log"))
        await watcher.start()
        append(tmp_path / "gw-2.log", f"{BUSY} on day two\n")
        await watcher.poll()
        await watcher.stop()
        assert [(m.source, m.line) for m in watcher.matches] == [(str(tmp_path / "gw-2.log"), f"{BUSY} on day two")]

    run(check)


def test_json_time_is_used_and_whole_raw_line_matched(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    log.touch()
    zulu = '{"time":"2026-05-04T10:21:33.123Z","message":"x","_meta":{"err":"ReplyRunAlreadyActiveError"}}'
    offset = '{"time":"2026-05-04T12:21:34+02:00","0":"followup queue drain failed"}'
    no_time = '{"message":"ReplyRunAlreadyActiveError"}'

    async def check() -> None:
        watcher = watching(str(log))
        await watcher.start()
        before = time.time()
        append(log, f"{zulu}\n{offset}\n{no_time}\n")
        await watcher.poll()
        await watcher.stop()
        first, second, third = watcher.matches
        assert (first.pattern, first.line) == (BUSY, zulu)
        assert first.at == pytest.approx(datetime(2026, 5, 4, 10, 21, 33, 123000, timezone.utc).timestamp())
        assert (second.pattern, second.line) == (DRAIN, offset)
        assert second.at == pytest.approx(datetime(2026, 5, 4, 10, 21, 34, tzinfo=timezone.utc).timestamp())
        assert third.at >= before  # no time field: the time it was read

    run(check)


def test_partial_line_is_held_until_complete_and_counted_once(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    log.touch()

    async def check() -> None:
        watcher = watching(str(log))
        await watcher.start()
        append(log, "start of ReplyRunAlready")
        await watcher.poll()
        assert watcher.matches == []
        append(log, "ActiveError end\r\n")
        await watcher.poll()
        await watcher.poll()
        await watcher.stop()
        assert [m.line for m in watcher.matches] == [f"start of {BUSY} end"]

    run(check)


def test_truncation_restarts_at_zero(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    append(log, "a long line written before the probe started, longer than what follows\n")

    async def check() -> None:
        watcher = watching(str(log))
        await watcher.start()
        log.write_bytes(f"{BUSY}\n".encode())  # truncated in place, same file
        await watcher.poll()
        await watcher.stop()
        assert watcher.counts()[BUSY] == 1

    run(check)


def test_rotation_drains_old_file_and_reads_new_one_from_zero(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    append(log, f"{BUSY} before start\n")

    async def check() -> None:
        watcher = watching(str(tmp_path / "gw.log*"))  # the rotated name matches the glob too
        await watcher.start()
        append(log, f"{BUSY} 1\n")
        await watcher.poll()
        append(log, f"{BUSY} 2\n")
        os.rename(log, tmp_path / "gw.log.1")
        append(tmp_path / "gw.log.1", f"{BUSY} 3 partial")  # the writer still has the old file
        append(log, f"{BUSY} 4\n")
        await watcher.poll()
        append(tmp_path / "gw.log.1", "\n")
        await watcher.poll()
        await watcher.stop()
        assert [m.line for m in watcher.matches] == [f"{BUSY} 1", f"{BUSY} 2", f"{BUSY} 4", f"{BUSY} 3 partial"]
        assert watcher.matches[-1].source == str(tmp_path / "gw.log.1")

    run(check)


def test_rotated_out_of_glob_is_drained_before_new_file(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    log.touch()

    async def check() -> None:
        watcher = watching(str(log))
        await watcher.start()
        append(log, f"{BUSY} old\nunfinished {DRAIN}")
        os.rename(log, tmp_path / "gw.log.1")
        append(log, f"{BUSY} new\n")
        await watcher.poll()
        await watcher.stop()
        assert [m.line for m in watcher.matches] == [f"{BUSY} old", f"unfinished {DRAIN}", f"{BUSY} new"]

    run(check)


def test_deletion_and_recreation(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    append(log, "x" * 200 + "\n")

    async def check() -> None:
        watcher = watching(str(log))
        await watcher.start()
        append(log, f"{BUSY} last words\n")
        log.unlink()
        await watcher.poll()
        append(log, f"{DRAIN} reborn\n")  # smaller than the old offset, and a new inode
        await watcher.poll()
        await watcher.stop()
        assert [m.line for m in watcher.matches] == [f"{BUSY} last words", f"{DRAIN} reborn"]

    run(check)


def test_non_utf8_bytes_are_replaced(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    log.touch()

    async def check() -> None:
        watcher = watching(str(log))
        await watcher.start()
        append(log, b"\xff\xfe " + BUSY.encode() + b" \xc3\n")
        await watcher.poll()
        await watcher.stop()
        assert [m.line for m in watcher.matches] == [f"\ufffd\ufffd {BUSY} \ufffd"]

    run(check)


def test_ansi_colours_are_stripped(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    log.touch()
    coloured = "\x1b[31mReplyRunAlready\x1b[0mActiveError \x1b]8;;http://x\x07link\x1b]8;;\x07\n"

    async def check() -> None:
        watcher = watching(str(log))
        await watcher.start()
        watcher.feed_line("stderr", coloured, at=123.5)
        append(log, coloured)
        await watcher.poll()
        await watcher.stop()
        assert [(m.source, m.line, m.at) for m in watcher.matches][0] == ("stderr", f"{BUSY} link", 123.5)
        assert [m.line for m in watcher.matches] == [f"{BUSY} link"] * 2

    run(check)


def test_feed_line_defaults_to_now_and_works_without_files() -> None:
    watcher = LogWatcher()
    before = time.time()
    watcher.feed_line("stdout", f"{DRAIN}\n")
    assert [(m.source, m.line) for m in watcher.matches] == [("stdout", DRAIN)]
    assert before <= watcher.matches[0].at <= time.time()


def test_multiple_patterns_on_one_line_and_zero_counts() -> None:
    watcher = LogWatcher([BUSY, DRAIN, r"queue \w+", "never seen", BUSY])
    watcher.feed_line("stderr", f"{BUSY} then {DRAIN}")
    assert [m.pattern for m in watcher.matches] == [BUSY, DRAIN, r"queue \w+"]
    assert watcher.counts() == {BUSY: 1, DRAIN: 1, r"queue \w+": 1, "never seen": 0}
    assert LogWatcher().counts() == {BUSY: 0, DRAIN: 0}


def test_invalid_pattern_raises() -> None:
    with pytest.raises(PatternError, match="missing \\)"):
        LogWatcher(["(unclosed"])


def test_a_backtracking_pattern_cannot_freeze_the_probe(tmp_path: Path) -> None:
    """'(a+)+$' against 30 'a' and a '!' takes Python's engine minutes (it froze a probe ~25 s at 28); RE2 is
    linear in the line. Lines fed and lines read from files alike."""
    log = tmp_path / "gw.log"
    log.write_text("")

    async def main() -> LogWatcher:
        watcher = LogWatcher(["(a+)+$", "a!"], [str(log)])
        await watcher.start()
        watcher.feed_line("stderr", "a" * 30 + "!")
        append(log, "a" * 30 + "!\n")
        await watcher.poll()
        await watcher.stop()
        return watcher

    watcher = asyncio.run(main())
    assert watcher.counts() == {"(a+)+$": 0, "a!": 2}


def test_lookaround_is_refused_with_the_engine_reason() -> None:
    with pytest.raises(PatternError, match="invalid perl operator"):
        LogWatcher(["(?<=x)y"])


def test_a_glob_over_many_files_follows_a_bounded_number(tmp_path: Path) -> None:
    for n in range(MAX_FILES + 20):
        (tmp_path / f"gw-{n:04d}.log").write_text("")

    async def main() -> LogWatcher:
        watcher = LogWatcher(["x"], [str(tmp_path / "*.log")])
        await watcher.start()
        await watcher.stop()
        return watcher

    assert asyncio.run(main()).skipped_files == 20


def test_long_lines_are_capped(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    log.touch()

    async def check() -> None:
        watcher = watching(str(log))
        await watcher.start()
        append(log, "y" * 5000 + BUSY + "\n")  # the pattern lies past the cap: still matched
        await watcher.poll()
        await watcher.stop()
        assert [len(m.line) for m in watcher.matches] == [logwatch.MAX_LINE]

    run(check)


def test_unreadable_file_is_skipped_until_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "gw.log"
    append(log, f"{BUSY} before start\n")

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    async def check() -> None:
        watcher = watching(str(log))
        # Permissions do not bind root, so the refusal is simulated where the watcher opens files.
        monkeypatch.setattr(logwatch, "open", denied, raising=False)
        await watcher.start()
        append(log, f"{BUSY} while unreadable\n")
        await watcher.poll()
        assert watcher.matches == []
        monkeypatch.undo()
        await watcher.poll()
        await watcher.stop()
        assert [m.line for m in watcher.matches] == [f"{BUSY} while unreadable"]

    run(check)


def test_background_polling_and_idempotent_stop(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    log.touch()

    async def check() -> None:
        watcher = LogWatcher(paths=[str(log)], poll_interval=0.01)
        await watcher.start()
        append(log, f"{BUSY}\n")
        for _ in range(200):
            if watcher.matches:
                break
            await asyncio.sleep(0.01)
        assert watcher.counts()[BUSY] == 1
        append(log, f"{DRAIN}\n")
        await watcher.stop()  # the final poll still sees the last line
        await watcher.stop()
        append(log, f"{BUSY} after stop\n")
        await watcher.poll()
        assert watcher.counts() == {BUSY: 1, DRAIN: 1}

    run(check)


def test_stop_without_start_is_harmless() -> None:
    async def check() -> None:
        watcher = LogWatcher()
        await watcher.stop()
        await watcher.stop()
        assert watcher.matches == []

    run(check)


def test_a_poll_reads_in_chunks_and_catches_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logwatch, "CHUNK", 16)
    log = tmp_path / "gw.log"
    log.touch()

    async def check() -> None:
        watcher = watching(str(log))
        await watcher.start()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        append(log, "".join(f"{BUSY} {n}\n" for n in range(50)) + f"{BUSY} c")
        os.rename(log, tmp_path / "gw.log.1")  # drained to its end, the partial last line included
        before = ticks
        await watcher.poll()
        task.cancel()
        assert [m.line for m in watcher.matches] == [f"{BUSY} {n}" for n in range(50)] + [f"{BUSY} c"]
        assert ticks - before >= 1  # the event loop ran meanwhile: the poll reads in a worker thread
        await watcher.stop()

    run(check)


def test_add_path_after_start_reads_a_new_file_from_its_first_line(tmp_path: Path) -> None:
    async def main() -> None:
        watcher = LogWatcher(["boom"], [])
        await watcher.start()
        log = tmp_path / "late.log"
        watcher.add_path(str(log))
        log.write_text("boom 1\nquiet\nboom 2\n")
        await watcher.poll()
        await watcher.stop()
        assert [m.line for m in watcher.matches] == ["boom 1", "boom 2"]

    asyncio.run(main())


def test_the_poll_loop_starts_with_the_first_path_added_after_start(tmp_path: Path) -> None:
    async def main() -> None:
        watcher = LogWatcher(["boom"], [], poll_interval=0.01)
        await watcher.start()  # nothing to tail yet: no loop waking the process
        log = tmp_path / "late.log"
        log.write_text("boom 1\n")
        watcher.add_path(str(log))
        for _ in range(200):  # the loop's own polls, not ours: at most 2 s
            if watcher.matches:
                break
            await asyncio.sleep(0.01)
        await watcher.stop()
        assert [m.line for m in watcher.matches] == ["boom 1"]

    asyncio.run(main())


def test_truncated_then_regrown_past_the_old_offset_is_read_from_zero(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    append(log, "short line before the probe\n")

    async def check() -> None:
        watcher = watching(str(log))
        await watcher.start()
        # copytruncate, and the writer already wrote more than there was before the next poll
        log.write_bytes(f"{BUSY} first after truncation, a longer line than before\n{DRAIN} too\n".encode())
        await watcher.poll()
        await watcher.stop()
        assert [m.line for m in watcher.matches] == [f"{BUSY} first after truncation, a longer line than before", f"{DRAIN} too"]

    run(check)


def test_deleted_and_recreated_larger_between_polls(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    append(log, "old\n")

    async def check() -> None:
        watcher = watching(str(log))
        await watcher.start()
        log.unlink()
        append(log, "x" * 100 + f"\n{BUSY} in the new file\n")
        await watcher.poll()
        await watcher.stop()
        assert [m.line for m in watcher.matches] == [f"{BUSY} in the new file"]

    run(check)


def test_a_character_split_across_writes_is_decoded_whole(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    log.touch()
    line = f"{BUSY} für Sitzung ✓\n".encode()
    cut = line.index("✓".encode()) + 1  # inside the three bytes of ✓

    async def check() -> None:
        watcher = watching(str(log))
        await watcher.start()
        append(log, line[:cut])
        await watcher.poll()
        append(log, line[cut:])
        await watcher.poll()
        await watcher.stop()
        assert [m.line for m in watcher.matches] == [f"{BUSY} für Sitzung ✓"]

    run(check)


def test_latin1_log_and_hostile_json_lines(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    log.touch()
    deep = '{"time": ' + "[" * 100_000 + "]" * 100_000 + f', "m": "{BUSY}"}}'

    async def check() -> None:
        watcher = watching(str(log))
        await watcher.start()
        append(log, f"Sitzung für {BUSY}\n".encode("latin-1"))
        append(log, deep + "\n")  # too deep for the JSON parser: matched with the time it was read
        append(log, '{"time": 12, "m": "' + DRAIN + '"}\n')  # a time that is not a string
        await watcher.poll()
        await watcher.stop()
        assert [m.pattern for m in watcher.matches] == [BUSY, BUSY, DRAIN]
        assert watcher.matches[0].line == f"Sitzung f\ufffdr {BUSY}"

    run(check)


def test_a_burst_written_just_before_stop_is_read_whole(tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    log.touch()
    filler = "quiet line " * 9 + "\n"

    async def check() -> None:
        watcher = LogWatcher(DEFAULT_PATTERNS, [str(log)], poll_interval=0.01)
        await watcher.start()
        with log.open("a") as f:
            for n in range(60_000):  # about 6 MB: several chunks
                f.write(f"{BUSY} {n}\n" if n % 1000 == 0 else filler)
        await watcher.stop()
        assert watcher.counts()[BUSY] == 60

    run(check)


def test_a_flooding_stderr_is_followed_without_loss_or_stall(tmp_path: Path) -> None:
    """200k stderr lines and a 150 kB line from a real child process: every match counted, the copy
    complete, the event loop never held up for long."""
    script = (
        "import sys\n"
        "w = sys.stderr.write\n"
        f"for n in range(200000): w('{BUSY} %d\\n' % n if n % 2000 == 0 else 'noise line %d\\n' % n)\n"
        f"w('x' * 150000 + '{DRAIN}\\n')\n"
        "w('no newline at the end')\n"
    )

    async def check() -> None:
        watcher = LogWatcher(DEFAULT_PATTERNS, [])
        process = ManagedProcess([sys.executable, "-c", script], log_dir=tmp_path, name="flood", on_line=watcher.feed_line)
        lag = 0.0

        async def ticker() -> None:
            nonlocal lag
            while True:
                before = time.monotonic()
                await asyncio.sleep(0.01)
                lag = max(lag, time.monotonic() - before - 0.01)

        task = asyncio.create_task(ticker())
        await process.start()
        assert await process.wait() == 0
        task.cancel()
        assert watcher.counts() == {BUSY: 100, DRAIN: 1}
        assert lag < 0.5
        copy = (tmp_path / "flood.stderr.log").read_bytes()
        assert copy.count(b"\n") == 200_001 and copy.endswith(b"no newline at the end")

    run(check)


def test_a_child_printing_a_secret_leaves_it_out_of_the_copy(tmp_path: Path) -> None:
    secret = "s3cr3t-token-" + "z" * 20
    script = f"import sys; print('token is {secret}'); sys.stderr.buffer.write(b'bad \\xff bytes {secret}\\n')"

    async def check() -> None:
        lines: list[str] = []
        process = ManagedProcess([sys.executable, "-c", script], log_dir=tmp_path, name="leaky",
                                 on_line=lambda stream, line, at: lines.append(line), redact=Redactor([secret]))
        await process.start()
        assert await process.wait() == 0
        assert sorted(lines) == ["bad \ufffd bytes ***", "token is ***"]
        assert (tmp_path / "leaky.stdout.log").read_bytes() == b"token is ***\n"
        assert (tmp_path / "leaky.stderr.log").read_bytes() == b"bad \xff bytes ***\n"

    run(check)

"""Soak: 10,000 calls against the reference gateway with every fault profile mixed in, through the probe
runner in this process, so ocprobe's own memory and file descriptors can be watched while it runs."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ocprobe.engine import ConcurrentConfig
from ocprobe.models import CallClass, CallRecord
from ocprobe.output.sink import Mode, Output
from ocprobe.runner import log_patterns, run_probe
from ocprobe.targets import EmbeddedOptions, TargetSpec

CALLS = 10_000
SAMPLE_EVERY = 1000
# Primes, so the faults rarely hit the same call; every profile is hit at least a few times.
FAULTS = ("hang:every=997", "drop:every=211", "error-state:every=101", "error-frame:every=103", "garbage:every=107",
          "wrong-reply:every=109", "slow-provider:every=113,ms=20", "duplicate-final:every=127",
          "out-of-order:every=131", "oversize:every=503", "auth-flap:every=601", "stall-handshake:every=809,ms=50")
# A fault's own class for the call it hits; a call in flight when a socket is closed under it is an error.
OWN_CLASS = {"hang": "timeout", "drop": "error", "error-state": "error", "error-frame": "error", "garbage": "real",
             "wrong-reply": "wrong", "slow-provider": "real", "duplicate-final": "real", "out-of-order": "real",
             "oversize": "error", "auth-flap": "error", "stall-handshake": "error"}
CLOSING = ("drop", "oversize", "auth-flap", "stall-handshake")
LOST = re.compile(r"connection closed by the gateway|above its maxPayload")
# The records ocprobe keeps for its summary grow with the calls; anything per call beyond this is a leak.
MAX_GROWTH_PER_CALL = 4096
FAULT_LINE = re.compile(r"injected fault ([\w-]+): chat\.send #\d+ \(run ocprobe-\w+-(\d+),")


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Sampling(Output):
    """The real output sink (the --json file written as the CLI writes it), sampling memory and fds."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.finished = 0
        self.samples: list[tuple[int, int, int]] = []  # (calls finished, RSS bytes, open fds)

    def call_finished(self, record: CallRecord) -> None:
        super().call_finished(record)
        self.finished += 1
        if self.finished % SAMPLE_EVERY == 0:
            self.samples.append((self.finished, rss(), fds()))


@pytest.mark.slow
def test_ten_thousand_calls_with_mixed_faults(tmp_path: Path) -> None:
    out, run_dir = tmp_path / "soak.jsonl", tmp_path / "run"
    output = Sampling(mode=Mode.QUIET, json_path=out, stdout=io.StringIO(), stderr=io.StringIO())
    spec = TargetSpec(embedded=EmbeddedOptions(latency_ms=0, faults=FAULTS))
    # Many sessions keep each one's history (replayed to the LLM on every turn) short.
    cfg = ConcurrentConfig(calls=CALLS, concurrency=8, sessions=64, timeout=2.0, settle=0.2)
    fds_before = fds()
    outcome = asyncio.run(run_probe(spec, cfg, log_paths=[], patterns=log_patterns([]), run_dir=run_dir, observer=output))
    assert outcome.exit_code == 1

    # No record lost: one per call, then the summary, and the counts add up.
    records = [json.loads(line) for line in out.read_text().splitlines()]
    calls = {r["index"]: r for r in records if r["record"] == "call"}
    assert len(calls) == sum(r["record"] == "call" for r in records) == CALLS and set(calls) == set(range(1, CALLS + 1))
    assert records[0]["record"] == "start" and records[-1]["record"] == "summary"
    counts = Counter(r["class"] for r in calls.values())
    assert records[-1]["calls"] == CALLS and records[-1]["counts"] == {c.value: counts.get(c.value, 0) for c in CallClass}

    # Flat: memory grows only by the kept records, file descriptors not at all.
    (first, rss_first, _), (last, rss_last, _) = output.samples[1], output.samples[-1]
    assert last == CALLS
    assert rss_last - rss_first <= MAX_GROWTH_PER_CALL * (last - first), output.samples
    assert max(n for _, _, n in output.samples) <= fds_before + 40, output.samples
    assert fds() <= fds_before, "file descriptors left open after the run"

    # Every call the gateway hit has its fault's class (or lost its socket to another call's fault); the
    # others are real, except calls that were in flight on a socket closed under them.
    hits: dict[int, str] = {}
    for match in FAULT_LINE.finditer((run_dir / "gateway.stderr.log").read_text()):
        hits[int(match.group(2))] = match.group(1)
    assert set(hits.values()) == set(OWN_CLASS)
    for index, fault in hits.items():
        call = calls[index]
        assert call["class"] == OWN_CLASS[fault] or (call["class"] == "error" and LOST.search(call["error"])), (fault, call)
    collateral = [c for i, c in calls.items() if i not in hits and c["class"] != "real"]
    assert all((c["class"] == "error" and LOST.search(c["error"])) or c["class"] in ("fast_fail", "empty")
               for c in collateral), Counter((c["class"], c["error"]) for c in collateral)
    closings = sum(fault in CLOSING for fault in hits.values())
    assert len(collateral) <= 2 * cfg.concurrency * closings

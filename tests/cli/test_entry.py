"""The ``ocprobe`` command's own exit: ``entry()`` ends the process without the interpreter's teardown, so
what it printed and wrote must already be out, and its exit status must be ``main()``'s."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _ocprobe(*args: str) -> subprocess.CompletedProcess[str]:
    # stdout is a pipe here, so block-buffered: output not flushed before the exit would be lost
    return subprocess.run([sys.executable, "-m", "ocprobe", *args], capture_output=True, text=True, timeout=120)


def test_output_and_status_survive_the_quick_exit(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    done = _ocprobe("sequential", "-n", "3", "--latency-ms", "0", "--json", str(results))
    assert done.returncode == 0, done.stderr
    assert "PASS: 3/3 real" in done.stdout
    records = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    assert [r["class"] for r in records if r["record"] == "call"] == ["real"] * 3
    assert records[-1]["record"] == "summary" and records[-1]["exit_code"] == 0


def test_refusal_keeps_its_exit_status_and_line() -> None:
    refused = _ocprobe("sequential", "-n", "0")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: -n must be between 1 and 100000, got 0"


def test_failing_probe_exits_1() -> None:
    failed = _ocprobe("sequential", "-n", "4", "--profile", "reply-run-race", "--latency-ms", "50")
    assert failed.returncode == 1, failed.stderr
    assert "FAIL" in failed.stdout

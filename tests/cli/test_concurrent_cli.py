"""``ocprobe concurrent`` end to end with the embedded reference stack."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from ocprobe.reports import load_schema
from tests.cli.test_sequential import calls, ocprobe, records, summary


def test_one_session_under_20_workers_gets_queued_empty_replies(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    # --timeout bounds calls the reference gateway may never answer when two sends reach an idle session
    # at once; --settle keeps the watch for the long follow-up queue short.
    proc = ocprobe("concurrent", "-n", "200", "-c", "20", "--sessions", "1", "--profile", "reply-run-race",
                   "--timeout", "5", "--settle", "0.3", "--json", str(out), tmp_path=tmp_path)
    assert proc.returncode == 1, proc.stderr
    finished = calls(out)
    assert sorted(c["index"] for c in finished) == list(range(1, 201))
    classes = [c["class"] for c in finished]
    assert classes.count("real") >= 5
    assert classes.count("fast_fail") + classes.count("empty") >= 100
    assert {c["session_key"] for c in finished} == {"agent:test:main"}
    s = summary(out)
    strips = s["concurrency"]["sessions"]
    assert list(strips) == ["agent:test:main"] and strips["agent:test:main"]["calls"] == 200
    assert s["concurrency"]["mode"] == "closed" and s["concurrency"]["concurrency"] == 20
    assert s["concurrency"]["calls_per_s"] > s["concurrency"]["real_per_s"] > 0
    assert [r["record"] for r in records(out)][-2:] == ["run", "summary"]
    assert "throughput" in proc.stdout and "session   agent:test:main" in proc.stdout
    assert "FAIL:" in proc.stdout


def test_a_session_per_worker_on_healthy_is_all_real(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    proc = ocprobe("concurrent", "-n", "200", "-c", "20", "--sessions", "20", "--profile", "healthy",
                   "--json", str(out), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [c["class"] for c in calls(out)] == ["real"] * 200
    s = summary(out)
    sessions = s["concurrency"]["sessions"]
    assert len(sessions) == 20 and all(v["pattern"] == "all-pass" for v in sessions.values())
    assert sum(v["calls"] for v in sessions.values()) == 200  # a faster worker (and its session) may take more
    assert s["concurrency"]["real_per_s"] == s["concurrency"]["calls_per_s"] > 20  # 20 in parallel, ~0.3 s each
    assert "PASS: 200/200 real" in proc.stdout
    assert "agent:test:main-s20" in proc.stdout  # the table's session column


def test_open_loop_rate(tmp_path: Path) -> None:
    proc = ocprobe("concurrent", "-n", "40", "--rate", "40", "-c", "40", "--sessions", "20", "--profile", "healthy",
                   "--json", "-", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["record"] for r in lines] == ["start", *["call"] * 40, "run", "summary"]
    finished = sorted((r for r in lines if r["record"] == "call"), key=lambda r: r["index"])
    assert all(c["class"] == "real" and c["start_delay_ms"] is not None for c in finished)
    span = finished[-1]["started_at"] - finished[0]["started_at"]
    assert 39 / 40 * 0.8 < span < 39 / 40 + 0.5  # arrivals on the clock, not after the replies
    c = lines[-1]["concurrency"]
    assert c["mode"] == "open" and c["rate"] == 40
    assert c["max_start_delay_ms"] < 200  # the cap (40 in flight) never held a call back


def test_repeat_gate_and_report(tmp_path: Path) -> None:
    report = tmp_path / "report"
    proc = ocprobe("concurrent", "-n", "8", "-c", "4", "--sessions", "4", "--repeat", "2", "--gate", "fast_fail.count == 0",
                   "--report", str(report), "--json", str(tmp_path / "run.jsonl"), "-q", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("PASS: 16/16 real") and "gates 1/1 pass" in proc.stdout
    keys = {c["session_key"] for c in calls(tmp_path / "run.jsonl")}
    assert keys == {f"agent:test:main-s{k}" for k in range(1, 5)} | {f"agent:test:main-r2-s{k}" for k in range(1, 5)}
    s = summary(tmp_path / "run.jsonl")
    assert s["runs"] == 2 and len(s["concurrency"]["sessions"]) == 8
    document = json.loads((report / "summary.json").read_text())
    jsonschema.validate(document, load_schema())
    assert "| session |" in (report / "report.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-c", "0"], "-c must be between 1 and 1000"),
        (["--sessions", "0"], "--sessions must be between 1 and 1000"),
        (["--rate", "0"], "--rate must be between 0 and 10000"),
        (["--duration", "-1"], "--duration must be between 0 and 86400"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    proc = ocprobe("concurrent", *args, tmp_path=tmp_path, timeout=30)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "cache" / "runs").exists()

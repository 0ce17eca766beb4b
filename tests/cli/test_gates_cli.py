"""``--gate`` and ``--repeat`` end to end: the exit-code contract CI relies on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_sequential import ocprobe, records, summary


@pytest.mark.parametrize(
    ("profile", "gates", "code", "verdict"),
    [
        ("healthy", ["fast_fail.count == 0", "real.p95_ms < 3000", 'log["ReplyRunAlreadyActiveError"] == 0'], 0, "PASS"),
        ("reply-run-race", ["fast_fail.count == 0"], 1, "FAIL"),
        ("reply-run-race", ["real.p95_ms < 3000"], 0, "PASS"),  # a gate decides, not the calls
        ("healthy", ["fail.rate.upper95 < 0.05"], 3, "INCONCLUSIVE"),  # 0/4 failed, too few calls to say
        ("healthy", ["timeout.median_ms < 100"], 3, "INCONCLUSIVE"),  # no timeouts: no value
    ],
)
def test_gate_exit_codes(tmp_path: Path, profile: str, gates: list[str], code: int, verdict: str) -> None:
    out = tmp_path / "run.jsonl"
    args = ["sequential", "-n", "4", "--profile", profile, "--json", str(out)]
    for gate in gates:
        args += ["--gate", gate]
    proc = ocprobe(*args, tmp_path=tmp_path)
    assert proc.returncode == code, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith(f"{verdict}: ")
    s = summary(out)
    assert [g["gate"] for g in s["gates"]] == gates and s["exit_code"] == code


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ("real.rate >> 1", "unexpected '>>' at column 11"),
        ("real.rate >=", "expected a number"),
        ("reel.rate >= 1", "unknown metric 'reel.rate'"),
        ('log["(" ] == 0', "bad --log-pattern"),
    ],
)
def test_bad_gates_are_refused_before_running(tmp_path: Path, gate: str, message: str) -> None:
    proc = ocprobe("sequential", "--gate", gate, tmp_path=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "cache" / "runs").exists()


def test_a_log_gate_watches_its_own_pattern(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    proc = ocprobe("sequential", "-n", "6", "--profile", "reply-run-race", "--json", str(out),
                   "--gate", 'log["Reply run already active"] == 0', tmp_path=tmp_path)
    assert proc.returncode == 1
    assert summary(out)["log_counts"]["Reply run already active"] > 0


def test_repeat_pools_runs_on_fresh_sessions(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    proc = ocprobe("sequential", "-n", "4", "--repeat", "3", "--profile", "reply-run-race", "--json", str(out), tmp_path=tmp_path)
    assert proc.returncode == 1
    recs = records(out)
    runs = [r for r in recs if r["record"] == "run"]
    assert [r["strip"] for r in runs] == ["✔✗✔✗"] * 3  # no run is poisoned by the one before
    assert {c["session_key"] for c in recs if c["record"] == "call"} == {"agent:test:main", "agent:test:main-r2", "agent:test:main-r3"}
    s = summary(out)
    assert s["runs"] == 3 and s["calls"] == 12 and s["counts"]["real"] == 6
    assert "pooled over 3 runs" in proc.stdout


def test_report_bundle_from_the_cli(tmp_path: Path) -> None:
    import json

    import jsonschema
    from junitparser import JUnitXml

    from ocprobe.reports import load_schema

    report, run_dir = tmp_path / "report", tmp_path / "run"
    proc = ocprobe("sequential", "-n", "4", "--profile", "reply-run-race", "--gate", "fast_fail.count == 0",
                   "--report", str(report), "--run-dir", str(run_dir), "-q", tmp_path=tmp_path)
    assert proc.returncode == 1
    assert sorted(p.name for p in report.iterdir()) == ["calls.jsonl", "junit.xml", "report.md", "summary.json"]
    summary_doc = json.loads((report / "summary.json").read_text())
    jsonschema.validate(summary_doc, load_schema())
    cases = [case for suite in JUnitXml.fromfile(str(report / "junit.xml")) for case in suite]
    assert len(cases) == 1 + 4  # one per gate, one per call
    assert "ocprobe sequential -n 4" in (report / "report.md").read_text()
    token = (run_dir / "gateway.token").read_text().strip()
    for path in report.iterdir():
        assert token not in path.read_text()

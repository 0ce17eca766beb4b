"""``ocprobe compare`` end to end on the reference profiles (the acceptance cases)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_sequential import ocprobe


def test_healthy_vs_race_20_calls_is_a_regression(tmp_path: Path) -> None:
    md = tmp_path / "compare.md"
    proc = ocprobe("compare", "--target", "embedded:healthy", "--target", "embedded:reply-run-race", "-n", "20",
                   "--markdown", str(md), tmp_path=tmp_path, timeout=180)
    assert proc.returncode == 1, proc.stderr
    assert "DIFFERENT (regressed)" in proc.stdout
    assert "DIFFERENT (regressed)" in md.read_text()


def test_4_calls_each_is_unknown(tmp_path: Path) -> None:
    proc = ocprobe("compare", "--target", "embedded:healthy", "--target", "embedded:reply-run-race", "-n", "4",
                   "--json", tmp_path=tmp_path)
    assert proc.returncode == 3, proc.stderr
    result = json.loads(proc.stdout)
    assert result["pairs"][0]["verdict"] == "UNKNOWN" and result["pairs"][0]["calls_to_decide"] == 10


def test_results_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert ocprobe("sequential", "-n", "12", "--json", str(a), "-q", tmp_path=tmp_path).returncode == 0
    assert ocprobe("sequential", "-n", "12", "--profile", "reply-run-race", "--json", str(b), "-q", tmp_path=tmp_path).returncode == 1
    proc = ocprobe("compare", str(a), str(b), tmp_path=tmp_path)
    assert proc.returncode == 1 and "a.jsonl -> b.jsonl: DIFFERENT (regressed)" in proc.stdout
    truncated = tmp_path / "t.jsonl"
    truncated.write_text(a.read_text()[:-20])
    proc = ocprobe("compare", str(a), str(truncated), tmp_path=tmp_path)
    assert proc.returncode == 2 and "truncated" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1

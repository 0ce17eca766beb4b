"""``ocprobe sweep`` end to end with the embedded reference stack."""

from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.cli.test_sequential import ocprobe, records


def test_gap_sweep_fails_at_0_not_above_the_teardown(tmp_path: Path) -> None:
    out, plot = tmp_path / "sweep.jsonl", tmp_path / "sweep.svg"
    proc = ocprobe("sweep", "--gaps", "0,0.3", "--repeat", "2", "-n", "6", "--plot", str(plot), "--json", str(out),
                   tmp_path=tmp_path)
    assert proc.returncode == 1, proc.stderr
    kinds = [r["record"] for r in records(out)]
    assert kinds == ["point", "point", "summary"]
    at_0, at_300, s = records(out)
    assert at_0["value_ms"] == 0 and at_0["calls"] == 12 and at_0["failures"] >= 4
    assert at_0["wilson_low"] < at_0["failure_rate"] < at_0["wilson_high"]
    assert at_0["log_counts"]["ReplyRunAlreadyActiveError"] > 0
    assert at_300["value_ms"] == 300 and at_300["failures"] == 0 and at_300["wilson_low"] == 0
    window = s["window"]
    assert window["largest_failing_ms"] == 0 and window["smallest_clean_above_ms"] == 300
    assert 0 <= window["estimate_ms"] <= 300
    assert s["exit_code"] == 1 and s["target"]["profile"] == "reply-run-race"
    assert "race window" in proc.stdout and "FAIL: 1/2 point(s) failed" in proc.stdout
    assert "█" in proc.stdout  # the chart
    root = ET.parse(plot).getroot()
    assert len(root.findall("{http://www.w3.org/2000/svg}circle")) == 2


def test_teardown_sweep_finds_the_threshold(tmp_path: Path) -> None:
    proc = ocprobe("sweep", "--teardowns-ms", "0,250", "--gap", "0.1", "--repeat", "1", "-n", "4", "--json", "-",
                   tmp_path=tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(p["value_ms"], p["failures"] > 0) for p in lines[:2]] == [(0, False), (250, True)]
    assert lines[2]["threshold"] == {"smallest_failing_ms": 250, "largest_clean_below_ms": 0, "estimate_ms": 125}
    assert "teardown_ms" not in lines[2]["target"]  # per point, not one value for the sweep


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "exactly one of --gaps, --teardowns-ms, --latencies-ms"),
        (["--gaps", "0", "--latencies-ms", "10"], "exactly one of"),
        (["--gaps", "0,x"], "bad --gaps value 'x'"),
        (["--gaps", "0", "--plot", "chart.pdf"], ".svg or .png"),
        (["--teardowns-ms", "0", "--target", "ws://127.0.0.1:1"], "needs --target embedded"),
        (["--gaps", "0", "--repeat", "0"], "--repeat must be between"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    proc = ocprobe("sweep", *args, tmp_path=tmp_path, timeout=30)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "cache" / "runs").exists()


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is not None, reason="matplotlib is installed")
def test_png_without_matplotlib_is_refused_before_running(tmp_path: Path) -> None:
    proc = ocprobe("sweep", "--gaps", "0", "--plot", str(tmp_path / "chart.png"), tmp_path=tmp_path, timeout=30)
    assert proc.returncode == 2
    assert "matplotlib" in proc.stderr and "chart.svg" in proc.stderr
    assert not (tmp_path / "cache" / "runs").exists()

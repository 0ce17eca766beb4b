"""A smoke of bench/openclaw_real.py against a real 2026.5.3 gateway (slow: ~1 min with 5.3 installed).

Benchmarks are not timed tests: this checks that the script runs to the end and that its figures hold
together (every call timed by the gateway's own lifecycle events, the RSS sampled), never a target."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.openclaw

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "openclaw_real.py"


def test_the_real_gateway_bench_runs_and_its_figures_hold_together(real_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "real.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--version", "2026.5.3", "--calls", "2", "--reps", "2", "--gap", "0.5",
         "--latency-ms", "100", "--json", str(out)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "OCPROBE_CACHE": str(real_cache)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(out.read_text())
    for client in ("ocprobe", "raw"):
        summary = figures[client]
        assert summary["calls"] == summary["real"] == summary["timed"] == 4, summary
        # The gateway's run holds the provider's 100 ms; a client's latency holds the run.
        assert 100 <= summary["gateway_run_ms"]["median"] < summary["latency_ms"]["median"]
        assert summary["post_run_ms"]["median"] >= 0
    rss = figures["rss_mb"]
    assert 0 < rss["idle_mb"] <= rss["peak_sampled_mb"] <= rss["vmhwm_at_end_mb"] + 1
    # The gateway's token (in the run dir `openclaw up` made) is printed nowhere and kept out of the figures.
    run_dir = max((real_cache / "runs").glob("*-up-2026.5.3"), key=lambda p: p.stat().st_mtime)
    token = (run_dir / "gateway.token").read_text().strip()
    assert len(token) >= 16
    assert token not in out.read_text() and token not in proc.stdout and token not in proc.stderr

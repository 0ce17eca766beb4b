"""Protocol-4 releases for real: 2026.9.6 installed and launched by ocprobe, and a matrix across the v3/v4
boundary (2026.5.7, the last v3 release, and 2026.5.12, the first v4 one). Slow: each launch takes 5-20 s."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.transports.test_ws import reference
from tests.transports.test_ws_protocol import offer

pytestmark = pytest.mark.openclaw

V4 = "2026.9.6"


def ocprobe(real_cache: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ocprobe", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OCPROBE_CACHE": str(real_cache), "COLUMNS": "200"})


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def gateway_v4(real_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``ocprobe openclaw up 2026.9.6``: its ready line (url, token file), stopped by its PID."""
    run_dir = tmp_path_factory.mktemp("up-v4")
    up = subprocess.Popen([sys.executable, "-m", "ocprobe", "openclaw", "up", V4, "--json", "--run-dir", str(run_dir)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "OCPROBE_CACHE": str(real_cache)})
    try:
        assert up.stdout is not None
        line = up.stdout.readline()
        assert line, up.stderr.read() if up.stderr else "no ready line"
        yield json.loads(line)
    finally:
        up.terminate()
        up.wait(timeout=60)


def test_9_6_sequential_at_gap_0_is_clean_over_protocol_4(real_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    proc = ocprobe(real_cache, "sequential", "-n", "6", "--target", f"openclaw@{V4}", "--json", str(out),
                   "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    summary = records(out)[-1]
    assert summary["counts"]["real"] == 6
    target = summary["target"]
    assert target["protocol"] == 4 and target["gateway_version"] == V4 and target["node_version"].startswith("24.")
    assert target["ready_s"] > 0 and "protocol 4" in proc.stdout
    # The release's own patterns are watched (releases.py), none of them matched.
    assert "Async work scope is closed" in summary["log_counts"] and sum(summary["log_counts"].values()) == 0


def test_9_6_same_session_concurrent_sends_are_queued_and_run_late(real_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    proc = ocprobe(real_cache, "concurrent", "-n", "6", "-c", "3", "--sessions", "1", "--target", f"openclaw@{V4}",
                   "--json", str(out), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 1, proc.stderr
    summary = records(out)[-1]
    not_real = 6 - summary["counts"]["real"]
    assert summary["counts"]["real"] >= 1 and not_real >= 1
    assert summary["fates"]["ran_late"] == not_real  # the witness saw every queued turn reach the LLM later


def test_reference_and_real_9_6_refuse_a_5_5_client_alike(gateway_v4: dict[str, Any], tmp_path: Path) -> None:
    async def main() -> None:
        _, real_answer, real_close = await offer(gateway_v4["url"], 5, 5)
        async with reference(tmp_path, protocol=4) as ref:
            _, ref_answer, ref_close = await offer(ref.url, 5, 5)
        assert real_answer["ok"] is False and real_answer["error"]["details"]["code"] == "PROTOCOL_MISMATCH"
        assert ref_answer == real_answer  # code, message and details
        assert ref_close == real_close == (1002, "protocol mismatch")

    asyncio.run(main())


def test_a_v3_only_client_is_refused_by_9_6_in_one_line(gateway_v4: dict[str, Any], tmp_path: Path) -> None:
    """What every ocprobe before protocol negotiation met: now it is the gateway's word, in one line."""
    async def main() -> None:
        _, answer, close = await offer(gateway_v4["url"], 3, 3)
        assert answer["error"]["message"] == "protocol mismatch" and close[0] == 1002

    asyncio.run(main())


def test_a_config_fragment_the_release_rejects_names_the_key_and_release(real_cache: Path, tmp_path: Path) -> None:
    fragment = tmp_path / "queue.json5"
    fragment.write_text("{messages: {queue: {debounceMs: 700}}}")  # removed in 2026.8.1
    proc = ocprobe(real_cache, "sequential", "-n", "1", "--target", f"openclaw@{V4}", "--openclaw-config",
                   str(fragment), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f'error: openclaw {V4} rejected the config: messages.queue: Unrecognized key: "debounceMs"']


def test_a_matrix_across_the_v3_v4_boundary(real_cache: Path, tmp_path: Path) -> None:
    report = tmp_path / "matrix"
    proc = ocprobe(real_cache, "matrix", "run", "--range", "2026.5.7..2026.5.12", "--probe", "sequential:n=3,gap=0.5",
                   "--report", str(report), "--run-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    cells = json.loads((report / "matrix.json").read_text())["cells"]
    assert [(c["version"], c["protocol"], c["status"]) for c in cells] == [("2026.5.7", 3, "pass"), ("2026.5.12", 4, "pass")]
    assert all(c["probes"][0]["counts"]["real"] == 3 and c["ready_s"] > 0 for c in cells)
    merged = tmp_path / "merged.md"
    proc = ocprobe(real_cache, "matrix", "merge", str(report / "cells" / "2026.5.7.json"),
                   str(report / "cells" / "2026.5.12.json"), "--markdown", str(merged))
    assert proc.returncode == 0, proc.stderr
    assert "| 2026.5.7 |" in merged.read_text() and "| 2026.5.12 |" in merged.read_text()

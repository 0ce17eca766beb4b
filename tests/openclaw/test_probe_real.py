"""The probe against a real OpenClaw 2026.5.3 gateway, launched isolated by ocprobe (slow: ~1-2 min each).

These are the acceptance checks of the real target: the race shows at gap 0 (calls that never reached
the LLM, the drain error read from the gateway's stderr, the queued turns running late), and not with a
pause after each reply."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.openclaw

VERSION = "2026.5.3"
DRAIN = "ReplyRunAlreadyActiveError"


def probe(real_cache: Path, tmp_path: Path, *args: str, target: str = f"openclaw@{VERSION}",
          name: str = "run") -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    out = tmp_path / f"{name}.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "ocprobe", "sequential", "--target", target, "--json", str(out),
         "--run-dir", str(tmp_path / name), *args],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "OCPROBE_CACHE": str(real_cache), "COLUMNS": "200"},
    )
    records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return proc, records


def strip(records: list[dict[str, Any]]) -> str:
    return "".join("P" if r["class"] == "real" else "F" for r in records if r["record"] == "call")


def test_gap_0_reproduces_77485(real_cache: Path, tmp_path: Path) -> None:
    proc, records = probe(real_cache, tmp_path, "-n", "10", "--gap", "0")
    assert proc.returncode == 1, proc.stderr
    # The reference profile is faithful: the same probe gives the same outcome sequence. Alternation needs
    # the queued send's empty final (and so the next send) before the drain's 500 ms debounce ends; on a
    # loaded machine the real gateway answers slower than that, the drain wins and every later send is
    # queued behind a follow-up run (PFFF...), which the reference with its 300 ms answer does not model.
    _, reference = probe(real_cache, tmp_path, "-n", "10", "--gap", "0", target="embedded:reply-run-race", name="ref")
    assert strip(reference) == "PF" * 5
    calls = [r for r in records if r["record"] == "call"]
    empty_ms = sorted(c["latency_ms"] for c in calls if c["class"] != "real")
    if empty_ms[len(empty_ms) // 2] < 450:
        assert strip(records) == strip(reference)
    else:
        assert strip(records).startswith("PF")
    summary = records[-1]
    assert summary["target"]["gateway_version"] == VERSION
    assert summary["target"]["node_version"]
    failed = [c for c in calls if c["class"] != "real"]
    assert failed, "the race did not show at gap 0"
    assert all(c["llm_reached"] is False and c["evidence"] == "witness" for c in failed)
    assert summary["log_counts"][DRAIN] > 0
    settled = {r["index"]: r for r in records if r["record"] == "settle"}
    matches = [m for r in settled.values() for m in r["log_matches"] if m["pattern"] == DRAIN]
    assert matches and all(m["source"] == "stderr" and m["call"] for m in matches)
    for call in failed:  # 5.3 runs the queued turns late, under server runIds
        assert settled[call["index"]]["fate"] == "ran_late"
        assert settled[call["index"]]["late"]["run_id"]
    token = (tmp_path / "run" / "gateway.token").read_text().strip()
    assert token not in proc.stdout + proc.stderr + (tmp_path / "run.jsonl").read_text()


def test_a_pause_after_each_reply_is_clean(real_cache: Path, tmp_path: Path) -> None:
    proc, records = probe(real_cache, tmp_path, "-n", "10", "--gap", "0.5")
    assert proc.returncode == 0, proc.stderr
    _, reference = probe(real_cache, tmp_path, "-n", "10", "--gap", "0.5", target="embedded:reply-run-race", name="ref")
    assert strip(records) == strip(reference) == "P" * 10
    summary = records[-1]
    assert summary["counts"]["real"] == 10
    assert summary["log_counts"][DRAIN] == 0


def test_wrong_token_against_the_real_gateway(real_cache: Path, tmp_path: Path) -> None:
    up = subprocess.Popen(
        [sys.executable, "-m", "ocprobe", "openclaw", "up", VERSION, "--json", "--run-dir", str(tmp_path / "up")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OCPROBE_CACHE": str(real_cache)},
    )
    try:
        assert up.stdout is not None
        ready = json.loads(up.stdout.readline())
        proc = subprocess.run(
            [sys.executable, "-m", "ocprobe", "sequential", "-n", "1", "--target", ready["url"]],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "OPENCLAW_GATEWAY_TOKEN": "0" * 48},
        )
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "AUTH_TOKEN_MISMATCH" in lines[0], proc.stderr
    finally:
        up.terminate()
        up.wait(timeout=60)

"""Fault profiles of the reference gateway, end to end: ``ocprobe sequential --fault ...`` as a user runs it
against the embedded target, one case per row of FAULT_CASES in tests/robustness_cases.py. Each case
checks the class of every call, the exit code, the records on disk, the gateway's fault lines and their
attribution to the hit calls."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ocprobe.models import CallClass
from ocprobe.reference.fault_specs import FAULTS
from ocprobe.transports.ws import OpenClawWsTransport
from tests.robustness_cases import FAULT_ARGS, FAULT_CASES, FaultCase, render

FAULT_LINE = re.compile(r"injected fault ([\w-]+): chat\.send #\d+ \(run ocprobe-\w+-(\d+),")
DOC = Path(__file__).resolve().parents[2] / "docs" / "robustness.md"
Run = tuple[subprocess.CompletedProcess[str], Path, Path]


def _probe(case: FaultCase, base: Path) -> Run:
    out, run_dir = base / f"{case.id}.jsonl", base / f"run-{case.id}"
    argv = ["sequential", "-n", str(case.n), *(a for f in case.faults for a in ("--fault", f)), *FAULT_ARGS,
            *case.args, "--json", str(out), "--run-dir", str(run_dir), "-q"]
    proc = subprocess.run([sys.executable, "-m", "ocprobe", *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OCPROBE_CACHE": str(base / "cache")})
    return proc, out, run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every case, three at a time: each is two processes mostly waiting on timers and sockets."""
    base = tmp_path_factory.mktemp("faults")
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {case.id: pool.submit(_probe, case, base) for case in FAULT_CASES}
        return {key: future.result() for key, future in futures.items()}


@pytest.mark.parametrize("case", FAULT_CASES, ids=[case.id for case in FAULT_CASES])
def test_fault_profile(case: FaultCase, runs: dict[str, Run]) -> None:
    proc, out, run_dir = runs[case.id]
    assert proc.returncode == case.exit_code, proc.stderr
    assert "Traceback" not in proc.stderr
    if case.error is None:
        assert proc.stderr == ""
    else:
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and case.error in lines[0], proc.stderr

    records = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = [r["record"] for r in records]
    assert kinds[0] == "start" and kinds[-2:] == ["run", "summary"]
    calls = [r for r in records if r["record"] == "call"]
    assert [c["index"] for c in calls] == list(range(1, len(case.classes) + 1))  # every finished call, once
    assert tuple(c["class"] for c in calls) == case.classes, [(c["class"], c["error"]) for c in calls]

    summary = records[-1]
    expected = Counter(case.classes)
    assert summary["calls"] == len(case.classes) and summary["exit_code"] == case.exit_code
    assert summary["counts"] == {c.value: expected.get(c.value, 0) for c in CallClass}

    # The gateway names the run of each call it hits; those lines are attributed to exactly those calls.
    gateway_log = (run_dir / "gateway.stderr.log").read_text()
    assert "Traceback" not in gateway_log
    hit = {int(m.group(2)) for m in FAULT_LINE.finditer(gateway_log)}
    assert hit == set(case.hits)
    assert {m.group(1) for m in FAULT_LINE.finditer(gateway_log)} <= {f.split(":")[0] for f in case.faults}
    attributed = {r["index"] for r in records if r["record"] == "settle"
                  for m in r["log_matches"] if m["pattern"] == "injected fault"}
    assert attributed == set(case.hits)
    assert summary["log_counts"]["injected fault"] >= len(case.hits)

    for index, least in case.min_ms:
        assert calls[index - 1]["latency_ms"] >= least
    if case.unattributed is not None:
        assert len([r for r in records if r["record"] == "run"][0]["unattributed_finals"]) == case.unattributed


def test_case_ids_are_unique_and_every_fault_is_covered() -> None:
    assert len({case.id for case in FAULT_CASES}) == len(FAULT_CASES)
    assert {f.split(":")[0] for case in FAULT_CASES for f in case.faults} == set(FAULTS)


def test_docs_robustness_is_rendered_from_the_table() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), "run: python -m tests.robustness_cases > docs/robustness.md"


def test_gateway_serve_injects_faults_and_logs_them_to_both_logs(tmp_path: Path) -> None:
    token = "f" * 48
    log_file = tmp_path / "err.log"
    serve = subprocess.Popen(
        [sys.executable, "-m", "ocprobe", "gateway", "serve", "--port", "0", "--json", "--latency-ms", "10",
         "--fault", "hang:every=2", "--fault", "error-frame:rate=0.5,seed=3", "--log-file", str(log_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OCPROBE_CACHE": str(tmp_path / "cache"), "OPENCLAW_GATEWAY_TOKEN": token},
    )
    try:
        assert serve.stdout is not None
        ready: dict[str, Any] = json.loads(serve.stdout.readline())
        assert ready["faults"] == ["hang:every=2", "error-frame:rate=0.5,seed=3"]
        assert ready["url"].startswith("ws://127.0.0.1:")

        async def probe() -> list[str]:
            transport = OpenClawWsTransport(ready["url"], token)
            await transport.open()
            try:
                return [(await transport.send("s", f"ok-{i}-x", f"k{i}", timeout=1.0)).state for i in range(1, 5)]
            finally:
                await transport.close()

        states = asyncio.run(probe())
    finally:
        serve.send_signal(signal.SIGTERM)
        _, stderr = serve.communicate(timeout=15)
    # error-frame draws 0.238, 0.544, 0.370, 0.604 from seed 3: calls 1 and 3; hang takes 2 and 4
    assert states == ["error", "timeout", "error", "timeout"]
    lines = [json.loads(line)["message"] for line in log_file.read_text().splitlines()]
    assert [line.split(":")[0] for line in lines] == ["injected fault error-frame", "injected fault hang"] * 2
    assert [line for line in stderr.splitlines() if line.startswith("injected fault")] == lines
    assert serve.returncode == 0


def test_concurrent_takes_faults_too(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "ocprobe", "concurrent", "-n", "20", "-c", "4", "--sessions", "4", "--latency-ms", "20",
         "--settle", "0.2", "--fault", "error-frame:every=5", "--json", str(out), "-q"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OCPROBE_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 1, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[0]["target"]["faults"] == ["error-frame:every=5"]
    assert records[-1]["counts"]["error"] == 4 and records[-1]["counts"]["real"] == 16

"""A smoke of the benchmark suite (bench/run.py --quick): every part runs and produces its figures.

Benchmarks are not timed tests: this checks that each figure is there and is a positive number (a growth
may be any number), never that a target is met. Locust and autocannon are optional here (CI installs
``.[test]`` only): without them their figures must be absent and their skip said, with them present.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"

# part -> figures it must produce (names as bench/run.py reports them); {n}/{mark}: the memory run's sizes.
EXPECTED = {
    "overhead": ["ocprobe sequential, per call", "raw websockets loop, per call", "ratio ocprobe / raw (per call)",
                 "ocprobe sequential, median latency", "raw websockets loop, median latency"],
    "accuracy": ["ocprobe: median |error| vs configured", "ocprobe: p99 |error| vs configured",
                 "ocprobe: median |error| vs the gateway's own timing", "ocprobe: p99 |error| vs the gateway's own timing",
                 "raw loop: p99 |error| vs configured", "ratio ocprobe / raw (p99 |error| vs configured)"],
    "throughput": ["ocprobe concurrent, relay transport", "ocprobe concurrent, ws transport",
                   "raw websockets loop, one connection", "ratio ocprobe ws / raw loop",
                   "client CPU per call: ocprobe concurrent, relay transport",
                   "client CPU per call: ocprobe concurrent, ws transport",
                   "client CPU per call: raw websockets loop, one connection"],
    "capacity": ["reference gateway capacity (median latency <= 2x idle)", "idle round trip (lowest median at 10-50 calls/s)",
                 "median round trip at capacity"],
    "memory": ["peak RSS of ocprobe over {n} calls", "RSS after call {mark}", "RSS after call {n}",
               "RSS growth call {mark} -> {n}", "wall time of the {n} calls"],
    "startup": ["`ocprobe sequential -n 10`, process start to exit", "`ocprobe sequential -n 10 --latency-ms 0`",
                "`ocprobe --help`, process start to exit", "`python -c pass` (the interpreter alone)",
                "import ocprobe.cli (python -X importtime, cumulative)"],
}
OPTIONAL = {  # tool -> the figures that need it
    "locust": ["Locust FastHttpUser, relay", "ratio ocprobe relay / Locust"],
    "autocannon": ["autocannon, relay", "ratio ocprobe relay / autocannon"],
}
OPTIONAL_CPU = {
    "locust": "client CPU per call: Locust FastHttpUser, relay",
    "autocannon": "client CPU per call: autocannon, relay",
}
SIGNED = ("growth", "CPU per call")  # figures that may be zero or negative (a difference of two runs)


def _tool_present(tool: str) -> bool:
    if tool == "locust":
        return importlib.util.find_spec("locust") is not None
    return shutil.which("node") is not None and (BENCH / "node_modules" / "autocannon" / "package.json").exists()


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "bench.json"
    env = {**os.environ, "OCPROBE_CACHE": str(tmp / "cache")}
    env.pop("OPENCLAW_GATEWAY_TOKEN", None)
    proc = subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--no-install", "--json", str(out),
                           "--markdown", str(tmp / "bench.md")],
                          capture_output=True, text=True, timeout=240, env=env, cwd=tmp)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    document = json.loads(out.read_text())
    document["_stdout"] = proc.stdout
    document["_markdown"] = (tmp / "bench.md").read_text()
    return document


@pytest.mark.slow
@pytest.mark.parametrize("part", list(EXPECTED))
def test_every_part_produces_its_figures(quick: dict[str, Any], part: str) -> None:
    result = quick["parts"][part]
    assert result["error"] is None
    settings = quick["settings"]
    for name in EXPECTED[part]:
        name = name.format(n=settings["memory_calls"], mark=settings["memory_mark"])
        figure = result["figures"].get(name)
        assert figure is not None, f"{part}: no figure {name!r} (has {sorted(result['figures'])})"
        assert figure["reps"] and all(math.isfinite(v) for v in figure["reps"]), figure
        if not any(word in name for word in SIGNED):
            assert figure["median"] > 0 and figure["min"] > 0, (name, figure)
    for target in result["targets"]:
        # A target is reported with its value (met or not); only a tool that did not run leaves it open.
        assert target["met"] in (True, False) or target["value"] is None


@pytest.mark.slow
@pytest.mark.parametrize("tool", list(OPTIONAL))
def test_optional_tools_run_when_present_and_are_skipped_with_a_message_when_not(quick: dict[str, Any], tool: str) -> None:
    result = quick["parts"]["throughput"]
    if _tool_present(tool):
        for name in OPTIONAL[tool]:
            assert result["figures"][name]["median"] > 0
        cpu = result["figures"].get(OPTIONAL_CPU[tool])  # absent when its short run is as long as --quick's
        assert cpu is None or cpu["median"] >= 0
    else:
        assert not any(name in result["figures"] for name in OPTIONAL[tool])
        assert any(message.startswith(f"{tool}:") for message in result["skipped"]), result["skipped"]
        assert f"skipped {tool}:" in quick["_stdout"]


@pytest.mark.slow
def test_without_the_tools_part_3_runs_and_says_why(tmp_path: Path) -> None:
    """What a machine without Locust and autocannon gets (CI installs neither): the ocprobe and raw-loop
    figures, and a clear message for each tool left out."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--part", "throughput",
                           "--without", "locust", "--without", "autocannon", "--json", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "OCPROBE_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())["parts"]["throughput"]
    assert list(json.loads(out.read_text())["parts"]) == ["throughput"]
    assert result["figures"]["ratio ocprobe ws / raw loop"]["median"] > 0
    assert not any("Locust" in name or "autocannon" in name for name in result["figures"])
    assert [m.split(":")[0] for m in result["skipped"]] == ["locust", "autocannon"]
    assert "skipped locust: left out" in proc.stdout and "skipped autocannon: left out" in proc.stdout
    locust_target = next(t for t in result["targets"] if "Locust" in t["description"])
    assert locust_target["value"] is None and locust_target["met"] is None


@pytest.mark.slow
def test_the_run_says_where_it_ran_and_writes_markdown(quick: dict[str, Any]) -> None:
    assert quick["mode"] == "quick" and quick["machine"]["cpus"] >= 1
    assert "### 1. per-call overhead" in quick["_markdown"] and "| figure | median |" in quick["_markdown"]
    assert "== targets" in quick["_stdout"]


@pytest.mark.slow
def test_no_gateway_token_is_shown(quick: dict[str, Any]) -> None:
    # The bench's gateway tokens are 48 hex digits (secrets.token_hex(24)); none may reach its output.
    shown = quick["_stdout"] + quick["_markdown"] + json.dumps({k: v for k, v in quick.items() if not k.startswith("_")})
    assert not re.search(r"(?<![0-9a-f])[0-9a-f]{48}(?![0-9a-f])", shown)

#!/usr/bin/env python3
"""ocprobe's benchmarks: harness overhead, timing accuracy, throughput against Locust, autocannon and a
raw websockets loop, the reference gateway's capacity, memory over 10,000 calls, start-up time.

    python bench/run.py                      # the full suite (several minutes; installs autocannon into bench/)
    python bench/run.py --quick              # a short smoke of every part (what CI runs)
    python bench/run.py --part throughput    # one part (repeatable): overhead accuracy throughput capacity memory startup
    python bench/run.py --json out.json --markdown out.md

Every figure is the median and the spread (min-max) of several repetitions; comparisons are ratios of
runs made in the same repetition, one after the other, in alternating order. The gateway is ocprobe's
reference gateway (``ocprobe gateway serve``) with its provider at zero latency unless a part says
otherwise, on 127.0.0.1, started and stopped by its own PID. See bench/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BENCH_DIR, BenchError, Figure, Gateway, Target, child_env, interactive_signals, json_lines, machine,
    memory_supported, ocprobe_argv, percentile, proc_status_kb, run_child, set_workdir, workdir,
)

PARTS = ("overhead", "accuracy", "throughput", "capacity", "memory", "startup")
RAWWS = str(BENCH_DIR / "rawws.py")
LOCUST_DRIVER = str(BENCH_DIR / "locust_driver.py")
AUTOCANNON_DRIVER = str(BENCH_DIR / "autocannon_run.js")
CHILD_TIMEOUT = 600.0


@dataclass
class Settings:
    quick: bool
    overhead_reps: int
    overhead_calls: int
    accuracy_reps: int
    accuracy_calls: int
    accuracy_latency_ms: float
    throughput_reps: int
    concurrency: int
    sessions: int
    duration: float
    capacity_reps: int
    capacity_step_s: float
    capacity_bisect: int
    memory_reps: int
    memory_calls: int
    memory_mark: int
    startup_reps: int
    help_reps: int
    install: bool
    without: tuple[str, ...]

    @classmethod
    def make(cls, args: argparse.Namespace) -> Settings:
        quick = args.quick

        def reps(full: int, smoke: int) -> int:
            return args.reps or (smoke if quick else full)

        calls = args.memory_calls or (300 if quick else 10_000)
        return cls(
            quick=quick,
            overhead_reps=reps(5, 2), overhead_calls=20 if quick else 200,
            accuracy_reps=reps(5, 1), accuracy_calls=5 if quick else 40, accuracy_latency_ms=200.0,
            throughput_reps=reps(3, 1), concurrency=args.concurrency, sessions=max(args.concurrency, 64),
            duration=args.duration or (1.0 if quick else 5.0),
            capacity_reps=reps(3, 1), capacity_step_s=0.5 if quick else 2.0, capacity_bisect=0 if quick else 2,
            memory_reps=reps(3, 1), memory_calls=calls, memory_mark=max(1, calls // 10),
            startup_reps=reps(5, 1), help_reps=reps(10, 1),
            install=not args.no_install and not quick,
            without=tuple(args.without or ()),
        )


@dataclass
class PartResult:
    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def figure(self, name: str, unit: str, note: str = "") -> Figure:
        fig = Figure(name, unit, note=note)
        self.figures.append(fig)
        return fig

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "figures": {f.name: f.to_json() for f in self.figures if f.reps},
            "targets": [t.to_json() for t in self.targets],
            "skipped": self.skipped, "notes": self.notes, "seconds": round(self.seconds, 1), "error": self.error,
        }


class Context:
    """Gateways shared by the parts, started on first use and stopped at the end."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self._gateways: dict[tuple[float, bool], Gateway] = {}

    def gateway(self, latency_ms: float = 0.0, *, timed: bool = False) -> Gateway:
        key = (latency_ms, timed)
        if key not in self._gateways:
            gw = Gateway(latency_ms=latency_ms, name=f"gateway-{latency_ms:g}ms{'-timed' if timed else ''}", timed=timed)
            gw.start()
            self._gateways[key] = gw
        return self._gateways[key]

    def close(self) -> None:
        for gw in self._gateways.values():
            gw.stop()
        self._gateways.clear()


def log(message: str) -> None:
    print(message, flush=True)


# -- clients ------------------------------------------------------------------------------------------
def ocprobe_records(args: list[str], gw: Gateway | None) -> tuple[list[dict[str, Any]], dict[str, Any], Any]:
    """Run an ocprobe probe command with ``--json -``; its call records, its summary and the child result."""
    env = child_env(gw.token if gw else None)
    result = run_child(ocprobe_argv(*args, "--json", "-"), env=env, timeout=CHILD_TIMEOUT, cwd=workdir())
    records = json_lines(result.stdout)
    calls = [r for r in records if r.get("record") == "call"]
    summaries = [r for r in records if r.get("record") == "summary"]
    if result.returncode != 0 or not summaries:
        tail = result.stderr.strip().splitlines()[-3:]
        raise BenchError(f"ocprobe {args[0]} exited {result.returncode}: {' | '.join(tail)}")
    return calls, summaries[-1], result


def raw_ws(mode: str, gw: Gateway, *args: str) -> dict[str, Any]:
    result = run_child([sys.executable, RAWWS, mode, "--url", gw.url, *args], env=child_env(gw.token),
                       timeout=CHILD_TIMEOUT)
    if result.returncode != 0:
        raise BenchError(f"rawws {mode} exited {result.returncode}: {result.stderr.strip()[-300:]}")
    data = json.loads(result.stdout)
    data["cpu_s"] = result.cpu_s
    return data


def per_call_ms(calls: list[dict[str, Any]]) -> float:
    wall = max(c["ended_at"] for c in calls) - min(c["started_at"] for c in calls)
    return wall / len(calls) * 1000.0


def all_real(calls: list[dict[str, Any]], what: str) -> None:
    bad = [c for c in calls if c.get("class") != "real"]
    if bad:
        raise BenchError(f"{what}: {len(bad)} of {len(calls)} calls were not real (first: {bad[0].get('class')})")


# -- part 1: overhead ---------------------------------------------------------------------------------
def part_overhead(ctx: Context, part: PartResult) -> None:
    s = ctx.s
    gw = ctx.gateway(0.0)
    n = s.overhead_calls
    oc = part.figure("ocprobe sequential, per call", "ms", "first call's start to last call's end / calls")
    raw = part.figure("raw websockets loop, per call", "ms", "same exchange, same library, same gateway")
    oc_lat = part.figure("ocprobe sequential, median latency", "ms", "its own per-call latency_ms")
    raw_lat = part.figure("raw websockets loop, median latency", "ms")
    ratio = part.figure("ratio ocprobe / raw (per call)", "x", "per repetition, then the median")
    for rep in range(s.overhead_reps):
        order = ("oc", "raw") if rep % 2 == 0 else ("raw", "oc")
        got: dict[str, float] = {}
        for who in order:
            if who == "oc":
                calls, _, _ = ocprobe_records(
                    ["sequential", "-n", str(n), "--target", gw.url, "--session-key", f"bench-ovh-{rep}-oc"], gw)
                all_real(calls, "ocprobe sequential")
                got["oc"] = per_call_ms(calls)
                oc_lat.reps.append(statistics.median(c["latency_ms"] for c in calls))
            else:
                data = raw_ws("seq", gw, "--calls", str(n), "--session-key", f"bench-ovh-{rep}-raw")
                if data["ok"] != n:
                    raise BenchError(f"raw loop: {n - data['ok']} calls without their nonce")
                got["raw"] = data["wall_s"] / n * 1000.0
                raw_lat.reps.append(statistics.median(data["latencies_ms"]))
        oc.reps.append(got["oc"])
        raw.reps.append(got["raw"])
        ratio.reps.append(got["oc"] / got["raw"])
    part.notes.append(f"{n} sequential calls per repetition on a new session key; provider latency 0 ms")
    part.targets.append(Target("ocprobe sequential per call <= 1.10x the raw loop", ratio.name, "<=", 1.10, ratio.median))


# -- part 2: accuracy ---------------------------------------------------------------------------------
def part_accuracy(ctx: Context, part: PartResult) -> None:
    s = ctx.s
    lat = s.accuracy_latency_ms
    gw0, gwl = ctx.gateway(0.0, timed=True), ctx.gateway(lat, timed=True)
    n = s.accuracy_calls
    figs = {}
    for who, label in (("oc", "ocprobe"), ("raw", "raw loop")):
        figs[who] = {
            "med": part.figure(f"{label}: median |error| vs configured", "ms",
                               f"|latency - {lat:g} ms - the same repetition's median latency at 0 ms|"),
            "p99": part.figure(f"{label}: p99 |error| vs configured", "ms"),
            "cmed": part.figure(f"{label}: median |error| vs the gateway's own timing", "ms",
                                "|latency - the gateway's time from request to final, same call|"),
            "cp99": part.figure(f"{label}: p99 |error| vs the gateway's own timing", "ms"),
        }
    offset = part.figure(f"latency - {lat:g} ms (ocprobe, median)", "ms", "the gateway's own path: not an error")
    path = part.figure(f"gateway's own time - {lat:g} ms (median)", "ms", "request in to final out, server side")
    ratio = part.figure("ratio ocprobe / raw (p99 |error| vs configured)", "x")
    pooled: dict[str, list[float]] = {"oc": [], "raw": []}
    for rep in range(s.accuracy_reps):
        order = ("oc", "raw") if rep % 2 == 0 else ("raw", "oc")
        p99: dict[str, float] = {}
        for who in order:
            samples: dict[float, list[tuple[str, float]]] = {}
            for gw in (gw0, gwl):
                key = f"bench-acc-{rep}-{who}-{gw.latency_ms:g}"
                if who == "oc":
                    calls, _, _ = ocprobe_records(["sequential", "-n", str(n), "--target", gw.url, "--session-key", key], gw)
                    all_real(calls, "ocprobe sequential")
                    samples[gw.latency_ms] = [(c["run_id"], c["latency_ms"]) for c in calls]
                else:
                    data = raw_ws("seq", gw, "--calls", str(n), "--session-key", key)
                    samples[gw.latency_ms] = list(zip(data["run_ids"], data["latencies_ms"]))
            baseline = statistics.median(v for _, v in samples[0.0])
            errors = [abs(v - lat - baseline) for _, v in samples[lat]]
            server = gwl.server_ms()
            client = [abs(v - server[r]) for r, v in samples[lat] if r in server]
            if len(client) != len(samples[lat]):
                raise BenchError(f"the timed gateway timed {len(client)} of {len(samples[lat])} calls")
            pooled[who] += errors
            f = figs[who]
            f["med"].reps.append(statistics.median(errors))
            p99[who] = percentile(errors, 99)
            f["p99"].reps.append(p99[who])
            f["cmed"].reps.append(statistics.median(client))
            f["cp99"].reps.append(percentile(client, 99))
            if who == "oc":
                offset.reps.append(statistics.median(v for _, v in samples[lat]) - lat)
                path.reps.append(statistics.median(server[r] for r, _ in samples[lat]) - lat)
        ratio.reps.append(p99["oc"] / p99["raw"] if p99["raw"] > 0 else float("inf"))
    for who, label in (("oc", "ocprobe"), ("raw", "raw loop")):
        fig = part.figure(f"{label}: p99 |error| vs configured, all calls pooled", "ms", f"{len(pooled[who])} calls")
        fig.reps.append(percentile(pooled[who], 99))
    part.notes.append(
        f"provider latency {lat:g} ms fixed; per repetition and client, {n} sequential calls at {lat:g} ms and {n} at "
        "0 ms (the baseline: the gateway's own path), each on a new session key, against bench/timed_gateway.py (the "
        "reference gateway, timing each chat.send from request in to final out)")
    part.targets.append(Target("ocprobe p99 |error| vs configured latency <= 2 ms", figs["oc"]["p99"].name, "<=", 2.0,
                               figs["oc"]["p99"].median))
    part.targets.append(Target("ocprobe p99 |error| vs the gateway's own timing <= 2 ms", figs["oc"]["cp99"].name, "<=",
                               2.0, figs["oc"]["cp99"].median))


# -- part 3: throughput -------------------------------------------------------------------------------
def tool_status(settings: Settings) -> dict[str, str | None]:
    """None when a tool can run, else why not (and, in a full run, try to install it first)."""
    status: dict[str, str | None] = {}
    if "locust" in settings.without:
        status["locust"] = "left out (--without locust)"
    elif importlib.util.find_spec("locust") is None and settings.install:
        log("  installing locust into this environment (pip install 'locust>=2.20'; --no-install skips)")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "locust>=2.20"], timeout=600, check=False)
        importlib.invalidate_caches()
    if "locust" not in status:
        status["locust"] = None if importlib.util.find_spec("locust") else (
            "Locust is not installed: pip install -e '.[bench]' (or run without --quick/--no-install)")
    node, npm = shutil.which("node"), shutil.which("npm")
    module = BENCH_DIR / "node_modules" / "autocannon" / "package.json"
    if "autocannon" in settings.without:
        status["autocannon"] = "left out (--without autocannon)"
        return status
    if node and npm and not module.exists() and settings.install:
        log("  installing autocannon into bench/node_modules (npm ci; --no-install skips)")
        subprocess.run([npm, "ci", "--prefix", str(BENCH_DIR), "--no-audit", "--no-fund", "--loglevel=error"],
                       timeout=600, check=False, stdout=subprocess.DEVNULL)
    if not node:
        status["autocannon"] = "autocannon needs Node.js (node not found on PATH)"
    elif not module.exists():
        status["autocannon"] = "autocannon is not installed: npm ci --prefix bench (or run without --quick/--no-install)"
    else:
        status["autocannon"] = None
    return status


def part_throughput(ctx: Context, part: PartResult) -> None:
    s = ctx.s
    gw = ctx.gateway(0.0)
    c, k, d = s.concurrency, s.sessions, s.duration
    tools = tool_status(s)
    for name, why in tools.items():
        if why:
            part.skipped.append(f"{name}: {why}")
            log(f"  skipped {name}: {why}")
    relay_url = f"{gw.http_url}/chat.send"
    figs = {
        "oc_relay": part.figure("ocprobe concurrent, relay transport", "calls/s"),
        "locust": part.figure("Locust FastHttpUser, relay", "calls/s"),
        "autocannon": part.figure("autocannon, relay", "calls/s"),
        "oc_ws": part.figure("ocprobe concurrent, ws transport", "calls/s"),
        "raw_ws": part.figure("raw websockets loop, one connection", "calls/s"),
    }
    r_locust = part.figure("ratio ocprobe relay / Locust", "x")
    r_ac = part.figure("ratio ocprobe relay / autocannon", "x")
    r_ws = part.figure("ratio ocprobe ws / raw loop", "x")
    cpu = {tool: part.figure(f"client CPU per call: {fig.name}", "ms",
                             "marginal: (CPU of the run - CPU of a 0.3 s run) / (the difference of their calls)")
           for tool, fig in figs.items()}
    order = [t for t in figs if t not in ("locust", "autocannon") or tools[t] is None]

    def run_tool(tool: str, duration: float, prefix: str) -> tuple[float, int, float]:
        """calls/s, calls and the client's CPU seconds of one closed-loop run."""
        if tool in ("oc_relay", "oc_ws"):
            target = relay_url if tool == "oc_relay" else gw.url
            calls, summary, result = ocprobe_records(
                ["concurrent", "-n", "100000", "-c", str(c), "--sessions", str(k), "--duration", f"{duration:g}",
                 "--target", target, "--transport", "relay" if tool == "oc_relay" else "ws",
                 "--session-key", prefix, "--quiet"], gw)
            all_real(calls, f"ocprobe concurrent ({tool})")
            return summary["concurrency"]["calls_per_s"], len(calls), result.cpu_s
        if tool == "raw_ws":
            data = raw_ws("closed", gw, "--concurrency", str(c), "--sessions", str(k), "--duration", f"{duration:g}",
                          "--prefix", prefix)
            _check_ok(data, "raw loop")
            return data["calls_per_s"], data["calls"], data["cpu_s"]
        if tool == "locust":
            argv = [sys.executable, LOCUST_DRIVER, "--host", gw.http_url, "--concurrency", str(c), "--sessions", str(k),
                    "--duration", f"{duration:g}", "--prefix", prefix]
        else:
            argv = ["node", AUTOCANNON_DRIVER, relay_url, str(c), f"{duration:g}", str(k), prefix]
        result = run_child(argv, env=child_env(gw.token), timeout=CHILD_TIMEOUT)
        data = _last_json(result, tool)
        _check_ok(data, tool)
        return data["calls_per_s"], data["calls"], result.cpu_s

    for rep in range(s.throughput_reps):
        got: dict[str, float] = {}
        rotated = order[rep % len(order):] + order[: rep % len(order)]
        for tool in rotated:
            rate, calls, cpu_s = run_tool(tool, d, f"bench-tp-{rep}-{tool}")
            _, tiny_calls, tiny_cpu = run_tool(tool, 0.3, f"bench-tp-{rep}-{tool}-tiny")
            got[tool] = rate
            figs[tool].reps.append(rate)
            if calls - tiny_calls >= 0.2 * calls:  # autocannon runs whole seconds: its short run lasts 1 s
                cpu[tool].reps.append(max(0.0, cpu_s - tiny_cpu) / (calls - tiny_calls) * 1000.0)
        if "locust" in got:
            r_locust.reps.append(got["oc_relay"] / got["locust"])
        if "autocannon" in got:
            r_ac.reps.append(got["oc_relay"] / got["autocannon"])
        r_ws.reps.append(got["oc_ws"] / got["raw_ws"])
    part.figures = [f for f in part.figures if f.reps]
    part.notes.append(
        f"closed loop, {c} workers/users/connections, {k} session keys (worker w cycles through keys s with "
        f"s % {c} == w, as ocprobe does; autocannon takes them in turn), {d:g} s per run; calls/s = calls / "
        "(first call's start to last call's end), autocannon: its own duration; the order of the tools rotates "
        "each repetition. Client CPU per call: user+system time of the client process, the start-up taken out by "
        "subtracting a 0.3 s run of the same client (autocannon's lasts 1 s: it counts whole seconds; the figure is "
        "left out when the two runs' calls differ by less than 20%); the gateway's CPU is not in it")
    part.targets.append(Target("ocprobe relay >= 1.5x Locust", r_locust.name, ">=", 1.5,
                               r_locust.median if r_locust.reps else None))
    part.targets.append(Target("ocprobe ws >= 0.8x the raw loop", r_ws.name, ">=", 0.8, r_ws.median))


def _last_json(result: Any, what: str) -> dict[str, Any]:
    records = json_lines(result.stdout)
    if result.returncode != 0 or not records:
        raise BenchError(f"{what} exited {result.returncode}: {result.stderr.strip()[-300:]}")
    return records[-1]


def _check_ok(data: dict[str, Any], what: str) -> None:
    if data["calls"] <= 0 or data["ok"] < data["calls"]:
        raise BenchError(f"{what}: {data['calls'] - data['ok']} of {data['calls']} calls without a real reply")


# -- part 4: capacity ---------------------------------------------------------------------------------
def part_capacity(ctx: Context, part: PartResult) -> None:
    s = ctx.s
    gw = ctx.gateway(0.0)
    step = s.capacity_step_s
    cap = part.figure("reference gateway capacity (median latency <= 2x idle)", "calls/s")
    idle = part.figure("idle round trip (lowest median at 10-50 calls/s)", "ms")
    at_cap = part.figure("median round trip at capacity", "ms")
    light = [10.0, 50.0] if s.quick else [10.0, 25.0, 50.0]
    rates = [200.0, 800.0] if s.quick else [100.0, 200.0, 400.0, 800.0, 1600.0]
    counter = iter(range(1_000_000))

    def measure(rate: float, rep: int) -> tuple[float, bool]:
        data = raw_ws("open", gw, "--rate", f"{rate:g}", "--duration", f"{step:g}", "--cap", "2000",
                      "--sessions", "256", "--prefix", f"bench-cap-{rep}-{next(counter)}")
        sustained = data["ok"] == data["calls"] and data["achieved_per_s"] >= 0.9 * rate
        return statistics.median(data["latencies_ms"]), sustained

    for rep in range(s.capacity_reps):
        # The idle round trip is the lowest median at light load: at the very lowest rates the machine
        # also idles between calls, and waking up costs some of it.
        points = {rate: measure(rate, rep) for rate in light}
        base = min(median for median, _ in points.values())
        idle.reps.append(base)

        def ok(rate: float) -> bool:
            median, sustained = points[rate]
            return sustained and median <= 2 * base

        good = max((r for r in light if ok(r)), default=light[0])
        bad = next((r for r in light if r > good and not ok(r)), None)
        for rate in rates if bad is None else []:
            points[rate] = measure(rate, rep)
            if not ok(rate):
                bad = rate
                break
            good = rate
        for _ in range(s.capacity_bisect if bad else 0):
            mid = float(round((good * bad) ** 0.5))  # geometric midpoint
            points[mid] = measure(mid, rep)
            if ok(mid):
                good = mid
            else:
                bad = mid
        cap.reps.append(good)
        at_cap.reps.append(points[good][0])
        log(f"  rep {rep + 1}: idle {base:.2f} ms, capacity {good:g} calls/s"
            + (f" (at {bad:g}/s the median round trip passed {2 * base:.2f} ms or the rate was not sustained)" if bad else ""))
    part.notes.append(
        f"open loop from the raw websockets client (the cheapest client here, on the same machine, so it takes "
        f"some of the CPU): {', '.join(f'{r:g}' for r in light)} calls/s give the idle round trip, then "
        f"{', '.join(f'{r:g}' for r in rates)} calls/s for {step:g} s each and {s.capacity_bisect} bisection "
        "step(s); capacity = the highest rate sustained (>= 90% achieved, every reply real) with a median round "
        "trip at most twice the idle one")


# -- part 5: memory -----------------------------------------------------------------------------------
def part_memory(ctx: Context, part: PartResult) -> None:
    s = ctx.s
    if not memory_supported():
        part.skipped.append("memory: needs /proc (Linux) or psutil")
        return
    n, mark = s.memory_calls, s.memory_mark
    peak = part.figure(f"peak RSS of ocprobe over {n} calls", "MB", "its own getrusage peak at exit (and VmHWM samples)")
    at_mark = part.figure(f"RSS after call {mark}", "MB")
    at_end = part.figure(f"RSS after call {n}", "MB", "the first sample after it: the run's results are being built")
    growth = part.figure(f"RSS growth call {mark} -> {n}", "%",
                         "per call from call {mark} to the last sample before call {n}, times the calls between".format(
                             mark=mark, n=n))
    growth_end = part.figure(f"RSS growth call {mark} -> {n}, the run's end included", "%")
    wall = part.figure(f"wall time of the {n} calls", "s")
    gw_peak = part.figure("peak RSS of the reference gateway child (not ocprobe)", "MB")
    for rep in range(s.memory_reps):
        samples = run_sampled([sys.executable, "-c", PEAK_WRAPPER, "concurrent", "-n", str(n), "-c", "1", "--sessions",
                               "1000", "--latency-ms", "0", "--session-key", f"bench-mem-{rep}", "--json", "-"], n)
        _, calls_mark, rss_mark = next(x for x in samples["points"] if x[1] >= mark)
        rss_end = next(x for x in samples["points"] if x[1] >= n)[2]
        # What the calls keep, apart from the results built once after the last (a sample ~50 ms after it lands
        # there): the growth per call up to the last sample taken while calls ran, over the calls mark..n.
        _, calls_last, rss_last = max((x for x in samples["points"] if x[1] < n), key=lambda x: x[1],
                                      default=(0.0, 0, 0))
        peak.reps.append(samples["hwm_kb"] / 1024)
        at_mark.reps.append(rss_mark / 1024)
        at_end.reps.append(rss_end / 1024)
        growth_end.reps.append((rss_end - rss_mark) / rss_mark * 100.0)
        growth.reps.append(  # a run too short to be sampled between: the end included
            (rss_last - rss_mark) / (calls_last - calls_mark) * (n - mark) / rss_mark * 100.0
            if calls_last > calls_mark else growth_end.reps[-1])
        wall.reps.append(samples["wall_s"])
        if samples["child_hwm_kb"]:
            gw_peak.reps.append(samples["child_hwm_kb"] / 1024)
    part.figures = [f for f in part.figures if f.reps]
    part.notes.append(
        f"`ocprobe concurrent -n {n} -c 1 --sessions 1000 --latency-ms 0 --json -` (embedded target: the provider, "
        "the witness, runs inside ocprobe): one call at a time like `sequential`, spread over 1000 sessions because "
        "the reference gateway replays a session's whole history to the provider on every turn (10,000 turns on "
        "one session would make the run quadratic in the gateway); RSS sampled every 50 ms from /proc")
    part.targets.append(Target("peak RSS <= 100 MB", peak.name, "<=", 100.0, peak.median))
    part.targets.append(Target(f"RSS growth call {mark} -> {n} < 10%", growth.name, "<", 10.0, growth.median))


# ocprobe's own entry point, reporting the process's peak RSS (getrusage, RUSAGE_SELF: not its gateway
# child's) when it exits: a peak in its last milliseconds would slip between two samples.
PEAK_WRAPPER = """
import atexit, os, resource, sys
def _peak():
    with open(os.environ["OCPROBE_BENCH_PEAK_FILE"], "w") as f:
        f.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
atexit.register(_peak)
sys.argv = ["ocprobe", *sys.argv[1:]]
from ocprobe.cli import main
main()
"""


def run_sampled(argv: list[str], calls: int) -> dict[str, Any]:
    """Run ocprobe with ``--json -`` into a file, sampling its RSS against the call records written so far."""
    out = workdir() / f"mem-{time.monotonic_ns()}.jsonl"
    err = out.with_suffix(".stderr")
    points: list[tuple[float, int, int]] = []  # (seconds, calls finished, RSS kB)
    hwm = child_hwm = 0
    marker = b'"record": "call"'
    with out.open("wb") as fo, err.open("wb") as fe, out.open("rb") as reader:
        start = time.perf_counter()
        peak_file = out.with_suffix(".peak")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe,
                                env=child_env(OCPROBE_BENCH_PEAK_FILE=str(peak_file)), cwd=workdir(),
                                start_new_session=True, preexec_fn=interactive_signals)
        seen, pending = 0, b""
        try:
            while proc.poll() is None:
                if time.perf_counter() - start > CHILD_TIMEOUT:
                    raise BenchError(f"ocprobe did not finish {calls} calls within {CHILD_TIMEOUT:g}s")
                status = proc_status_kb(proc.pid)
                chunk = pending + reader.read()
                cut = chunk.rfind(b"\n") + 1
                seen += chunk[:cut].count(marker)
                pending = chunk[cut:]
                if status.get("VmRSS"):
                    points.append((time.perf_counter() - start, seen, status["VmRSS"]))
                    hwm = max(hwm, status.get("VmHWM", 0))
                child_hwm = max(child_hwm, _children_hwm(proc.pid))
                time.sleep(0.05)
        finally:
            if proc.poll() is None:  # cut short: SIGTERM lets ocprobe stop its gateway, SIGKILL after 5 s
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.wait()
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(f"ocprobe exited {proc.returncode}: {err.read_text(errors='replace').strip()[-300:]}")
    try:
        peak_kb = int(peak_file.read_text()) // (1024 if sys.platform == "darwin" else 1)  # bytes on macOS
    except (OSError, ValueError):
        peak_kb = 0
    hwm = max(hwm, peak_kb)
    total = out.read_bytes().count(marker)
    if total != calls or not any(p[1] >= calls for p in points):
        raise BenchError(f"memory run: {total} call records, sampled up to {max((p[1] for p in points), default=0)}")
    return {"points": points, "hwm_kb": hwm, "child_hwm_kb": child_hwm, "wall_s": wall}


def _children_hwm(pid: int) -> int:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0
    return max((proc_status_kb(int(c)).get("VmHWM", 0) for c in children), default=0)


# -- part 6: start-up ---------------------------------------------------------------------------------
def part_startup(ctx: Context, part: PartResult) -> None:
    s = ctx.s
    seq = part.figure("`ocprobe sequential -n 10`, process start to exit", "s", "embedded, default 250 ms provider")
    seq0 = part.figure("`ocprobe sequential -n 10 --latency-ms 0`", "s", "the same without the LLM's 10 x 250 ms")
    helpf = part.figure("`ocprobe --help`, process start to exit", "ms")
    bare = part.figure("`python -c pass` (the interpreter alone)", "ms")
    imp = part.figure("import ocprobe.cli (python -X importtime, cumulative)", "ms")
    env = child_env()
    for rep in range(s.startup_reps):
        for fig, extra in ((seq, []), (seq0, ["--latency-ms", "0"])):
            result = run_child(ocprobe_argv("sequential", "-n", "10", *extra), env=env, timeout=120, cwd=workdir())
            if result.returncode != 0:
                raise BenchError(f"ocprobe sequential -n 10 exited {result.returncode}: {result.stderr.strip()[-300:]}")
            fig.reps.append(result.wall_s)
    for rep in range(s.help_reps):
        result = run_child(ocprobe_argv("--help"), env=env, timeout=60)
        if result.returncode != 0 or "sequential" not in result.stdout:
            raise BenchError(f"ocprobe --help exited {result.returncode}")
        helpf.reps.append(result.wall_s * 1000)
        bare.reps.append(run_child([sys.executable, "-c", "pass"], env=env, timeout=60).wall_s * 1000)
        result = run_child([sys.executable, "-X", "importtime", "-c", "import ocprobe.cli"], env=env, timeout=60)
        top = _importtime(result.stderr)
        imp.reps.append(top.get("ocprobe.cli", 0) / 1000)
        if rep == 0:
            heavy = sorted(((v, k) for k, v in top.items() if "." not in k or k.startswith("ocprobe")), reverse=True)
            part.notes.append("heaviest imports (cumulative ms): " + ", ".join(
                f"{k} {v / 1000:.0f}" for v, k in heavy[:8]))
    part.targets.append(Target("`ocprobe sequential -n 10` <= 3 s", seq.name, "<=", 3.0, seq.median))
    part.targets.append(Target("`ocprobe --help` <= 300 ms", helpf.name, "<=", 300.0, helpf.median))


def _importtime(stderr: str) -> dict[str, int]:
    """Cumulative microseconds per top-level (least indented) module of ``-X importtime``."""
    out: dict[str, int] = {}
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            name = m.group(3)
            out[name] = max(out.get(name, 0), int(m.group(1)))
    return out


# -- the run ------------------------------------------------------------------------------------------
RUNNERS: dict[str, tuple[str, Callable[[Context, PartResult], None]]] = {
    "overhead": ("1. per-call overhead: ocprobe sequential vs a raw websockets loop", part_overhead),
    "accuracy": ("2. timing accuracy against a fixed provider latency", part_accuracy),
    "throughput": ("3. concurrent throughput: ocprobe vs Locust, autocannon, raw loop", part_throughput),
    "capacity": ("4. the reference gateway's own capacity", part_capacity),
    "memory": ("5. memory of ocprobe over many calls", part_memory),
    "startup": ("6. start-up: ocprobe sequential -n 10 and ocprobe --help", part_startup),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--quick", action="store_true", help="a short smoke of every part (~40 s): fewer calls, 1-2 repetitions")
    p.add_argument("--part", action="append", choices=PARTS, help="run only this part (repeatable)")
    p.add_argument("--reps", type=int, help="repetitions of every part (default: 5, throughput/capacity/memory 3; quick 1-2)")
    p.add_argument("--concurrency", type=int, default=8, help="workers / users / connections in part 3 (default 8)")
    p.add_argument("--duration", type=float, help="seconds per throughput run (default 5, quick 1)")
    p.add_argument("--memory-calls", type=int, help="calls of the memory run (default 10000, quick 300)")
    p.add_argument("--without", action="append", choices=("locust", "autocannon"),
                   help="leave this comparison tool out of part 3 (repeatable)")
    p.add_argument("--no-install", action="store_true", help="do not install missing Locust/autocannon (full run)")
    p.add_argument("--json", type=Path, help="write every figure, note and target as JSON here")
    p.add_argument("--markdown", type=Path, help="write the figures as Markdown tables here")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (gateway logs, run dirs)")
    args = p.parse_args(argv)
    if args.reps is not None and args.reps < 1:
        p.error("--reps must be at least 1")
    settings = Settings.make(args)
    parts = [x for x in PARTS if x in (args.part or PARTS)]
    tmp = Path(tempfile.mkdtemp(prefix="ocprobe-bench-"))
    set_workdir(tmp)
    info = machine()
    log(f"ocprobe bench ({'quick' if settings.quick else 'full'}): {', '.join(parts)}")
    log(f"machine: {info['cpu']}, {info['cpus']} CPUs, {info['mem_gb']} GB, Python {info['python']}, "
        f"load {info['loadavg_at_start']}")
    ctx = Context(settings)
    results: list[PartResult] = []
    started = time.perf_counter()
    try:
        for name in parts:
            title, runner = RUNNERS[name]
            part = PartResult(name, title)
            results.append(part)
            log(f"\n== {title}")
            t0 = time.perf_counter()
            try:
                runner(ctx, part)
            except BenchError as exc:
                part.error = str(exc)
                log(f"  ERROR: {exc}")
            part.seconds = time.perf_counter() - t0
            for fig in part.figures:
                if fig.reps:
                    log("  " + fig.describe())
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        ctx.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")
    total = time.perf_counter() - started
    try:
        info["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        info["loadavg_at_end"] = None
    log(f"\n== targets (medians; {total:.0f} s in all)")
    for part in results:
        for target in part.targets:
            log(target.describe())
        for why in part.skipped:
            log(f"  skipped ({part.name}): {why}")
        if part.error:
            log(f"  error ({part.name}): {part.error}")
    document = {
        "mode": "quick" if settings.quick else "full", "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": info, "seconds": round(total, 1), "settings": vars(settings),
        "parts": {part.name: part.to_json() for part in results},
    }
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(document))
    return 1 if any(part.error for part in results) else 0


def markdown(document: dict[str, Any]) -> str:
    m = document["machine"]
    lines = [f"Run finished {document['date']} ({document['mode']}, {document['seconds']:.0f} s): {m['cpu']}, "
             f"{m['cpus']} CPUs, {m['mem_gb']} GB RAM, {m['os']}, Python {m['python']}, "
             f"load average at start {m['loadavg_at_start']}, at end {m.get('loadavg_at_end')} (other work shared "
             "the machine: the spreads say how much that moved the figures).", ""]
    for part in document["parts"].values():
        lines += [f"### {part['title']}", "", "| figure | median | spread (min-max) | reps |", "|---|---:|---:|---:|"]
        for name, f in part["figures"].items():
            name = name.replace("|", "\\|")  # a literal pipe would end the table cell
            lines.append(f"| {name} | {_fmt(f['median'])} {f['unit']} | {_fmt(f['min'])}-{_fmt(f['max'])} | {len(f['reps'])} |")
        lines.append("")
        for t in part["targets"]:
            state = {True: "met", False: "**missed**", None: "n/a"}[t["met"]]
            lines.append(f"- target: {t['description']}: {state} ({_fmt(t['value']) if t['value'] is not None else '-'})")
        for note in part["notes"]:
            lines.append(f"- {note}")
        for why in part["skipped"]:
            lines.append(f"- skipped: {why}")
        if part["error"]:
            lines.append(f"- error: {part['error']}")
        lines.append("")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


if __name__ == "__main__":
    sys.exit(main())

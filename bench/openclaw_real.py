#!/usr/bin/env python3
"""ocprobe against a REAL OpenClaw gateway: its per-call overhead over the gateway's own run timing, beside a
raw websockets loop, and the gateway's RSS while it is probed.

    python bench/openclaw_real.py [--version 2026.5.3] [--calls 10] [--reps 3] [--gap 1.0] [--latency-ms 200]
                                  [--json out.json] [--dump 0]

`ocprobe openclaw up` launches the gateway (installs come from $OCPROBE_CACHE). A listener connection records,
per runId, the gateway's own run time from its broadcast `agent` lifecycle events: end's data.endedAt - start's
data.startedAt (2026.5.3's end event carries no startedAt). Per repetition, in alternating order: `ocprobe
sequential` (own process) and a raw loop (this process, bench/rawws.py's helpers), each on a new session key.
Overhead = client latency - gateway run time, same runId; client and gateway share the host's wall clock, so
it splits into send -> run start and run end -> final received. Everything is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rawws  # noqa: E402
from common import (  # noqa: E402
    BenchError, child_env, interactive_signals, json_lines, machine, ocprobe_argv, percentile, proc_status_kb,
    run_child, set_workdir, workdir,
)

READY_TIMEOUT, STOP_GRACE, CALL_TIMEOUT = 300.0, 30.0, 60.0


def env_for(token: str | None = None) -> dict[str, str]:
    """child_env, but with the user's $OCPROBE_CACHE (the installs live there), or ocprobe's default."""
    env = child_env(token)
    env.pop("OCPROBE_CACHE")
    if os.environ.get("OCPROBE_CACHE"):
        env["OCPROBE_CACHE"] = os.environ["OCPROBE_CACHE"]
    return env


# -- the gateway ----------------------------------------------------------------------------------------
def start_up(version: str, latency_ms: float) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """`ocprobe openclaw up` in its own session; its ready record (url, token_file, run_dir, log_file)."""
    stderr = (workdir() / "up.stderr").open("wb")
    proc = subprocess.Popen(ocprobe_argv("openclaw", "up", version, "--json", "--latency-ms", f"{latency_ms:g}"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=env_for(),
                            start_new_session=True, preexec_fn=interactive_signals)
    assert proc.stdout is not None
    deadline, buf = time.monotonic() + READY_TIMEOUT, b""
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline and proc.poll() is None:
                if sel.select(timeout=0.5):
                    buf += os.read(proc.stdout.fileno(), 65536)
                    for rec in json_lines(buf.decode(errors="replace")):
                        if rec.get("event") == "ready":
                            return proc, rec
    except BaseException:  # Ctrl-C while it starts: stop it all the same
        stop_up(proc, None)
        raise
    tail = (workdir() / "up.stderr").read_text(errors="replace").strip().splitlines()[-3:]
    stop_up(proc, None)
    raise BenchError(f"openclaw up: no ready record within {READY_TIMEOUT:g}s: {' | '.join(tail)}")


def children(pid: int) -> list[int]:
    """Child PIDs of every thread of ``pid`` (/proc/PID/task/TID/children)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: with the PID, names one process even if the PID is reused later."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def stop_up(proc: subprocess.Popen[bytes], gateway: tuple[int, str | None] | None) -> None:
    """SIGTERM to `up` (it stops the gateway itself), SIGKILL to its group after STOP_GRACE; the gateway runs in
    a session of its own, so if it outlived `up` it gets SIGKILL by its PID (checked by start time)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
    if gateway and gateway[1] is not None and start_time(gateway[0]) == gateway[1]:
        try:
            os.kill(gateway[0], signal.SIGKILL)
        except ProcessLookupError:
            pass


class Sampler(threading.Thread):
    """VmRSS / VmHWM of the gateway every 100 ms until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples, self.halt = pid, [], threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            kb = proc_status_kb(self.pid)
            if "VmRSS" in kb:
                self.samples.append(kb)
            self.halt.wait(0.1)


class Listener(threading.Thread):
    """A raw connection that only listens (its own thread and event loop): lifecycle events by runId."""

    def __init__(self, url: str, token: str, dump: int) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.dump = url, token, dump
        self.runs: dict[str, dict[str, Any]] = {}
        self.end_keys: set[str] = set()  # the data fields seen on end events, for the report
        self.ready, self.halt, self.error = threading.Event(), threading.Event(), None

    def run(self) -> None:
        try:
            asyncio.run(self._listen())
        except BaseException as exc:  # open_ws raises SystemExit on a refused connect
            self.error = repr(exc)
            self.ready.set()

    async def _listen(self) -> None:
        ws = await rawws.open_ws(self.url, self.token)
        self.ready.set()
        try:
            while not self.halt.is_set():
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                except asyncio.TimeoutError:
                    continue
                if self.dump > 0 and frame.get("event") not in ("tick", "health"):
                    self.dump -= 1
                    print("  frame:", json.dumps(frame)[:400], flush=True)
                payload = frame.get("payload") or {}
                if frame.get("event") == "agent" and payload.get("stream") == "lifecycle":
                    data, run = payload.get("data") or {}, self.runs.setdefault(str(payload.get("runId")), {})
                    if data.get("phase") == "start":
                        run["start"] = data.get("startedAt", payload.get("ts"))
                    elif data.get("phase") == "end":
                        self.end_keys |= set(data)
                        run["start"] = data.get("startedAt", run.get("start"))
                        run["end"] = data.get("endedAt", payload.get("ts"))
        finally:
            await ws.close()

    def run_ms(self, run_id: str) -> float | None:
        run = self.runs.get(run_id) or {}
        return None if run.get("start") is None or run.get("end") is None else float(run["end"] - run["start"])

    def split(self, row: dict[str, Any]) -> dict[str, float | None]:
        """Client and gateway share the host's wall clock: the time before the run (send -> start) and after
        it (end -> the client has the final), ms; Date.now() has 1 ms resolution."""
        run = self.runs.get(row["run_id"]) or {}
        if row["run_ms"] is None:
            return {"pre_ms": None, "post_ms": None}
        return {"pre_ms": run["start"] - row["started_at"] * 1000.0, "post_ms": row["ended_at"] * 1000.0 - run["end"]}

    def wait_for(self, run_ids: list[str], timeout: float = 5.0) -> None:
        """The end event may trail the client's final by a little: wait for it, bounded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(self.run_ms(r) is None for r in run_ids):
            time.sleep(0.05)


# -- the clients ----------------------------------------------------------------------------------------
def ocprobe_rep(url: str, token: str, calls: int, gap: float, key: str) -> list[dict[str, Any]]:
    result = run_child(ocprobe_argv("sequential", "--target", url, "-n", str(calls), "--gap", f"{gap:g}",
                                    "--session-key", key, "--json", "-"),
                       env=env_for(token), timeout=120 + calls * (gap + CALL_TIMEOUT), cwd=workdir())
    rows = [{k: r[k] for k in ("run_id", "latency_ms", "class", "started_at", "ended_at")}
            for r in json_lines(result.stdout) if r.get("record") == "call"]
    if len(rows) != calls:
        raise BenchError(f"ocprobe sequential exited {result.returncode} with {len(rows)} of {calls} call records: "
                         f"{' | '.join(result.stderr.strip().splitlines()[-3:])}")
    return rows


async def raw_rep(url: str, token: str, calls: int, gap: float, key: str, tag: str) -> list[dict[str, Any]]:
    """rawws.sequential's exchange (send, response, this run's final) plus the gap, each call bounded."""
    ws, rows = await rawws.open_ws(url, token), []
    try:
        for i in range(1, calls + 1):
            if i > 1:
                await asyncio.sleep(gap)
            run_id, nonce, req_id = f"raw-{tag}-{i}", f"ok-{i}-{tag}", f"chat.send-{tag}-{i}"
            t0, started_at, ack_ms = time.perf_counter(), time.time(), None
            await ws.send(json.dumps({"type": "req", "id": req_id, "method": "chat.send", "params": {
                "sessionKey": key, "message": rawws.MESSAGE.format(nonce=nonce), "idempotencyKey": run_id}}))
            state, text, acked, deadline = None, "", False, t0 + CALL_TIMEOUT
            while state is None or not acked:
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), max(0.0, deadline - time.perf_counter())))
                except asyncio.TimeoutError:
                    state = state or "timeout"
                    break
                payload = frame.get("payload") or {}
                if frame.get("type") == "res" and frame.get("id") == req_id:
                    acked, ack_ms = True, (time.perf_counter() - t0) * 1000.0
                    if not frame.get("ok"):
                        state = "refused"
                        break
                elif frame.get("event") == "chat" and payload.get("runId") == run_id and payload.get("state") in rawws.TERMINAL:
                    state, text = payload["state"], rawws._text(payload)
            latency, ended_at = (time.perf_counter() - t0) * 1000.0, time.time()
            cls = "real" if state == "final" and nonce in text else ("empty-final" if state == "final" else state)
            rows.append({"run_id": run_id, "latency_ms": latency, "class": cls, "started_at": started_at,
                         "ended_at": ended_at, "ack_ms": ack_ms})
    finally:
        await ws.close()
    return rows


# -- figures --------------------------------------------------------------------------------------------
def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    real = [r for r in rows if r["class"] == "real"]
    timed = [r for r in real if r["run_ms"] is not None]
    out: dict[str, Any] = {"calls": len(rows), "real": len(real), "not_real": len(rows) - len(real),
                           "timed": len(timed), "classes": sorted({r["class"] for r in rows})}
    for name, values in (("latency_ms", [r["latency_ms"] for r in real]), ("gateway_run_ms", [r["run_ms"] for r in timed]),
                         ("outside_ms", [r["latency_ms"] - r["run_ms"] for r in timed]),
                         ("pre_run_ms", [r["pre_ms"] for r in timed]), ("post_run_ms", [r["post_ms"] for r in timed]),
                         ("ack_ms", [r["ack_ms"] for r in real if r.get("ack_ms") is not None])):
        if values:
            out[name] = {"median": round(statistics.median(values), 2), "p95": round(percentile(values, 95), 2)}
    return out


def probe(args: argparse.Namespace) -> dict[str, Any]:
    """Start the gateway, measure, stop it all (also on an error or Ctrl-C); the raw measurements."""
    up, gateway, sampler, listener, t0 = None, None, None, None, time.monotonic()
    try:
        up, ready = start_up(args.version, args.latency_ms)
        ready_s = time.monotonic() - t0
        url, token = str(ready["url"]), Path(ready["token_file"]).read_text().strip()
        if not url.startswith("ws://127.0.0.1:"):
            raise BenchError(f"the gateway does not listen on loopback: {url}")
        kids = children(up.pid)
        if len(kids) != 1:
            raise BenchError(f"expected one child of `up` (the gateway), found {kids}")
        gateway = (kids[0], start_time(kids[0]))
        idle_kb = proc_status_kb(gateway[0])
        sampler, listener = Sampler(gateway[0]), Listener(url, token, args.dump)
        sampler.start()
        listener.start()
        if not listener.ready.wait(30) or listener.error:
            raise BenchError(f"listener could not connect: {listener.error}")
        log(f"openclaw {ready.get('version')} ready after {ready_s:.0f} s; gateway pid {gateway[0]} "
            f"({len(children(gateway[0]))} children of its own), idle RSS {idle_kb['VmRSS'] / 1024:.0f} MB")
        # One call first, left out: the gateway's first turn takes seconds (lazy loading), whoever sends it.
        warm = asyncio.run(raw_rep(url, token, 1, 0.0, "bench-warmup", "warm"))
        listener.wait_for([warm[0]["run_id"]])
        log(f"warm-up call {warm[0]['latency_ms']:.0f} ms ({warm[0]['class']}), gateway run "
            f"{listener.run_ms(warm[0]['run_id'])} ms; lifecycle end fields: {sorted(listener.end_keys) or 'none'}")
        rows: dict[str, list[dict[str, Any]]] = {"ocprobe": [], "raw": []}
        for rep in range(args.reps):
            for who in (("ocprobe", "raw") if rep % 2 == 0 else ("raw", "ocprobe")):  # order alternates
                if who == "ocprobe":
                    got = ocprobe_rep(url, token, args.calls, args.gap, f"bench-oc-{rep}")
                else:
                    got = asyncio.run(raw_rep(url, token, args.calls, args.gap, f"bench-raw-{rep}", f"r{rep}"))
                listener.wait_for([r["run_id"] for r in got if r["class"] == "real"])
                for r in got:
                    r.update(rep=rep, run_ms=listener.run_ms(r["run_id"]))
                    r.update(listener.split(r))
                rows[who] += got
                if listener.error:
                    raise BenchError(f"the listener lost its connection: {listener.error}")
                log(f"  rep {rep + 1} {who:<7}: {sum(r['class'] == 'real' for r in got)}/{len(got)} real, "
                    f"{sum(r['run_ms'] is not None for r in got)} timed by the listener, "
                    f"median {statistics.median(r['latency_ms'] for r in got):.0f} ms")
        samples = list(sampler.samples)
    finally:
        for thread in (sampler, listener):
            if thread:
                thread.halt.set()
                thread.join(5)
        if up:
            stop_up(up, gateway)
    if not samples:
        raise BenchError("no RSS samples of the gateway")
    rss = {"idle_mb": idle_kb["VmRSS"] / 1024, "peak_sampled_mb": max(s["VmRSS"] for s in samples) / 1024,
           "vmhwm_at_ready_mb": idle_kb["VmHWM"] / 1024, "vmhwm_at_end_mb": samples[-1]["VmHWM"] / 1024,
           "end_mb": samples[-1]["VmRSS"] / 1024, "samples": len(samples)}
    return {"version": ready.get("version"), "ready_s": round(ready_s, 1), "rows": rows, "warmup": warm,
            "lifecycle_end_fields": sorted(listener.end_keys), "rss_mb": {k: round(v, 1) for k, v in rss.items()}}


def log(message: str) -> None:
    print(message, flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--version", default="2026.5.3")
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--gap", type=float, default=1.0, help="seconds after each reply before the next call")
    p.add_argument("--latency-ms", type=float, default=200.0, help="latency of ocprobe's provider (the LLM)")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--dump", type=int, default=0, help="print the listener's first N frames (ticks left out)")
    args = p.parse_args()
    set_workdir(Path(tempfile.mkdtemp(prefix="ocprobe-real-")))
    info = machine()
    try:
        got = probe(args)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        shutil.rmtree(workdir(), ignore_errors=True)
    oc, raw, rss = summarize(got["rows"]["ocprobe"]), summarize(got["rows"]["raw"]), got["rss_mb"]
    if "outside_ms" not in oc or "outside_ms" not in raw:
        raise BenchError(f"no call timed by both client and gateway: ocprobe {oc}; raw {raw}")
    head = {"ocprobe_overhead_ms": oc["outside_ms"]["median"], "raw_overhead_ms": raw["outside_ms"]["median"]}
    head["difference_ms"] = round(head["ocprobe_overhead_ms"] - head["raw_overhead_ms"], 2)
    head["latency_ratio_ocprobe_raw"] = round(oc["latency_ms"]["median"] / raw["latency_ms"]["median"], 4)
    columns = {"latency_ms": "latency", "gateway_run_ms": "gateway run", "outside_ms": "outside run",
               "pre_run_ms": "send->start", "post_run_ms": "end->final"}
    log(f"\n{'ms, median/p95':<15}{'calls':>6}{'real':>5}{'timed':>6}" + "".join(f"{c:>15}" for c in columns.values()))
    for name, s in (("ocprobe", oc), ("raw loop", raw)):
        cols = [f"{s[k]['median']:.1f}/{s[k]['p95']:.1f}" if k in s else "-" for k in columns]
        log(f"{name:<15}{s['calls']:>6}{s['real']:>5}{s['timed']:>6}" + "".join(f"{c:>15}" for c in cols))
    log(f"overhead over the gateway's own timing (median of latency - run ms): ocprobe {head['ocprobe_overhead_ms']:.1f} ms,"
        f" raw {head['raw_overhead_ms']:.1f} ms, difference {head['difference_ms']:+.1f} ms; median latency ocprobe/raw "
        f"{head['latency_ratio_ocprobe_raw']:.3f}x")
    if "ack_ms" in raw:
        log(f"raw loop: chat.send answered after {raw['ack_ms']['median']:.1f} ms (median), p95 {raw['ack_ms']['p95']:.1f} ms")
    log(f"gateway RSS: idle {rss['idle_mb']:.0f} MB, peak sampled {rss['peak_sampled_mb']:.0f} MB, VmHWM "
        f"{rss['vmhwm_at_ready_mb']:.0f} MB at ready -> {rss['vmhwm_at_end_mb']:.0f} MB at end, end {rss['end_mb']:.0f} MB "
        f"({rss['samples']} samples, 100 ms)")
    if args.json:
        info["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        args.json.write_text(json.dumps({"settings": settings, "machine": info, "headline": head, "ocprobe": oc,
                                         "raw": raw, **got}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)

"""The baseline: a minimal client of the OpenClaw WebSocket protocol v3 on the same ``websockets`` library
as ocprobe, doing the same exchange per call (``chat.send`` request, its response, the ``chat`` final for
the run), and nothing else: no classification, no records, no output until the end.

Run as its own process (as ocprobe is), it prints one JSON object:

    python bench/rawws.py seq    --url WS --calls N --session-key KEY
    python bench/rawws.py closed --url WS --concurrency C --sessions K --duration S --max-calls N --prefix P
    python bench/rawws.py open   --url WS --rate R --duration S --cap C --sessions K --prefix P

The token comes from ``$OPENCLAW_GATEWAY_TOKEN``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import secrets
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

MESSAGE = "Reply with exactly this token and nothing else: {nonce}"
TERMINAL = ("final", "error", "aborted")


async def open_ws(url: str, token: str) -> ClientConnection:
    ws = await connect(url, proxy=None, max_size=None, compression=None, open_timeout=10)
    challenge = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert challenge.get("event") == "connect.challenge", challenge
    await ws.send(json.dumps({"type": "req", "id": "connect", "method": "connect", "params": {
        "minProtocol": 3, "maxProtocol": 4,  # what ocprobe offers: the reference speaks 4 by default
        "client": {"id": "gateway-client", "version": "bench", "platform": sys.platform, "mode": "backend"},
        "role": "operator", "scopes": ["operator.read", "operator.write"], "auth": {"token": token}}}))
    res = json.loads(await asyncio.wait_for(ws.recv(), 10))
    if not res.get("ok"):
        raise SystemExit(f"connect refused: {res.get('error', {}).get('code')}")
    return ws


def _text(payload: dict[str, Any]) -> str:
    message = payload.get("message") or {}
    return "".join(p.get("text", "") for p in message.get("content") or [] if isinstance(p, dict))


async def sequential(ws: ClientConnection, calls: int, key: str, tag: str) -> dict[str, Any]:
    """One call at a time: send, read frames until the response and the final of this run."""
    latencies: list[float] = []
    run_ids: list[str] = []
    ok = 0
    first = time.perf_counter()
    for i in range(1, calls + 1):
        run_id, nonce = f"raw-{tag}-{i}", f"ok-{i}-{tag}"
        req_id = f"chat.send-{i}"
        t0 = time.perf_counter()
        await ws.send(json.dumps({"type": "req", "id": req_id, "method": "chat.send", "params": {
            "sessionKey": key, "message": MESSAGE.format(nonce=nonce), "idempotencyKey": run_id}}))
        acked = final = False
        text = ""
        while not (acked and final):
            frame = json.loads(await ws.recv())
            if frame.get("type") == "res" and frame.get("id") == req_id:
                acked = True
                if not frame.get("ok"):
                    break
            elif frame.get("type") == "event" and frame.get("event") == "chat":
                payload = frame.get("payload") or {}
                if payload.get("runId") == run_id and payload.get("state") in TERMINAL:
                    final, text = True, _text(payload)
        latencies.append((time.perf_counter() - t0) * 1000.0)
        run_ids.append(run_id)
        ok += nonce in text
    wall = time.perf_counter() - first
    return {"calls": calls, "ok": ok, "wall_s": wall, "latencies_ms": latencies, "run_ids": run_ids}


class Mux:
    """One connection shared by many calls in flight: a reader hands each frame to the call it belongs to."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.ids = itertools.count(1)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "res":
                key = f"res:{frame.get('id')}"
            elif kind == "event" and frame.get("event") == "chat":
                payload = frame.get("payload") or {}
                if payload.get("state") not in TERMINAL:
                    continue
                key, frame = f"run:{payload.get('runId')}", payload
            else:
                continue
            future = self.waiting.pop(key, None)
            if future is not None and not future.done():
                future.set_result(frame)

    async def call(self, key: str, nonce: str, run_id: str, timeout: float = 30.0) -> bool:
        loop = asyncio.get_running_loop()
        req_id = f"chat.send-{next(self.ids)}"
        res, fin = loop.create_future(), loop.create_future()
        self.waiting[f"res:{req_id}"], self.waiting[f"run:{run_id}"] = res, fin
        await self.ws.send(json.dumps({"type": "req", "id": req_id, "method": "chat.send", "params": {
            "sessionKey": key, "message": MESSAGE.format(nonce=nonce), "idempotencyKey": run_id}}))
        try:
            ack = await asyncio.wait_for(res, timeout)
            if not ack.get("ok"):
                return False
            payload = await asyncio.wait_for(fin, timeout)
        except asyncio.TimeoutError:
            return False
        finally:
            self.waiting.pop(f"res:{req_id}", None)
            self.waiting.pop(f"run:{run_id}", None)
        return payload.get("state") == "final" and nonce in _text(payload)

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self.reader, return_exceptions=True)


async def closed_loop(mux: Mux, concurrency: int, sessions: int, duration: float, max_calls: int,
                      prefix: str, tag: str) -> dict[str, Any]:
    """``concurrency`` workers as ocprobe's closed loop: worker w cycles through the sessions s with
    s % c == w % c, and no call starts after ``duration``."""
    keys = [f"{prefix}-s{k}" for k in range(1, sessions + 1)]
    m = min(len(keys), concurrency)
    counter = itertools.count(1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration
    starts: list[float] = []
    ends: list[float] = []
    ok = 0

    async def worker(w: int) -> None:
        nonlocal ok
        mine = [key for s, key in enumerate(keys) if s % m == w % m]
        for turn in itertools.count():
            if loop.time() >= deadline:
                return
            i = next(counter)
            if i > max_calls:
                return
            starts.append(time.perf_counter())
            real = await mux.call(mine[turn % len(mine)], f"ok-{i}-{tag}", f"raw-{tag}-{i}")
            ok += real  # not ``ok += await ...``: that reads ok before the await and loses updates
            ends.append(time.perf_counter())

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    wall = max(ends) - min(starts)
    return {"calls": len(ends), "ok": ok, "wall_s": wall, "calls_per_s": len(ends) / wall}


async def open_loop(mux: Mux, rate: float, duration: float, cap: int, sessions: int, prefix: str,
                    tag: str) -> dict[str, Any]:
    """Arrivals every 1/rate s for ``duration`` s, at most ``cap`` in flight; latency per call."""
    keys = [f"{prefix}-s{k}" for k in range(1, sessions + 1)]
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(cap)
    latencies: list[float] = []
    late: list[float] = []
    ends: list[float] = []
    oks = 0
    tasks = []

    async def one(i: int, due: float) -> None:
        nonlocal oks
        try:
            late.append(max(0.0, loop.time() - due) * 1000.0)
            t0 = time.perf_counter()
            real = await mux.call(keys[(i - 1) % len(keys)], f"ok-{i}-{tag}", f"raw-{tag}-{i}")
            oks += real
            latencies.append((time.perf_counter() - t0) * 1000.0)
            ends.append(time.perf_counter())
        finally:
            slots.release()

    start, first = loop.time(), time.perf_counter()
    for i in itertools.count(1):
        due = start + (i - 1) / rate
        if due - start >= duration:
            break
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        await slots.acquire()
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    wall = (max(ends) - first) if ends else 0.0
    return {"offered_per_s": rate, "calls": len(latencies), "ok": oks, "wall_s": wall,
            "achieved_per_s": len(latencies) / wall if wall else 0.0, "latencies_ms": latencies,
            "max_start_delay_ms": max(late) if late else 0.0}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    token = os.environ.get("OPENCLAW_GATEWAY_TOKEN", "")
    if not token:
        raise SystemExit("set $OPENCLAW_GATEWAY_TOKEN")
    tag = secrets.token_hex(3)
    ws = await open_ws(args.url, token)
    if args.mode == "seq":
        try:
            return await sequential(ws, args.calls, args.session_key, tag)
        finally:
            await ws.close()
    mux = Mux(ws)
    try:
        if args.mode == "closed":
            return await closed_loop(mux, args.concurrency, args.sessions, args.duration, args.max_calls, args.prefix, tag)
        return await open_loop(mux, args.rate, args.duration, args.cap, args.sessions, args.prefix, tag)
    finally:
        await mux.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("seq", "closed", "open"))
    p.add_argument("--url", required=True)
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--session-key", default="bench-raw")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--sessions", type=int, default=64)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--max-calls", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--cap", type=int, default=500)
    p.add_argument("--prefix", default="bench-raw")
    args = p.parse_args(argv)
    if not args.url.startswith(("ws://127.0.0.1:", "ws://localhost:", "ws://[::1]:")):
        p.error("the baseline only talks to a loopback gateway")
    return args


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse()))))

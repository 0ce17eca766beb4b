"""Locust FastHttpUser against the relay (``POST /chat.send``), closed loop, run as a library in its own
process (Locust monkey-patches the standard library with gevent, so it cannot share a process with
asyncio). Each user does what ocprobe's relay transport does per call: POST the JSON body, parse the
answer, check the reply carries the call's nonce; users cycle through their sessions as ocprobe's
workers do, and no call starts after ``--duration``.

    python bench/locust_driver.py --host http://127.0.0.1:PORT --concurrency 8 --sessions 64 --duration 5

prints one JSON object: calls, ok, wall_s (first call's start to last call's end), calls_per_s.
The token comes from ``$OPENCLAW_GATEWAY_TOKEN``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import time

import gevent
from locust import FastHttpUser, constant, task
from locust.env import Environment
from locust.exception import StopUser

MESSAGE = "Reply with exactly this token and nothing else: {nonce}"
P = argparse.ArgumentParser()
P.add_argument("--host", required=True)
P.add_argument("--concurrency", type=int, default=8)
P.add_argument("--sessions", type=int, default=64)
P.add_argument("--duration", type=float, default=5.0)
P.add_argument("--max-calls", type=int, default=100_000)
P.add_argument("--prefix", default="bench-locust")
ARGS = P.parse_args()
if not ARGS.host.startswith(("http://127.0.0.1:", "http://localhost:")):
    P.error("the driver only talks to a loopback gateway")

TAG = secrets.token_hex(3)
KEYS = [f"{ARGS.prefix}-s{k}" for k in range(1, ARGS.sessions + 1)]
M = min(len(KEYS), ARGS.concurrency)
HEADERS = {"Authorization": f"Bearer {os.environ['OPENCLAW_GATEWAY_TOKEN']}"}
USERS = itertools.count(0)
CALLS = itertools.count(1)
STARTS: list[float] = []
ENDS: list[float] = []
STATE = {"ok": 0, "deadline": 0.0, "stopped": 0}


class RelayUser(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        w = next(USERS)
        self.sessions = [key for s, key in enumerate(KEYS) if s % M == w % M]
        self.turn = 0

    @task
    def send(self) -> None:
        if time.monotonic() >= STATE["deadline"]:
            STATE["stopped"] += 1
            raise StopUser()
        i = next(CALLS)
        if i > ARGS.max_calls:
            STATE["stopped"] += 1
            raise StopUser()
        nonce = f"ok-{i}-{TAG}"
        key = self.sessions[self.turn % len(self.sessions)]
        self.turn += 1
        STARTS.append(time.perf_counter())
        with self.client.post("/chat.send", json={"sessionKey": key, "message": MESSAGE.format(nonce=nonce)},
                              headers=HEADERS, catch_response=True) as resp:
            try:
                body = resp.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and body.get("ok") and nonce in str(body.get("reply", "")):
                STATE["ok"] += 1
                resp.success()
            else:
                resp.failure("no real reply")
        ENDS.append(time.perf_counter())


def main() -> None:
    env = Environment(user_classes=[RelayUser], host=ARGS.host)
    runner = env.create_local_runner()
    STATE["deadline"] = time.monotonic() + ARGS.duration
    runner.start(ARGS.concurrency, spawn_rate=ARGS.concurrency * 1000)
    hard_stop = time.monotonic() + ARGS.duration + 60
    while STATE["stopped"] < ARGS.concurrency and time.monotonic() < hard_stop:
        gevent.sleep(0.02)
    runner.quit()
    wall = max(ENDS) - min(STARTS) if ENDS else 0.0
    print(json.dumps({"calls": len(ENDS), "ok": STATE["ok"], "wall_s": wall,
                      "calls_per_s": len(ENDS) / wall if wall else 0.0,
                      "failures": env.stats.total.num_failures}))


if __name__ == "__main__":
    main()

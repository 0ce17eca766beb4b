"""The reference gateway, timing each WebSocket ``chat.send`` itself: from the moment its request frame is
handed to the gateway to the moment the run's ``final`` has been written to the socket. A client's
measured latency minus this server-side time is what the client adds (its send path, its receive path,
its event loop): the timing error that is the client's own, apart from the gateway's jitter.

    python bench/timed_gateway.py --latency-ms 200 --token-file F --timing-file T

prints the same ready line as ``ocprobe gateway serve --json``, appends ``{"run_id", "server_ms"}`` per
final to the timing file, and runs until SIGTERM. Loopback only. It subclasses ocprobe's
``ReferenceGateway`` and hooks ``_on_request`` (a private method): should that change, this fails loudly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from ocprobe.reference.gateway import GatewayConfig, GatewayLog, ReferenceGateway
from ocprobe.reference.serve import serve


class TimedGateway(ReferenceGateway):
    def __init__(self, config: GatewayConfig, log: GatewayLog, timing_file: Path) -> None:
        super().__init__(config, log=log)
        self._received: dict[str, float] = {}
        self._timings = timing_file.open("a", encoding="utf-8")

    async def _on_request(self, client: Any, frame: dict[str, Any]) -> None:
        if frame.get("method") == "chat.send":
            params = frame.get("params") or {}
            self._received[str(params.get("idempotencyKey"))] = time.perf_counter()
        await super()._on_request(client, frame)

    async def broadcast(self, event: str, payload: dict[str, Any]) -> None:
        await super().broadcast(event, payload)
        if event == "chat" and payload.get("state") in ("final", "error", "aborted"):
            sent = time.perf_counter()
            received = self._received.pop(str(payload.get("runId")), None)
            if received is not None:
                self._timings.write(json.dumps({"run_id": payload.get("runId"), "server_ms": (sent - received) * 1000.0}) + "\n")
                self._timings.flush()


def main(args: argparse.Namespace) -> None:
    if not hasattr(ReferenceGateway, "_on_request"):
        raise SystemExit("ReferenceGateway has no _on_request any more: update bench/timed_gateway.py")
    # provider_url "": serve() starts the reference provider and fills it in
    config = GatewayConfig(token=args.token_file.read_text().strip(), provider_url="",
                           provider_api_key=os.urandom(16).hex(), log_file=args.log_file, port=0)
    asyncio.run(serve(config, latency_ms=args.latency_ms,
                      on_ready=lambda info: print(json.dumps(info.record()), flush=True),
                      make_gateway=lambda config, log: TimedGateway(config, log, args.timing_file)))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--token-file", type=Path, required=True)
    p.add_argument("--timing-file", type=Path, required=True)
    p.add_argument("--log-file", type=Path)
    main(p.parse_args())

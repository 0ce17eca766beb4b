"""Fault profiles for the reference gateway: hostile behaviour on chosen ``chat.send`` calls, so that
what a probe does with each one is tested against a real server. The catalogue and the parsing of the
specs are in ``fault_specs.py``; this module injects them.

A fault is written ``NAME:every=N`` (the Nth, 2Nth, ... ``chat.send`` the gateway receives) or
``NAME:rate=P[,seed=S]`` (each ``chat.send`` with probability P, drawn from the fault's own seeded
generator), plus options of its own. Calls are counted over the gateway's life, across connections and
sessions, from 1, and every fault draws for every call: when several faults pick one call the first
given wins, so a test knows exactly which calls each fault hits. Each hit writes a line starting
``injected fault NAME`` to the gateway's error log (stderr and its JSON log file).

Faults apply to ``chat.send`` over the WebSocket; the HTTP relay and OpenAI endpoints are left alone.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ocprobe.reference.fault_specs import FAULTS, FaultSpec

if TYPE_CHECKING:  # the gateway imports this module
    from aiohttp import web

    from ocprobe.reference.gateway import Client, GatewayLog, Run

LOG_PREFIX = "injected fault"
WRONG_REPLY = "I cannot help with that."
ERROR_KIND = "fault"
OUT_OF_ORDER_WAIT = 30.0  # seconds an out-of-order answer waits for its run

# Faults that close the client's socket when the run's final is due. The run itself ends as usual, so
# the session is idle again for the next call: only the hit call sees the fault.
_CLOSING = ("drop", "auth-flap", "stall-handshake")
# Faults acting on the whole exchange of one chat.send; the others act on the run's events.
_EXCHANGE = ("error-frame", "garbage", "out-of-order")


def _garbage_frames(run_id: str) -> list[str | bytes]:
    """What a broken gateway might put on the wire; none of it ends the run it precedes."""
    return [
        "this is not JSON {",
        b"\x00\xffbinary frame",
        "[1, 2, 3]",
        '"chat"',
        "[" * 5000 + "]" * 5000,  # nesting deep enough to trip a recursive parser
        '{"type": "event", "event": "chat", "payload": "not an object"}',
        '{"type": "event", "event": "chat", "payload": {"runId": ["not", "a", "string"], "state": "final"}}',
        '{"type": "res", "id": {"not": "a string"}, "ok": true, "payload": []}',
        '{"type": "event", "event": "chat", "payload": {"runId": "%s", "state": 7, "message": 42}}' % run_id,
        '{"type": "event", "event": 12, "seq": "x"}',
    ]


@dataclass
class FaultInjector:
    specs: Sequence[FaultSpec]
    log: GatewayLog
    calls: int = 0  # chat.send requests seen
    refuse_connects: int = 0  # the next connects auth-flap refuses
    stall_connects: list[float] = field(default_factory=list)  # hold (s) of each next connect stall-handshake stalls
    _rngs: dict[str, random.Random] = field(default_factory=dict)
    _marked: dict[str, tuple[FaultSpec, Client]] = field(default_factory=dict)  # runId -> fault and its client

    def __post_init__(self) -> None:
        self._rngs = {spec.name: random.Random(spec.seed) for spec in self.specs if spec.rate is not None}

    def max_payload(self, default: int) -> int:
        """The maxPayload hello advertises: oversize lowers it so a frame above it stays small."""
        return min([default, *(int(s.option("bytes")) for s in self.specs if s.name == "oversize")])

    def pick(self) -> FaultSpec | None:
        """Count one chat.send; the fault that hits it, if any (every fault draws, the first hit wins)."""
        self.calls += 1
        hits = [spec for spec in self.specs if self._hits(spec)]
        return hits[0] if hits else None

    def _hits(self, spec: FaultSpec) -> bool:
        if spec.every is not None:
            return self.calls % spec.every == 0
        assert spec.rate is not None
        return self._rngs[spec.name].random() < spec.rate

    def _note(self, spec: FaultSpec, what: str) -> None:
        self.log.error(f"{LOG_PREFIX} {spec.name}: {what}")

    # -- the connection ---------------------------------------------------------------------
    async def stall_handshake(self, ws: web.WebSocketResponse) -> bool:
        """True when this connect gets no challenge: the socket is held silent, then closed."""
        if not self.stall_connects:
            return False
        hold = self.stall_connects.pop(0)
        self.log.error(f"{LOG_PREFIX} stall-handshake: connect gets no challenge, closed after {hold * 1000:g} ms")
        try:
            await asyncio.wait_for(ws.receive(), hold)  # ends early when the client gives up
        except asyncio.TimeoutError:
            pass
        await ws.close()
        return True

    def refuse_connect(self) -> bool:
        if self.refuse_connects <= 0:
            return False
        self.refuse_connects -= 1
        self.log.error(f"{LOG_PREFIX} auth-flap: connect refused (AUTH_TOKEN_MISMATCH) although the token is right")
        return True

    # -- one chat.send ----------------------------------------------------------------------
    async def chat_send(
        self, spec: FaultSpec, client: Client, req_id: Any, params: dict[str, Any],
        respond: Callable[[], Awaitable[dict[str, Any]]], runs: dict[str, Run],
    ) -> None:
        """Answer a chat.send the fault hit. ``respond`` starts the run as usual and returns the response
        frame without sending it."""
        run_id = params.get("idempotencyKey") if isinstance(params.get("idempotencyKey"), str) else ""
        self._note(spec, f"chat.send #{self.calls} (run {run_id or '?'}, session {params.get('sessionKey')}): "
                         f"{FAULTS[spec.name][0]}")
        if spec.name == "error-frame":
            await client.send({"type": "res", "id": req_id, "ok": False, "error": {
                "code": "UNAVAILABLE", "message": f"{LOG_PREFIX} error-frame: chat.send refused", "retryable": False}})
            return
        if spec.name == "garbage":
            for frame in _garbage_frames(run_id):
                await client.send_raw(frame)
        if spec.name == "out-of-order":
            await client.send({"type": "event", "event": "chat", "seq": next(client.seq), "payload": {
                "runId": f"stray-{uuid.uuid4()}", "sessionKey": params.get("sessionKey"), "seq": 0, "state": "final",
                "message": {"role": "assistant", "content": [{"type": "text", "text": "a reply for a run nobody started"}],
                            "timestamp": int(time.time() * 1000)}}})
        if spec.name not in _EXCHANGE and run_id:
            self._marked[run_id] = (spec, client)
        response = await respond()
        run = runs.get(run_id)
        if spec.name == "out-of-order" and run is not None:
            try:  # the run's events all go out before its chat.send answer
                await asyncio.wait_for(run.done.wait(), OUT_OF_ORDER_WAIT)
            except asyncio.TimeoutError:
                pass  # a run that never ends must not hold the connection's reading for ever
        await client.send(response)

    async def before_provider(self, run_id: str) -> None:
        """slow-provider: the LLM call of a hit run starts late."""
        spec, _ = self._marked.get(run_id, (None, None))
        if spec is not None and spec.name == "slow-provider":
            del self._marked[run_id]
            await asyncio.sleep(spec.option("ms") / 1000.0)

    async def chat_events(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        """The chat events to broadcast in place of ``payload``."""
        spec, client = self._marked.get(payload["runId"], (None, None))
        if spec is None or client is None:
            return [payload]
        terminal = payload["state"] in ("final", "error", "aborted")
        if terminal:
            del self._marked[payload["runId"]]
        if spec.name == "wrong-reply" and "message" in payload:
            message = {**payload["message"], "content": [{"type": "text", "text": WRONG_REPLY}]}
            return [{**payload, "message": message}]
        if not terminal:
            return [payload]
        if spec.name == "hang":
            return []
        if spec.name == "duplicate-final":
            return [payload, payload]
        if spec.name == "error-state":
            changed = {k: v for k, v in payload.items() if k != "message"}
            return [{**changed, "state": "error", "errorMessage": f"{LOG_PREFIX} error-state", "errorKind": ERROR_KIND}]
        if spec.name == "oversize":
            text = "x" * int(spec.option("bytes"))  # the frame around it makes it larger than maxPayload
            await client.send({"type": "event", "event": "chat", "seq": next(client.seq), "payload": {
                **payload, "state": "delta", "message": {"role": "assistant", "content": [{"type": "text", "text": text}]}}})
        if spec.name == "auth-flap":
            self.refuse_connects += int(spec.option("connects"))
        if spec.name == "stall-handshake":
            self.stall_connects += [spec.option("ms") / 1000.0] * int(spec.option("connects"))
        if spec.name in _CLOSING:
            client.abort()  # the broadcast that follows no longer reaches it
        return [payload]


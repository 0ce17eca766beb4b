"""Fault profiles for the reference gateway: hostile behaviour on chosen ``chat.send`` calls, so that
what a probe does with each one is tested against a real server.

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
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the gateway imports this module
    from aiohttp import web

    from ocprobe.reference.gateway import Client, GatewayLog, Run

LOG_PREFIX = "injected fault"
WRONG_REPLY = "I cannot help with that."
ERROR_KIND = "fault"
OUT_OF_ORDER_WAIT = 30.0  # seconds an out-of-order answer waits for its run

# name -> (what it does, options of its own with their defaults)
FAULTS: dict[str, tuple[str, dict[str, float]]] = {
    "hang": ("the run's final is never sent", {}),
    "drop": ("the socket is closed when the final is due", {}),
    "error-state": ("the run ends with state error and an errorKind", {}),
    "error-frame": ("chat.send is answered ok:false and no run starts", {}),
    "garbage": ("non-JSON, binary and wrongly shaped frames come before the answer", {}),
    "wrong-reply": ("the reply text lacks the nonce", {}),
    "slow-provider": ("the LLM call starts ms later", {"ms": 2000.0}),
    "duplicate-final": ("the final is sent twice", {}),
    "out-of-order": ("a final of a run nobody started, then the whole run before the chat.send answer", {}),
    "oversize": ("hello advertises maxPayload=bytes; a larger frame comes before the final", {"bytes": 65536.0}),
    "auth-flap": ("the socket is closed when the final is due and the next `connects` connects are refused",
                  {"connects": 1.0}),
    "stall-handshake": ("the socket is closed when the final is due and the next `connects` connects get no "
                        "challenge for ms", {"connects": 1.0, "ms": 1000.0}),
}
SELECTORS = ("every", "rate", "seed")
# (low, high, integer) per option
_RANGES: dict[str, tuple[float, float, bool]] = {
    "every": (1, 1_000_000, True),
    "rate": (0, 1, False),  # low end excluded below
    "seed": (0, 2**32 - 1, True),
    "ms": (0, 600_000, False),
    "bytes": (1024, 16 * 1024 * 1024, True),
    "connects": (1, 1000, True),
}
# Faults that close the client's socket when the run's final is due. The run itself ends as usual, so
# the session is idle again for the next call: only the hit call sees the fault.
_CLOSING = ("drop", "auth-flap", "stall-handshake")
# Faults acting on the whole exchange of one chat.send; the others act on the run's events.
_EXCHANGE = ("error-frame", "garbage", "out-of-order")


class FaultSpecError(ValueError):
    """A ``--fault`` that does not parse; the message is one line naming what is wrong."""


@dataclass(frozen=True)
class FaultSpec:
    name: str
    every: int | None = None
    rate: float | None = None
    seed: int = 0
    options: tuple[tuple[str, float], ...] = ()  # the fault's own options, defaults filled in

    def option(self, key: str) -> float:
        return dict(self.options)[key]

    def text(self) -> str:
        """The spec in the form ``parse_fault`` reads, defaults included (for a child's argv and logs)."""
        parts = [f"every={self.every}"] if self.every is not None else [f"rate={self.rate:g}", f"seed={self.seed}"]
        parts += [f"{key}={value:g}" for key, value in self.options]
        return f"{self.name}:{','.join(parts)}"


def parse_fault(text: str) -> FaultSpec:
    """``NAME:every=N`` or ``NAME:rate=P[,seed=S]``, then the fault's own ``KEY=VALUE`` options."""
    name, _, rest = text.strip().partition(":")
    where = f"bad --fault {text!r}"
    if name not in FAULTS:
        raise FaultSpecError(f"{where}: unknown fault {name!r} (choose from {', '.join(FAULTS)})")
    own = FAULTS[name][1]
    values: dict[str, float] = {}
    for item in rest.split(",") if rest.strip() else []:
        key, eq, raw = item.strip().partition("=")
        if not eq or not key:
            raise FaultSpecError(f"{where}: expected KEY=VALUE, got {item.strip()!r}")
        if key not in SELECTORS and key not in own:
            allowed = ", ".join([*SELECTORS, *own])
            raise FaultSpecError(f"{where}: unknown option {key!r} ({name} takes {allowed})")
        if key in values:
            raise FaultSpecError(f"{where}: {key} given twice")
        values[key] = _number(where, key, raw.strip())
    if ("every" in values) == ("rate" in values):
        raise FaultSpecError(f"{where}: give exactly one of every=N or rate=P")
    if "seed" in values and "rate" not in values:
        raise FaultSpecError(f"{where}: seed goes with rate=P only")
    return FaultSpec(
        name=name,
        every=int(values["every"]) if "every" in values else None,
        rate=values.get("rate"),
        seed=int(values.get("seed", 0)),
        options=tuple((key, values.get(key, default)) for key, default in own.items()),
    )


def parse_faults(texts: Iterable[str]) -> tuple[FaultSpec, ...]:
    specs = tuple(parse_fault(text) for text in texts)
    names = [spec.name for spec in specs]
    for name in names:
        if names.count(name) > 1:
            raise FaultSpecError(f"bad --fault: {name} given twice (one --fault per fault name)")
    return specs


def _number(where: str, key: str, raw: str) -> float:
    low, high, integer = _RANGES[key]
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise FaultSpecError(f"{where}: {key} must be {kind}, got {raw!r}") from None
    if not math.isfinite(value) or not low <= value <= high or (key == "rate" and value == 0):
        bounds = "0 < rate <= 1" if key == "rate" else f"{key} between {low:g} and {high:g}"
        raise FaultSpecError(f"{where}: {key} out of range ({bounds}), got {raw}")
    return value


def describe_faults() -> str:
    """One line per fault for ``--help``."""
    return "; ".join(
        f"{name}{''.join(f',{k}={v:g}' for k, v in own.items())}: {what}" for name, (what, own) in FAULTS.items()
    )


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


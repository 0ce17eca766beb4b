"""The OpenClaw gateway WebSocket protocol, as a client: handshake, ``chat.send`` and ``chat`` events.

It offers protocols 3 to 4: releases up to 2026.5.7 speak 3 and accept any range holding it, those from
2026.5.12 speak 4 and refuse a range without it (``PROTOCOL_MISMATCH``, close 1002). What v4 adds that a
probe meets is tolerated: non-terminal ``status`` events, an incremental ``deltaText`` beside the whole
text, and more answers from the idempotency cache.

A gateway may misbehave in any way (see ``ocprobe.reference.faults``): frames that are not JSON, or of
the wrong shape, are skipped; a frame above the negotiated ``maxPayload`` closes the connection; a dead
socket fails the calls in flight and is re-established, with a bounded backoff, by the next call.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import State

from ocprobe import __version__, untrusted
from ocprobe.errors import AuthFailed, OcprobeError, ProtocolError, ProtocolMismatch, TargetUnreachable
from ocprobe.models import ChatEvent, ChatOutcome, kept_text
from ocprobe.transports.base import Transport

#: The protocol versions ocprobe speaks, offered as one range in ``connect``.
PROTOCOL_MIN, PROTOCOL_MAX = 3, 4
TERMINAL_STATES = ("final", "error", "aborted")
# Only this client id in backend mode keeps its scopes without a device key (see the shared notes).
CLIENT_ID = "gateway-client"
CLIENT_MODE = "backend"
AUTH_ERROR_CODES = {
    "AUTH_TOKEN_MISMATCH", "AUTH_TOKEN_MISSING", "DEVICE_IDENTITY_REQUIRED", "NOT_PAIRED", "UNAUTHORIZED",
    # from 2026.5.12 (protocol 4)
    "AUTH_REQUIRED", "AUTH_UNAUTHORIZED", "AUTH_TOKEN_NOT_CONFIGURED", "AUTH_RATE_LIMITED", "PAIRING_REQUIRED",
}
PROTOCOL_MISMATCH = "PROTOCOL_MISMATCH"
# ``chat.send`` answers: a run under way (wait for its events), or the idempotency cache's word on a run that
# ended before (v3: ok; v4 adds completed, error, timeout, aborted): no new event will come for it.
RUNNING_ACKS = ("started", "in_flight", "accepted")
CACHED_ACKS = ("ok", "completed", "error", "timeout", "aborted")
# Close codes during the handshake: 1008 policy (auth), 1002 protocol error, 1013 try again later (start-up).
CLOSE_POLICY, CLOSE_PROTOCOL, CLOSE_TRY_LATER = 1008, 1002, 1013
TRY_LATER_DELAY = 0.5
# Re-establishing a dead connection: the first retry at once, then waits doubling from 0.1 s up to 2 s,
# for at most this long before the run ends.
RECONNECT_BUDGET = 5.0
RECONNECT_FIRST_DELAY, RECONNECT_MAX_DELAY = 0.1, 2.0
# The largest frame read: OpenClaw's own maxPayload is 25 MB; a larger frame closes the connection (1009)
# before it is buffered, whatever the hello advertises (or fails to).
MAX_FRAME_BYTES = 32 * 1024 * 1024
# A gateway that does not answer a close frame does not hold up the next connection for long.
CLOSE_TIMEOUT = 1.0
# Run ids whose terminal event was seen, kept to drop a duplicate final instead of taking it for a late one.
FINISHED_KEPT = 4096


class ConnectionLost(Exception):
    pass


def decode_frame(raw: str | bytes) -> dict[str, Any] | None:
    """The protocol frame in one WebSocket message, or None for anything that is not one: a binary
    frame, text that is not JSON (or nested too deep to parse), JSON that is not an object."""
    if not isinstance(raw, str):
        return None
    try:
        frame = untrusted.loads(raw)
    except (ValueError, RecursionError):
        return None
    return frame if isinstance(frame, dict) else None


@dataclass(frozen=True)
class ChatUpdate:
    """The fields of a ``chat`` event a client uses, each of its proper type or empty."""

    run_id: str
    session_key: str
    state: str
    text: str  # the whole text so far, from ``message``
    delta_text: str  # v4: what this event adds (``deltaText``), when it carries no message
    error_message: str | None
    error_kind: str | None


def parse_chat_event(frame: dict[str, Any]) -> ChatUpdate | None:
    """A ``chat`` event's update, or None when the frame is no chat event with a runId."""
    if frame.get("type") != "event" or frame.get("event") != "chat":
        return None
    payload = frame.get("payload")
    if not isinstance(payload, dict) or not isinstance(payload.get("runId"), str) or not payload["runId"]:
        return None
    return ChatUpdate(
        run_id=payload["runId"],
        session_key=_str(payload.get("sessionKey")) or "",
        # Interned: a call's record keeps its state, one of a few words decoded anew from every frame.
        state=sys.intern(_str(payload.get("state")) or ""),
        text=message_text(payload.get("message")),
        delta_text=_str(payload.get("deltaText")) or "",
        error_message=_str(payload.get("errorMessage")),
        error_kind=_str(payload.get("errorKind")),
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def negotiated_protocol(hello: dict[str, Any]) -> int | None:
    """The protocol a hello-ok names, when it is one ocprobe offered."""
    value = hello.get("protocol")
    ok = isinstance(value, int) and not isinstance(value, bool) and PROTOCOL_MIN <= value <= PROTOCOL_MAX
    return value if ok else None


def _server_protocols(details: dict[str, Any]) -> str:
    """What a PROTOCOL_MISMATCH refusal says the gateway speaks, from whichever keys it uses."""
    def num(key: str) -> int | None:
        value = details.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    low, high = num("minProtocol") or num("serverMinProtocol"), num("maxProtocol") or num("serverMaxProtocol")
    expected = num("expectedProtocol") or num("protocol") or num("serverProtocol")
    if low is not None and high is not None:
        return f"protocol {low}" if low == high else f"protocols {low}..{high}"
    if expected is not None:
        return f"protocol {expected}"
    return "a protocol it did not name"


def max_payload(hello: dict[str, Any]) -> int | None:
    """``policy.maxPayload`` of a hello-ok, when it is a positive integer."""
    value = _obj(hello.get("policy")).get("maxPayload")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def message_text(message: Any) -> str:
    """Text of a chat ``message``: ``content`` is a list of parts (or, leniently, a string)."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


@dataclass
class _Run:
    """A run this client started, followed until its terminal chat event."""

    done: asyncio.Future[None]
    state: str = ""
    text: str = ""
    ended_perf: float = 0.0
    ended_at: float = 0.0
    error_message: str | None = None
    error_kind: str | None = None
    lost: str | None = None  # why the connection died under the run


class OpenClawWsTransport(Transport):
    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        connect_timeout: float = 10.0,
        startup_retry_budget: float = 60.0,
        reconnect_budget: float = RECONNECT_BUDGET,
    ) -> None:
        self.url = url
        self._token = token
        self._connect_timeout = connect_timeout
        self._startup_retry_budget = startup_retry_budget
        self._reconnect_budget = reconnect_budget
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Lock | None = None  # made in the running loop, on first use
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._runs: dict[str, _Run] = {}
        # Looked up in a dict, evicted in the order of a deque: half the bytes of an OrderedDict, and less than
        # a set, whose table grows by more with the same keys.
        self._finished: dict[str, None] = {}
        self._finished_order: deque[str] = deque()
        self._foreign: list[ChatEvent] = []
        self._ids = itertools.count(1)
        self.hello: dict[str, Any] = {}
        self.protocol: int | None = None  # negotiated in the handshake
        self.reconnects = 0  # connections re-established after one died
        self._connected = False  # a handshake has succeeded once: later refusals may be passing

    # -- connection -------------------------------------------------------------------------
    async def open(self) -> None:
        deadline = time.monotonic() + self._startup_retry_budget
        while True:
            retry_after = await self._connect_once()
            if retry_after is None:
                return
            # The gateway is still starting (UNAVAILABLE startup-sidecars, or a 1013 close): retry as it
            # asks, bounded.
            if time.monotonic() + retry_after > deadline:
                raise TargetUnreachable(f"{self.url}: gateway still unavailable after {self._startup_retry_budget:.0f}s")
            await asyncio.sleep(retry_after)

    async def _connect_once(self) -> float | None:
        """Connect and handshake; returns a retry delay when the gateway asks for one."""
        try:
            ws = await connect(
                self.url,
                proxy=None,
                open_timeout=self._connect_timeout,
                max_size=MAX_FRAME_BYTES,
                compression=None,
                close_timeout=CLOSE_TIMEOUT,
                user_agent_header=f"ocprobe/{__version__}",
            )
        except (OSError, asyncio.TimeoutError, websockets.exceptions.InvalidHandshake) as exc:
            raise TargetUnreachable(f"cannot connect to {self.url}: {_reason(exc)}") from None
        try:
            challenge = await self._recv_json(ws, "connect.challenge")
            if challenge.get("type") != "event" or challenge.get("event") != "connect.challenge":
                raise ProtocolError(f"{self.url}: expected connect.challenge first, got {_brief(challenge)}")
            await ws.send(json.dumps(self._connect_frame()))
            res = await self._recv_json(ws, "connect response")
        except websockets.exceptions.ConnectionClosed as exc:
            await ws.close()
            rcvd = exc.rcvd
            if rcvd is not None and rcvd.code == CLOSE_TRY_LATER:
                return TRY_LATER_DELAY
            raise self._closed_during_handshake(exc) from None
        except BaseException:
            await ws.close()
            raise
        if res.get("type") != "res" or res.get("id") != "connect":
            await ws.close()
            raise ProtocolError(f"{self.url}: expected the connect response, got {_brief(res)}")
        if not res.get("ok"):
            await ws.close()
            return self._refused(_obj(res.get("error")))
        self.hello = _obj(res.get("payload"))
        self.server_version = _str(_obj(self.hello.get("server")).get("version"))
        self.protocol = negotiated_protocol(self.hello)
        self._ws = ws
        self._reader = asyncio.create_task(self._read_loop(ws))
        self._connected = True
        return None

    def _refused(self, error: dict[str, Any]) -> float:
        """The retry delay of a refusal that asks for one (start-up); raises for any other."""
        retry_after = error.get("retryAfterMs")
        if error.get("code") == "UNAVAILABLE" and isinstance(retry_after, (int, float)) and not isinstance(retry_after, bool):
            return min(max(0.05, retry_after / 1000.0), self._startup_retry_budget)
        details = _obj(error.get("details"))
        detail_code = _oneline(_str(details.get("code")) or _str(error.get("code")) or "", 60) or None
        message = _oneline(_str(error.get("message")) or "unknown error")
        if detail_code == PROTOCOL_MISMATCH or message.lower().startswith("protocol mismatch"):
            raise ProtocolMismatch(f"{self.url}: gateway refused the connection: protocol mismatch: it speaks "
                                   f"{_server_protocols(details)}, ocprobe offers {PROTOCOL_MIN}..{PROTOCOL_MAX} "
                                   f"({PROTOCOL_MISMATCH})")
        text = f"{self.url}: gateway refused the connection: {message} ({detail_code})"
        if detail_code in AUTH_ERROR_CODES or "unauthorized" in message.lower():
            raise AuthFailed(text)
        raise TargetUnreachable(text)

    def _connect_frame(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "minProtocol": PROTOCOL_MIN,
            "maxProtocol": PROTOCOL_MAX,
            "client": {"id": CLIENT_ID, "version": __version__, "platform": sys.platform, "mode": CLIENT_MODE},
            "role": "operator",
            "scopes": ["operator.read", "operator.write"],
        }
        if self._token:
            params["auth"] = {"token": self._token}
        return {"type": "req", "id": "connect", "method": "connect", "params": params}

    async def _recv_json(self, ws: ClientConnection, what: str) -> dict[str, Any]:
        try:
            raw = await asyncio.wait_for(ws.recv(), self._connect_timeout)
        except asyncio.TimeoutError:
            raise TargetUnreachable(f"{self.url}: no {what} within {self._connect_timeout:.0f}s") from None
        frame = decode_frame(raw)
        if frame is None:
            raise ProtocolError(f"{self.url}: {what} is not a JSON object")
        return frame

    def _closed_during_handshake(self, exc: websockets.exceptions.ConnectionClosed) -> Exception:
        rcvd = exc.rcvd
        if rcvd is not None and rcvd.code == CLOSE_POLICY:
            return AuthFailed(f"{self.url}: gateway closed the connection (policy violation: {_oneline(rcvd.reason) or 'unauthorized'})")
        if rcvd is not None and rcvd.code == CLOSE_PROTOCOL:
            return ProtocolMismatch(f"{self.url}: gateway closed the connection (protocol error: "
                                    f"{_oneline(rcvd.reason) or 'protocol mismatch'}); ocprobe offers protocols "
                                    f"{PROTOCOL_MIN}..{PROTOCOL_MAX}")
        return TargetUnreachable(f"{self.url}: connection closed during the handshake")

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None

    # -- frames -----------------------------------------------------------------------------
    async def _read_loop(self, ws: ClientConnection) -> None:
        reason = "connection closed by the gateway"
        limit = max_payload(self.hello)
        try:
            async for raw in ws:
                received_perf, received_at = time.perf_counter(), time.time()
                size = len(raw.encode()) if isinstance(raw, str) else len(raw)
                if limit is not None and size > limit:
                    # What a WebSocket peer does with a message above its limit (1009): the socket is
                    # no longer trusted; the next call reconnects.
                    reason = f"the gateway sent a frame of {size} bytes, above its maxPayload of {limit}"
                    self._fail_pending(ConnectionLost(reason))  # now, not after the close handshake
                    await ws.close(1009, "message too big")
                    break
                frame = decode_frame(raw)
                if frame is not None:  # anything else is not the protocol: skipped
                    self._dispatch(frame, received_perf, received_at)
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            self._fail_pending(ConnectionLost(reason))

    def _dispatch(self, frame: dict[str, Any], received_perf: float, received_at: float) -> None:
        if frame.get("type") == "res" and isinstance(frame.get("id"), str):
            future = self._pending.pop(frame["id"], None)
            if future is not None and not future.done():
                future.set_result(frame)
            return
        update = parse_chat_event(frame)
        if update is not None:
            self._on_chat(update, received_perf, received_at)

    def _on_chat(self, update: ChatUpdate, received_perf: float, received_at: float) -> None:
        terminal = update.state in TERMINAL_STATES
        run = self._runs.get(update.run_id)
        if run is None:
            if terminal and update.run_id not in self._finished:  # a repeated final is no late reply
                self._foreign.append(ChatEvent(run_id=update.run_id, session_key=update.session_key,
                                               state=update.state, text=kept_text(update.text), at=received_at))
            return
        if run.done.done():
            return  # a duplicate terminal event: the first one decided
        if update.text:
            run.text = update.text  # a delta carries the whole text so far
        elif update.delta_text and update.state == "delta":
            run.text += update.delta_text  # v4: an increment with no whole text beside it
        if terminal:
            run.state = update.state
            run.ended_perf, run.ended_at = received_perf, received_at
            run.error_message, run.error_kind = update.error_message, update.error_kind
            run.done.set_result(None)

    def _fail_pending(self, exc: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(exc)
        self._pending.clear()
        for run in self._runs.values():
            if not run.done.done():
                run.lost = str(exc)  # a result, not an exception: a run nobody awaits yet must not warn
                run.done.set_result(None)

    async def _request(self, method: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self._ws is None:
            raise ConnectionLost("not connected")
        req_id = f"{method}-{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        try:
            await self._ws.send(json.dumps({"type": "req", "id": req_id, "method": method, "params": params}))
        except websockets.exceptions.ConnectionClosed:
            self._pending.pop(req_id, None)
            raise ConnectionLost("connection closed by the gateway") from None
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(req_id, None)

    # -- calls ------------------------------------------------------------------------------
    def _is_open(self) -> bool:
        # The socket's own state too: calls failing at once on a closed socket would never yield to the
        # reader, which would then never see the close.
        return (self._ws is not None and self._ws.state is State.OPEN
                and self._reader is not None and not self._reader.done())

    async def _ensure_open(self) -> None:
        """Re-establish a dead connection (one caller does it, concurrent ones wait for it), retrying
        with a bounded backoff: a gateway that drops a socket, refuses one connect or stalls one
        handshake does not end the run; one that stays away past the budget does."""
        if self._is_open():
            return
        if self._reconnecting is None:
            self._reconnecting = asyncio.Lock()
        async with self._reconnecting:
            if self._is_open():
                return
            await self.close()
            if not self._connected:
                await self.open()  # never connected: a refusal is final at once
                return
            start, delay, attempts = time.monotonic(), RECONNECT_FIRST_DELAY, 0
            while True:
                attempts += 1
                try:
                    await self.open()
                    self.reconnects += 1
                    return
                except ProtocolMismatch:
                    raise  # another release came up on the port: no retry makes it speak ours
                except OcprobeError as exc:
                    elapsed = time.monotonic() - start
                    if elapsed + delay > self._reconnect_budget:
                        exc.args = (f"lost the connection and could not re-establish it "
                                    f"({attempts} attempt(s) in {elapsed:.1f}s): {exc}",)
                        raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)

    async def send(self, session_key: str, message: str, idempotency_key: str, timeout: float) -> ChatOutcome:
        await self._ensure_open()
        run = _Run(done=asyncio.get_running_loop().create_future())
        self._runs[idempotency_key] = run
        started_at, t0 = time.time(), time.perf_counter()
        outcome = ChatOutcome(run_id=idempotency_key, state="error", started_at=started_at)
        params = {"sessionKey": session_key, "message": message, "idempotencyKey": idempotency_key}
        try:
            res = await self._request("chat.send", params, timeout)
            if res.get("ok") is not True:
                error = _obj(res.get("error"))
                outcome.error_code = _str(error.get("code"))
                outcome.error_message = _str(error.get("message")) or "chat.send refused"
                return self._finish(outcome, t0)
            payload = _obj(res.get("payload"))
            outcome.ack_status = _str(payload.get("status"))
            if outcome.ack_status in CACHED_ACKS:
                # Answered from the idempotency cache: that run ended before, no new final will come.
                outcome.error_message = (f"the gateway answered from its idempotency cache (key already used; "
                                         f"status {outcome.ack_status})")
                return self._finish(outcome, t0)
            answered_run = _str(payload.get("runId")) or idempotency_key
            if answered_run != idempotency_key:
                # Deduplicated onto an earlier run (same text, same session): its events decide.
                self._runs[answered_run] = self._runs.pop(idempotency_key)
                idempotency_key = answered_run
            remaining = max(0.0, timeout - (time.perf_counter() - t0))
            await asyncio.wait_for(asyncio.shield(run.done), remaining)
            if run.lost is not None:
                raise ConnectionLost(run.lost)
        except asyncio.TimeoutError:
            outcome.state = "timeout"
            outcome.text = run.text
            outcome.error_message = f"no final within {timeout:g}s"
            return self._finish(outcome, t0)
        except ConnectionLost as exc:
            outcome.error_message = str(exc)
            outcome.text = run.text
            return self._finish(outcome, t0)
        finally:
            self._runs.pop(idempotency_key, None)
            if run.state:  # its terminal event came
                # The key, not the runId decoded from the event: the call's record keeps this same string.
                self._finished[idempotency_key] = None
                self._finished_order.append(idempotency_key)
                if len(self._finished_order) > FINISHED_KEPT:
                    self._finished.pop(self._finished_order.popleft(), None)
            if not run.done.done():
                run.done.cancel()
        outcome.state = run.state
        outcome.text = run.text
        outcome.error_message = run.error_message
        outcome.error_kind = run.error_kind
        outcome.ended_at = run.ended_at
        outcome.latency_ms = (run.ended_perf - t0) * 1000.0
        return outcome

    @staticmethod
    def _finish(outcome: ChatOutcome, t0: float) -> ChatOutcome:
        outcome.latency_ms = (time.perf_counter() - t0) * 1000.0
        outcome.ended_at = time.time()
        return outcome

    async def wait_run(self, run_id: str, timeout: float) -> None:
        try:
            await self._request("agent.wait", {"runId": run_id, "timeoutMs": int(timeout * 1000)}, timeout + 1.0)
        except (asyncio.TimeoutError, ConnectionLost):
            pass  # the next send reports a dead connection; a slow agent.wait only costs time

    async def history(self, session_key: str, limit: int = 50) -> list[dict[str, Any]]:
        await self._ensure_open()
        try:
            res = await self._request("chat.history", {"sessionKey": session_key, "limit": limit}, self._connect_timeout)
        except (asyncio.TimeoutError, ConnectionLost):
            return []  # no history to be had; a dead socket is re-established by the next call
        messages = _obj(res.get("payload")).get("messages") if res.get("ok") is True else None
        return messages if isinstance(messages, list) else []

    def take_foreign_events(self) -> list[ChatEvent]:
        events, self._foreign = self._foreign, []
        return events


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__


def _oneline(text: str, limit: int = 200) -> str:
    """Gateway-supplied text inside an error line: whitespace (newlines too) collapsed, length bounded."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _brief(frame: dict[str, Any]) -> str:
    return _oneline(json.dumps(frame), 120)

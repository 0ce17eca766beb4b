"""The OpenClaw gateway WebSocket protocol (v3), as a client: handshake, ``chat.send`` and ``chat`` events."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from ocprobe import __version__
from ocprobe.errors import AuthFailed, ProtocolError, TargetUnreachable
from ocprobe.models import ChatEvent, ChatOutcome
from ocprobe.transports.base import Transport

PROTOCOL_VERSION = 3
TERMINAL_STATES = ("final", "error", "aborted")
# Only this client id in backend mode keeps its scopes without a device key (see the shared notes).
CLIENT_ID = "gateway-client"
CLIENT_MODE = "backend"
AUTH_ERROR_CODES = {"AUTH_TOKEN_MISMATCH", "AUTH_TOKEN_MISSING", "DEVICE_IDENTITY_REQUIRED", "NOT_PAIRED", "UNAUTHORIZED"}


class ConnectionLost(Exception):
    pass


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
    seen: list[str] = field(default_factory=list)


class OpenClawWsTransport(Transport):
    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        connect_timeout: float = 10.0,
        startup_retry_budget: float = 60.0,
    ) -> None:
        self.url = url
        self._token = token
        self._connect_timeout = connect_timeout
        self._startup_retry_budget = startup_retry_budget
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._runs: dict[str, _Run] = {}
        self._foreign: list[ChatEvent] = []
        self._ids = itertools.count(1)
        self.hello: dict[str, Any] = {}

    # -- connection -------------------------------------------------------------------------
    async def open(self) -> None:
        deadline = time.monotonic() + self._startup_retry_budget
        while True:
            retry_after = await self._connect_once()
            if retry_after is None:
                return
            # The gateway is still starting (UNAVAILABLE startup-sidecars): retry as it asks, bounded.
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
                max_size=None,
                compression=None,
                user_agent_header=f"ocprobe/{__version__}",
            )
        except (OSError, asyncio.TimeoutError, websockets.exceptions.InvalidHandshake) as exc:
            raise TargetUnreachable(f"cannot connect to {self.url}: {_reason(exc)}") from None
        try:
            challenge = await self._recv_json(ws, "connect.challenge")
            if challenge.get("type") != "event" or challenge.get("event") != "connect.challenge":
                raise ProtocolError(f"{self.url}: expected connect.challenge first, got {_brief(challenge)}")
            await ws.send(json.dumps(self._connect_frame()))
            res = await self._recv_json(ws, "the connect response")
        except websockets.exceptions.ConnectionClosed as exc:
            await ws.close()
            raise self._closed_during_handshake(exc) from None
        except BaseException:
            await ws.close()
            raise
        if res.get("type") != "res" or res.get("id") != "connect":
            await ws.close()
            raise ProtocolError(f"{self.url}: expected the connect response, got {_brief(res)}")
        if not res.get("ok"):
            await ws.close()
            error = res.get("error") or {}
            details = error.get("details") or {}
            if error.get("code") == "UNAVAILABLE" and error.get("retryAfterMs") is not None:
                return max(0.05, float(error["retryAfterMs"]) / 1000.0)
            detail_code = details.get("code") or error.get("code")
            text = f"{self.url}: gateway refused the connection: {error.get('message', 'unknown error')} ({detail_code})"
            if detail_code in AUTH_ERROR_CODES or "unauthorized" in str(error.get("message", "")).lower():
                raise AuthFailed(text)
            raise TargetUnreachable(text)
        self.hello = res.get("payload") or {}
        self.server_version = (self.hello.get("server") or {}).get("version")
        self._ws = ws
        self._reader = asyncio.create_task(self._read_loop(ws))
        return None

    def _connect_frame(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "minProtocol": PROTOCOL_VERSION,
            "maxProtocol": PROTOCOL_VERSION,
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
        try:
            frame = json.loads(raw)
        except (TypeError, ValueError):
            raise ProtocolError(f"{self.url}: {what} is not JSON") from None
        if not isinstance(frame, dict):
            raise ProtocolError(f"{self.url}: {what} is not a JSON object")
        return frame

    def _closed_during_handshake(self, exc: websockets.exceptions.ConnectionClosed) -> Exception:
        rcvd = exc.rcvd
        if rcvd is not None and rcvd.code == 1008:
            return AuthFailed(f"{self.url}: gateway closed the connection (policy violation: {rcvd.reason or 'unauthorized'})")
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
        try:
            async for raw in ws:
                received_perf, received_at = time.perf_counter(), time.time()
                try:
                    frame = json.loads(raw)
                except (TypeError, ValueError):
                    continue  # a binary or non-JSON frame is not the protocol: skip it
                if isinstance(frame, dict):
                    self._dispatch(frame, received_perf, received_at)
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            self._fail_pending(ConnectionLost("connection closed by the gateway"))

    def _dispatch(self, frame: dict[str, Any], received_perf: float, received_at: float) -> None:
        kind = frame.get("type")
        if kind == "res":
            future = self._pending.pop(str(frame.get("id")), None)
            if future is not None and not future.done():
                future.set_result(frame)
        elif kind == "event" and frame.get("event") == "chat":
            payload = frame.get("payload")
            if isinstance(payload, dict):
                self._on_chat(payload, received_perf, received_at)

    def _on_chat(self, payload: dict[str, Any], received_perf: float, received_at: float) -> None:
        run_id = str(payload.get("runId", ""))
        state = str(payload.get("state", ""))
        text = message_text(payload.get("message"))
        run = self._runs.get(run_id)
        if run is None:
            if state in TERMINAL_STATES:
                self._foreign.append(
                    ChatEvent(run_id=run_id, session_key=str(payload.get("sessionKey", "")), state=state, text=text, at=received_at)
                )
            return
        if run.done.done():
            return  # a duplicate terminal event: the first one decided
        run.seen.append(state)
        if text:
            run.text = text  # a delta carries the whole text so far
        if state in TERMINAL_STATES:
            run.state = state
            run.ended_perf, run.ended_at = received_perf, received_at
            run.error_message = payload.get("errorMessage")
            run.error_kind = payload.get("errorKind")
            run.done.set_result(None)

    def _fail_pending(self, exc: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(exc)
        self._pending.clear()
        for run in self._runs.values():
            if not run.done.done():
                run.done.set_exception(exc)

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
    async def _ensure_open(self) -> None:
        if self._ws is None or self._reader is None or self._reader.done():
            await self.close()
            await self.open()  # a dead socket is re-established once per call; failure ends the run

    async def send(self, session_key: str, message: str, idempotency_key: str, timeout: float) -> ChatOutcome:
        await self._ensure_open()
        run = _Run(done=asyncio.get_running_loop().create_future())
        self._runs[idempotency_key] = run
        started_at, t0 = time.time(), time.perf_counter()
        outcome = ChatOutcome(run_id=idempotency_key, state="error", started_at=started_at)
        params = {"sessionKey": session_key, "message": message, "idempotencyKey": idempotency_key}
        try:
            res = await self._request("chat.send", params, timeout)
            if not res.get("ok"):
                error = res.get("error") or {}
                outcome.error_code = error.get("code")
                outcome.error_message = error.get("message") or "chat.send refused"
                return self._finish(outcome, t0)
            payload = res.get("payload") or {}
            outcome.ack_status = payload.get("status")
            if outcome.ack_status == "ok":
                # Answered from the idempotency cache: that run ended before, no new final will come.
                outcome.error_message = "the gateway answered from its idempotency cache (key already used)"
                return self._finish(outcome, t0)
            answered_run = str(payload.get("runId") or idempotency_key)
            if answered_run != idempotency_key:
                # Deduplicated onto an earlier run (same text, same session): its events decide.
                self._runs[answered_run] = self._runs.pop(idempotency_key)
                idempotency_key = answered_run
            remaining = max(0.0, timeout - (time.perf_counter() - t0))
            await asyncio.wait_for(asyncio.shield(run.done), remaining)
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
        res = await self._request("chat.history", {"sessionKey": session_key, "limit": limit}, self._connect_timeout)
        messages = (res.get("payload") or {}).get("messages") if res.get("ok") else None
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


def _brief(frame: dict[str, Any]) -> str:
    return json.dumps(frame)[:120]

"""The reference gateway: the OpenClaw WebSocket protocol subset a probe uses (v3 as 2026.5.3 speaks it,
v4 as 2026.9.6 does), with the reply-run mechanism of openclaw #77485 modelled on purpose.

Per session it keeps a reply-run registry (the guard) and a follow-up queue. A ``chat.send`` that finds
the guard set is queued and its own run ends with a ``final`` without message; the queue is drained
later, each queued turn running under a server-generated runId. Profiles (``reference/defaults.py``)
decide when the guard is cleared relative to the ``final``:

- without the race (``healthy``, ``openclaw-9.6``): before the final is broadcast, so a client that sends
  right after the final finds the session idle, and a drain waits for an active run instead of failing.
- with it (``reply-run-race``, ``openclaw-5.3``): ``teardown_ms`` after the final (slow post-reply work).
  A send inside that window is queued; a drain that finds the guard set fails with
  ``ReplyRunAlreadyActiveError``, logs it and retries after the debounce.

Protocol 4 adds what 2026.9.6 sends: ``capabilities`` in the challenge, ``status`` chat events before the
model answers, ``deltaText`` beside the whole text, and its PROTOCOL_MISMATCH refusal.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import json
import secrets
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import aiohttp
from aiohttp import WSMsgType, web

from ocprobe import __version__
from ocprobe.reference.defaults import DEFAULT_DEBOUNCE_MS, PROFILES, PROTOCOLS, QUEUE_MODES, Profile
from ocprobe.reference.fault_specs import FaultSpec
from ocprobe.reference.faults import FaultInjector
from ocprobe.secret import same_secret

# Both generations refuse a client's range with INVALID_REQUEST "protocol mismatch" and close 1002; only
# the details differ (tests/data/wire holds the frames captured from real 2026.5.3 and 2026.9.6).
PROTOCOL_MISMATCH_CLOSE = 1002
# The phases 2026.9.6 reports as ``status`` chat events before the model's first delta.
STATUS_PHASES = ("preparing_workspace", "preparing_context", "starting_model")
METHODS = ("connect", "chat.send", "chat.history", "chat.abort", "agent.wait", "health", "status", "sessions.list")
EVENTS = ("connect.challenge", "chat", "agent", "tick")
MAX_PAYLOAD = 25 * 1024 * 1024


@dataclass
class GatewayConfig:
    token: str
    provider_url: str  # OpenAI-compatible base URL, e.g. http://127.0.0.1:PORT/v1
    profile: str = "healthy"
    teardown_ms: float | None = None  # None: the profile's (a range, drawn per run)
    queued_ack_ms: float | None = None  # None: the profile's
    protocol: int | None = None  # None: the profile's
    debounce_ms: float = DEFAULT_DEBOUNCE_MS
    drop_queued: bool = False
    queue_mode: str = "steer"  # steer: one run per queued turn (5.3); collect: one run for all (4.26)
    model: str = "mock-model"
    provider_api_key: str = "sk-local"
    tick_interval_ms: int = 30_000
    log_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 0
    faults: tuple[FaultSpec, ...] = ()  # hostile behaviour on chosen chat.send calls (see faults.py)

    def __post_init__(self) -> None:
        if self.host != "127.0.0.1":
            raise ValueError(f"the reference gateway listens on 127.0.0.1 only, not {self.host!r}")
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r} (choose from {', '.join(PROFILES)})")
        if self.protocol is not None and self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r} (choose from {', '.join(map(str, PROTOCOLS))})")
        if self.queue_mode not in QUEUE_MODES:
            raise ValueError(f"unknown queue mode {self.queue_mode!r} (choose from {', '.join(QUEUE_MODES)})")

    @property
    def behaviour(self) -> Profile:
        return PROFILES[self.profile]

    @property
    def speaks(self) -> int:
        """The protocol version this gateway speaks."""
        return self.behaviour.protocol if self.protocol is None else self.protocol

    @property
    def ack_ms(self) -> float:
        return self.behaviour.queued_ack_ms if self.queued_ack_ms is None else self.queued_ack_ms

    def teardown_s(self) -> float:
        """How long this run's guard outlives its final (race profiles)."""
        if self.teardown_ms is not None:
            return self.teardown_ms / 1000.0
        return random.uniform(*self.behaviour.teardown_ms) / 1000.0


def canonical_session_key(key: str) -> str:
    """``main`` -> ``agent:main:main``; keys are lower-cased, as the real gateway does."""
    key = key.strip().lower()
    return key if key.startswith("agent:") else f"agent:main:{key}"


class ReplyRunAlreadyActiveError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(f"Reply run already active for {key}")


@dataclass
class Run:
    run_id: str
    session_key: str
    done: asyncio.Event = field(default_factory=asyncio.Event)
    state: str = "running"


@dataclass
class QueuedTurn:
    message: str
    queued_at: float


@dataclass
class Session:
    key: str
    history: list[dict[str, str]] = field(default_factory=list)
    guard: str | None = None  # runId holding the reply-run registry entry
    guard_cleared: asyncio.Event = field(default_factory=asyncio.Event)
    queue: list[QueuedTurn] = field(default_factory=list)
    last_enqueued: float = 0.0  # monotonic
    draining: bool = False


class GatewayLog:
    """Error lines go to stderr as plain text (as 5.3 does) and, as JSON lines, to the log file."""

    def __init__(self, path: Path | None, stream: IO[str] | None = None) -> None:
        self.path = path
        self._stream = stream or sys.stderr
        self._file = path.open("a", encoding="utf-8") if path else None

    def error(self, message: str) -> None:
        self._stream.write(message + "\n")
        self._stream.flush()
        if self._file:
            now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            self._file.write(json.dumps({"time": now, "message": message, "_meta": {"logLevelName": "ERROR"}}) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file:
            self._file.close()


class Client:
    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None = None) -> None:
        self.ws = ws
        self.transport = transport
        self.seq = itertools.count(1)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.send_raw(json.dumps(frame))

    async def send_raw(self, data: str | bytes) -> None:
        if not self.ws.closed:
            try:
                await (self.ws.send_str(data) if isinstance(data, str) else self.ws.send_bytes(data))
            except (ConnectionError, RuntimeError):
                pass  # the client went away; its connection handler cleans up

    def abort(self) -> None:
        """Drop the TCP connection without a WebSocket close, as a network failure does."""
        if self.transport is not None:
            self.transport.abort()


class ReferenceGateway:
    def __init__(self, config: GatewayConfig, *, log: GatewayLog | None = None) -> None:
        self.config = config
        self.log = log or GatewayLog(config.log_file)
        self.faults = FaultInjector(config.faults, self.log)
        self.sessions: dict[str, Session] = {}
        self.runs: dict[str, Run] = {}
        self.clients: set[Client] = set()
        self.started_at = time.time()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False  # a drain cancelled by stop() must not schedule another
        self._final_waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._site_port = 0
        self.version = f"ocprobe-reference/{__version__} ({config.profile})"

    # -- lifecycle --------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_PAYLOAD)
        app.router.add_get("/", self._ws_handler)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_post("/chat.send", self._relay_chat_send)
        app.router.add_post("/v1/chat/completions", self._openai_chat_completions)
        return app

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120.0, connect=5.0), trust_env=False)
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        server = site._server  # aiohttp exposes the bound socket only here
        self._site_port = server.sockets[0].getsockname()[1] if server and server.sockets else self.config.port
        self._spawn(self._tick_loop())

    @property
    def port(self) -> int:
        return self._site_port

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/"

    async def stop(self) -> None:
        # Relay requests still waiting for a final get an answer now, or stopping would wait for them.
        for waiters in self._final_waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result({"state": "aborted"})
        self._final_waiters.clear()
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in list(self.clients):
            await client.ws.close()
        if self._runner:
            await self._runner.cleanup()
            self._runner = None
        if self._http:
            await self._http.close()
            self._http = None
        self.log.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- HTTP -------------------------------------------------------------------------------
    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "status": "live"})

    async def _readyz(self, request: web.Request) -> web.Response:
        return web.json_response({"ready": True, "uptimeMs": int((time.time() - self.started_at) * 1000)})

    def _token_ok(self, presented: str | None) -> bool:
        return presented is not None and same_secret(presented, self.config.token)

    async def _relay_chat_send(self, request: web.Request) -> web.Response:
        """``POST /chat.send``: the HTTP relay in front of ``chat.send`` that the #77485 reporter used."""
        auth = request.headers.get("Authorization", "")
        if not self._token_ok(auth[7:] if auth.startswith("Bearer ") else None):
            return web.json_response({"ok": False, "error": "unauthorized"}, status=401)
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"ok": False, "error": "body is not JSON"}, status=400)
        if not isinstance(body, dict) or not isinstance(body.get("message"), str):
            return web.json_response({"ok": False, "error": "expected {sessionKey, message}"}, status=400)
        key = canonical_session_key(str(body.get("sessionKey") or "main"))
        run_id = str(body.get("idempotencyKey") or uuid.uuid4())
        started = time.perf_counter()
        final = await self._collect_final(run_id, lambda: self.chat_send(key, body["message"], run_id))
        return web.json_response(
            {
                "ok": final.get("state") == "final",
                "runId": run_id,
                "sessionKey": key,
                "state": final.get("state", "timeout"),
                "reply": _text_of(final.get("message")),
                "durationMs": round((time.perf_counter() - started) * 1000, 1),
            }
        )

    async def _openai_chat_completions(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/chat/completions``, OpenAI-compatible, as the real gateway serves it: Bearer gateway
        token, session from ``x-openclaw-session-key``. Like the real one (an agent command, not
        ``chat.send``) it bypasses the reply-run guard and the follow-up queue: it calls the provider for
        the session directly, so the #77485 race never shows through it."""
        auth = request.headers.get("Authorization", "")
        if not self._token_ok(auth[7:] if auth.startswith("Bearer ") else None):
            return _openai_error(401, "Unauthorized", "unauthorized")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _openai_error(400, "Request body is not valid JSON.", "invalid_request_error")
        if not isinstance(body, dict):
            body = {}
        message = _last_user_text(body.get("messages"))
        if not message:
            return _openai_error(400, "Missing user message in `messages`.", "invalid_request_error")
        model = body["model"] if isinstance(body.get("model"), str) else "openclaw"
        session = self.session(canonical_session_key(request.headers.get("x-openclaw-session-key") or "main"))
        run = Run(run_id=f"chatcmpl_{uuid.uuid4()}", session_key=session.key)  # not a chat.send run: not in self.runs
        created = int(time.time())
        if not body.get("stream"):
            try:
                text = await self._provider_turn(session, run, message)
            except Exception as exc:  # the provider failed
                self.log.error(f"openai-compat: chat completion failed: {exc}")
                return _openai_error(500, "internal error", "api_error")
            return web.json_response({
                "id": run.run_id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text or "No response from OpenClaw."},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            })
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"})
        await response.prepare(request)  # the real gateway sends the SSE headers before the run starts

        async def chunk(delta: dict[str, Any], finish: str | None = None) -> None:
            data = {"id": run.run_id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            await response.write(f"data: {json.dumps(data)}\n\n".encode())

        try:
            try:
                text = await self._provider_turn(session, run, message)
                content, finish = text or "No response from OpenClaw.", None
            except Exception as exc:
                self.log.error(f"openai-compat: streaming chat completion failed: {exc}")
                content, finish = "Error: internal error", "stop"
            await chunk({"role": "assistant"})
            await chunk({"content": content}, finish)
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away
        return response

    async def _provider_turn(self, session: Session, run: Run, message: str) -> str:
        text = await self._call_provider(session, run, message)
        session.history.append({"role": "user", "text": message})
        session.history.append({"role": "assistant", "text": text, "runId": run.run_id})
        return text

    async def _collect_final(self, run_id: str, start: Callable[[], Any], timeout: float = 120.0) -> dict[str, Any]:
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._final_waiters.setdefault(run_id, []).append(waiter)
        start()
        try:
            return await asyncio.wait_for(waiter, timeout)
        except asyncio.TimeoutError:
            return {"state": "timeout"}

    # -- WebSocket --------------------------------------------------------------------------
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_PAYLOAD, autoping=True)
        if not ws.can_prepare(request).ok:
            return web.Response(text="ocprobe reference gateway: WebSocket endpoint\n")
        await ws.prepare(request)
        if await self.faults.stall_handshake(ws):
            return ws
        client = Client(ws, request.transport)
        challenge: dict[str, Any] = {"nonce": secrets.token_hex(16), "ts": int(time.time() * 1000)}
        if self.config.speaks >= 4:
            challenge["capabilities"] = []
        await client.send({"type": "event", "event": "connect.challenge", "payload": challenge})
        try:
            if not await self._handshake(client, request):
                return ws
            self.clients.add(client)
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    frame = json.loads(msg.data)
                except json.JSONDecodeError:
                    continue
                if isinstance(frame, dict) and frame.get("type") == "req":
                    await self._on_request(client, frame)
        finally:
            self.clients.discard(client)
        return ws

    async def _handshake(self, client: Client, request: web.Request) -> bool:
        msg = await client.ws.receive()
        frame: Any = None
        if msg.type == WSMsgType.TEXT:
            try:
                frame = json.loads(msg.data)
            except json.JSONDecodeError:
                frame = None
        if not (isinstance(frame, dict) and frame.get("type") == "req" and frame.get("method") == "connect"):
            await client.ws.close(code=1008, message=b"invalid handshake: first request must be connect")
            return False
        req_id = frame.get("id")
        params = frame.get("params") if isinstance(frame.get("params"), dict) else {}
        low, high = params.get("minProtocol"), params.get("maxProtocol")
        speaks = self.config.speaks
        if not (_is_int(low) and _is_int(high) and low <= speaks <= high):
            details: dict[str, Any] = {"expectedProtocol": speaks}  # 2026.5.3 says no more
            if speaks >= 4:
                details = {"code": "PROTOCOL_MISMATCH", "clientMinProtocol": low, "clientMaxProtocol": high,
                           "expectedProtocol": speaks, "minimumProbeProtocol": min(PROTOCOLS)}
            await self._refuse(client, req_id, "INVALID_REQUEST", "protocol mismatch", details,
                               close_code=PROTOCOL_MISMATCH_CLOSE)
            return False
        auth = params.get("auth") if isinstance(params.get("auth"), dict) else {}
        token = auth.get("token") if isinstance(auth.get("token"), str) else None
        if token is None:
            await self._refuse(client, req_id, "NOT_PAIRED", "device identity required", {"code": "DEVICE_IDENTITY_REQUIRED"})
            return False
        if not self._token_ok(token) or self.faults.refuse_connect():
            await self._refuse(client, req_id, "INVALID_REQUEST",
                               "unauthorized: gateway token mismatch (provide gateway auth token)",
                               {"code": "AUTH_TOKEN_MISMATCH", "authReason": "token_mismatch",
                                "canRetryWithDeviceToken": False, "recommendedNextStep": "update_auth_credentials"})
            return False
        await client.send({"type": "res", "id": req_id, "ok": True, "payload": self._hello()})
        return True

    async def _refuse(self, client: Client, req_id: Any, code: str, message: str, details: dict[str, Any],
                      close_code: int = 1008) -> None:
        await client.send({"type": "res", "id": req_id, "ok": False,
                           "error": {"code": code, "message": message, "details": details}})
        await client.ws.close(code=close_code, message=message.encode()[:120])

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "hello-ok",
            "protocol": self.config.speaks,
            "server": {"version": self.version, "connId": uuid.uuid4().hex},
            "features": {"methods": list(METHODS), "events": list(EVENTS)},
            "snapshot": {"uptimeMs": int((time.time() - self.started_at) * 1000)},
            "policy": {"maxPayload": self.faults.max_payload(MAX_PAYLOAD), "maxBufferedBytes": MAX_PAYLOAD * 2,
                       "tickIntervalMs": self.config.tick_interval_ms},
        }

    async def _on_request(self, client: Client, frame: dict[str, Any]) -> None:
        req_id, method = frame.get("id"), frame.get("method")
        params = frame.get("params") if isinstance(frame.get("params"), dict) else {}
        handler = {
            "chat.send": self._m_chat_send,
            "agent.wait": self._m_agent_wait,
            "chat.history": self._m_chat_history,
            "health": self._m_health,
            "status": self._m_health,
            "sessions.list": self._m_sessions_list,
        }.get(str(method))
        if handler is None:
            await client.send(_error(req_id, "INVALID_REQUEST", f"unknown method: {method}"))
            return
        fault = self.faults.pick() if method == "chat.send" else None
        # agent.wait blocks: run it aside so the connection keeps reading
        if method == "agent.wait":
            self._spawn(self._answer(client, req_id, handler, params))
        elif fault is not None:
            await self.faults.chat_send(fault, client, req_id, params, lambda: self._response(req_id, handler, params), self.runs)
        else:
            await self._answer(client, req_id, handler, params)

    async def _answer(self, client: Client, req_id: Any, handler: Any, params: dict[str, Any]) -> None:
        await client.send(await self._response(req_id, handler, params))

    async def _response(self, req_id: Any, handler: Any, params: dict[str, Any]) -> dict[str, Any]:
        try:
            payload = await handler(params)
        except RequestError as exc:
            return _error(req_id, "INVALID_REQUEST", str(exc))
        return {"type": "res", "id": req_id, "ok": True, "payload": payload}

    async def _m_chat_send(self, params: dict[str, Any]) -> dict[str, Any]:
        for name in ("sessionKey", "message", "idempotencyKey"):
            if not isinstance(params.get(name), str) or not params[name]:
                raise RequestError(f"invalid chat.send params: {name} is required")
        run_id = params["idempotencyKey"]
        existing = self.runs.get(run_id)
        if existing is not None:
            return {"runId": run_id, "status": "in_flight" if existing.state == "running" else "ok"}
        self.chat_send(canonical_session_key(params["sessionKey"]), params["message"], run_id)
        return {"runId": run_id, "status": "started"}

    async def _m_agent_wait(self, params: dict[str, Any]) -> dict[str, Any]:
        run = self.runs.get(str(params.get("runId")))
        if run is None:
            raise RequestError("unknown runId")
        timeout = float(params.get("timeoutMs", 30_000)) / 1000.0
        try:
            await asyncio.wait_for(run.done.wait(), timeout)
        except asyncio.TimeoutError:
            return {"runId": run.run_id, "status": "timeout"}
        return {"runId": run.run_id, "status": run.state}

    async def _m_chat_history(self, params: dict[str, Any]) -> dict[str, Any]:
        key = canonical_session_key(str(params.get("sessionKey") or "main"))
        limit = int(params.get("limit") or 200)
        session = self.sessions.get(key)
        messages = session.history[-limit:] if session else []
        return {"sessionKey": key, "messages": [
            {"role": m["role"], "content": [{"type": "text", "text": m["text"]}], **({"runId": m["runId"]} if "runId" in m else {})}
            for m in messages
        ]}

    async def _m_health(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "version": self.version, "uptimeMs": int((time.time() - self.started_at) * 1000),
                "sessions": len(self.sessions), "profile": self.config.profile}

    async def _m_sessions_list(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"sessions": [{"key": s.key, "messages": len(s.history), "busy": s.guard is not None}
                             for s in self.sessions.values()]}

    # -- events -----------------------------------------------------------------------------
    async def broadcast(self, event: str, payload: dict[str, Any]) -> None:
        for client in list(self.clients):
            await client.send({"type": "event", "event": event, "payload": payload, "seq": next(client.seq)})

    async def _chat_event(self, run: Run, state: str, text: str | None, **extra: Any) -> None:
        payload: dict[str, Any] = {"runId": run.run_id, "sessionKey": run.session_key, "seq": 0, "state": state, **extra}
        if text is not None:
            payload["message"] = {"role": "assistant", "content": [{"type": "text", "text": text}],
                                  "timestamp": int(time.time() * 1000)}
        if state in ("final", "error", "aborted"):
            for waiter in self._final_waiters.pop(run.run_id, []):
                if not waiter.done():
                    waiter.set_result(payload)
        for sent in await self.faults.chat_events(payload):
            await self.broadcast("chat", sent)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_interval_ms / 1000.0)
            await self.broadcast("tick", {"ts": int(time.time() * 1000)})

    # -- the reply-run mechanism --------------------------------------------------------------
    def session(self, key: str) -> Session:
        session = self.sessions.get(key)
        if session is None:
            session = self.sessions[key] = Session(key=key)
            session.guard_cleared.set()
        return session

    def chat_send(self, key: str, message: str, run_id: str) -> None:
        """Accept one turn: run it now, or queue it as a follow-up when the reply-run guard is set."""
        session = self.session(key)
        run = self.runs[run_id] = Run(run_id=run_id, session_key=key)
        if session.guard is None:
            # Taken now, not when the task first runs: a second send in the same tick must find it set.
            self._acquire_guard(session, run.run_id)
            self._spawn(self._run_turn(session, run, message))
            return
        # Busy (a run, or its post-reply teardown, holds the guard): the real gateway enqueues a
        # follow-up and does not kick the drain; the run that holds the guard drains it when it ends.
        session.queue.append(QueuedTurn(message=message, queued_at=time.time()))
        session.last_enqueued = time.monotonic()
        self._spawn(self._ack_queued(run))

    async def _ack_queued(self, run: Run) -> None:
        """The queued send's own run ends with a final without message once its request is processed."""
        await asyncio.sleep(self.config.ack_ms / 1000.0)
        await self._chat_event(run, "final", None)
        run.state = "ok"
        run.done.set()

    def _acquire_guard(self, session: Session, run_id: str) -> None:
        if session.guard is not None:
            raise ReplyRunAlreadyActiveError(session.key)
        session.guard = run_id
        session.guard_cleared.clear()

    def _release_guard(self, session: Session) -> None:
        session.guard = None
        session.guard_cleared.set()

    async def _run_turn(self, session: Session, run: Run, message: str, *, followup: bool = False) -> None:
        """One reply run. The post-reply teardown belongs to client-started reply runs (in the real
        gateway it is the work ``runReplyAgent`` does between the final and clearing the guard); a
        follow-up run, which a drain starts holding the guard already, clears it when it ends."""
        if session.guard != run.run_id:
            self._acquire_guard(session, run.run_id)
        try:
            text = await self._call_provider(session, run, message)
        except Exception as exc:  # the provider failed: the run ends in state error
            self._release_guard(session)
            await self._chat_event(run, "error", None, errorMessage=f"provider error: {exc}", errorKind="provider")
            run.state = "error"
            run.done.set()
            self._schedule_drain(session)
            return
        session.history.append({"role": "user", "text": message})
        session.history.append({"role": "assistant", "text": text, "runId": run.run_id})
        if not self.config.behaviour.race or followup:
            self._release_guard(session)
            await self._chat_event(run, "final", text or None)
        else:
            # The bug: the final goes out while the run still holds the guard (post-reply teardown).
            await self._chat_event(run, "final", text or None)
            await asyncio.sleep(self.config.teardown_s())
            self._release_guard(session)
        run.state = "ok"
        run.done.set()
        self._schedule_drain(session)

    async def _call_provider(self, session: Session, run: Run, message: str) -> str:
        assert self._http is not None
        await self.faults.before_provider(run.run_id)
        stamp = datetime.now(timezone.utc).strftime("[%a %Y-%m-%d %H:%M UTC] ")
        messages = [{"role": "system", "content": "You are the ocprobe reference agent."}]
        messages += [{"role": m["role"], "content": m["text"]} for m in session.history]
        messages.append({"role": "user", "content": stamp + message})
        body = {"model": self.config.model, "messages": messages, "stream": True}
        headers = {"Authorization": f"Bearer {self.config.provider_api_key}"}
        text = ""
        if self.config.speaks >= 4:
            for phase in STATUS_PHASES:
                await self._chat_event(run, "status", None, phase=phase)
        async with self._http.post(f"{self.config.provider_url}/chat/completions", json=body, headers=headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            async for raw in resp.content:  # one SSE line at a time
                line = raw.decode().rstrip("\r\n")
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                for choice in chunk.get("choices", []):
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        text += piece
                        await self._chat_event(run, "delta", text,
                                               **({"deltaText": piece} if self.config.speaks >= 4 else {}))
        return text

    def _schedule_drain(self, session: Session) -> None:
        if not session.draining and session.queue and not self._stopping:
            session.draining = True
            self._spawn(self._drain(session))

    async def _drain(self, session: Session) -> None:
        """The follow-up drain as in the real gateway: a trailing debounce from the last enqueue (or
        failure), then one run per queued turn (``collect``: one run for all), retried without limit."""
        try:
            while session.queue:
                await self._debounce(session)
                if self.config.drop_queued:
                    dropped, session.queue = session.queue, []
                    self.log.error(f"followup queue for {session.key}: dropped {len(dropped)} queued turn(s)")
                    return
                if not self.config.behaviour.race:
                    # The intended fix: a drain waits for the active run to clear its guard.
                    await session.guard_cleared.wait()
                run = Run(run_id=str(uuid.uuid4()), session_key=session.key)
                self._acquire_guard(session, run.run_id)  # raises while another run holds the guard
                if self.config.queue_mode == "collect":
                    turns, session.queue = session.queue, []
                    message = "[Queued messages while agent was busy]\n\n" + "\n\n".join(
                        f"Queued #{n}\n{t.message}" for n, t in enumerate(turns, 1))
                else:
                    message = session.queue.pop(0).message
                self.runs[run.run_id] = run
                await self._run_turn(session, run, message, followup=True)
        except ReplyRunAlreadyActiveError as exc:
            session.last_enqueued = time.monotonic()  # the retry comes one debounce after the failure
            self.log.error(f"followup queue drain failed for {session.key}: ReplyRunAlreadyActiveError: {exc}")
        finally:
            session.draining = False
            if session.queue:
                self._schedule_drain(session)

    async def _debounce(self, session: Session) -> None:
        debounce = self.config.debounce_ms / 1000.0
        while (since := time.monotonic() - session.last_enqueued) < debounce:
            await asyncio.sleep(debounce - since)


class RequestError(Exception):
    pass


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _error(req_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"type": "res", "id": req_id, "ok": False, "error": {"code": code, "message": message}}


def _openai_error(status: int, message: str, kind: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind}}, status=status)


def _last_user_text(messages: Any) -> str:
    """The text of the last user message (a string, or a list of text parts)."""
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
            return content.strip() if isinstance(content, str) else ""
    return ""


def _text_of(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    return "".join(p.get("text", "") for p in message.get("content") or [] if isinstance(p, dict))

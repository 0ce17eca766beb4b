"""Built-in OpenAI-compatible LLM provider: the LLM behind the gateway under test.

Every chat completion request it receives is recorded as a ``WitnessRequest``: that record proves
which chat turns (identified by their nonce) actually reached the LLM, independently of what the
gateway reports.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from ocprobe.models import WitnessLog, WitnessRequest
from ocprobe.reference.defaults import DEFAULT_LATENCY_MS
from ocprobe.secret import same_secret

NONCE_PATTERN = r"ok-\d+-[0-9a-z]+"

_MODEL_ID = "mock-model"


def _error(status: int, message: str) -> web.Response:
    """An OpenAI-style error body, so gateways surface it the way they would a real provider's."""
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}},
        status=status,
    )


def _text_of(content: Any) -> str:
    """The text of a message ``content``: a plain string or a list of ``{"type": "text"}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    return ""


class ReferenceProvider:
    def __init__(
        self,
        *,
        latency_ms: float = DEFAULT_LATENCY_MS,
        jitter_ms: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        seed: int | None = None,
        nonce_pattern: str = NONCE_PATTERN,
        sock: socket.socket | None = None,
    ) -> None:
        """``sock``: a socket bound (and listening) on 127.0.0.1 to serve on instead of ``port``, so that its
        URL can be handed out before this module's imports are paid for."""
        address = sock.getsockname()[0] if sock is not None else host
        if address != "127.0.0.1":
            raise ValueError(f"the reference provider listens on 127.0.0.1 only, not {address!r}")
        self._sock = sock
        self._latency_ms = latency_ms
        self._jitter_ms = jitter_ms
        self._host = host
        self._requested_port = port
        self._api_key = api_key
        self._rng = random.Random(seed)
        self._nonce_re = re.compile(nonce_pattern)
        self._record = WitnessLog()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/ocprobe/witness", self._witness)
        # access_log=None: ocprobe's stdout carries its own report, not per-request lines.
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.SockSite(runner, self._sock) if self._sock is not None else web.TCPSite(runner, self._host, self._requested_port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        # With port 0 the OS picked one: read it back from the bound socket.
        self._port = runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> ReferenceProvider:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("ReferenceProvider is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}/v1"

    @property
    def requests(self) -> Sequence[WitnessRequest]:
        """The record itself, read-only by contract: a copy per call made long probes quadratic."""
        return self._record

    def _authorized(self, request: web.Request) -> bool:
        if self._api_key is None:
            return True
        given = request.headers.get("Authorization", "")
        # Constant-time comparison: the key is a secret even on loopback.
        return same_secret(given, f"Bearer {self._api_key}")

    def _find_nonces(self, messages: list[Any]) -> tuple[str, ...]:
        """Nonces in the user messages of the current turn, i.e. after the last assistant message.

        Earlier turns are history the gateway replays; only the newest user messages (the real one
        plus any the gateway appends, such as a runtime context) belong to this request.
        """
        last_assistant = max(
            (i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"),
            default=-1,
        )
        found: list[str] = []
        for message in messages[last_assistant + 1 :]:
            if isinstance(message, dict) and message.get("role") == "user":
                for nonce in self._nonce_re.findall(_text_of(message.get("content"))):
                    if nonce not in found:
                        found.append(nonce)
        return tuple(found)

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.")
        try:
            body = await request.json()
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
            return _error(400, "Request body is not valid JSON.")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' is required and must be a list.")

        model = str(body.get("model") or _MODEL_ID)
        stream = body.get("stream") is True
        nonces = self._find_nonces(body["messages"])
        # Record on arrival, before the simulated latency: the witness time is when the LLM was reached.
        # seq counts from 1 in arrival order.
        self._record.append(at=time.time(), nonces=nonces, model=model, stream=stream)

        await asyncio.sleep((self._latency_ms + self._rng.uniform(0.0, self._jitter_ms)) / 1000.0)

        text = " ".join(nonces) if nonces else "pong"
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        if not stream:
            return web.json_response(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            )

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        try:
            await self._stream(request, response, body, text, completion_id, created, model, usage)
        except ConnectionResetError:
            pass  # the gateway went away mid-reply (it was stopped): nothing left to answer
        return response

    async def _stream(
        self, request: web.Request, response: web.StreamResponse, body: dict[str, Any], text: str,
        completion_id: str, created: int, model: str, usage: dict[str, int],
    ) -> None:
        await response.prepare(request)

        async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
            chunk = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
                **extra,
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        # Two content pieces, so clients that concatenate deltas are actually exercised.
        half = len(text) // 2
        for piece in (text[:half], text[half:]):
            await send([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        await send([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        stream_options = body.get("stream_options")
        if isinstance(stream_options, dict) and stream_options.get("include_usage"):
            await send([], usage=usage)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()

    async def _models(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.")
        return web.json_response(
            {"object": "list", "data": [{"id": _MODEL_ID, "object": "model", "owned_by": "ocprobe"}]}
        )

    async def _witness(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.")
        return web.json_response(
            {
                "requests": [
                    {"seq": r.seq, "at": r.at, "nonces": list(r.nonces), "model": r.model, "stream": r.stream}
                    for r in self._record
                ]
            }
        )

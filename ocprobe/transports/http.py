"""HTTP transports: a JSON relay in front of ``chat.send`` (as the #77485 reporter used) and the gateway's
OpenAI-compatible ``POST /v1/chat/completions``.

Both keep one ``aiohttp.ClientSession`` (connection reuse, no proxy from the environment) and turn every
exchange into a ``ChatOutcome``: ``final`` with the reply text, ``error`` for an HTTP error status or a
body that does not hold a reply, ``timeout`` past the per-call timeout. A refused connection ends the run
(``TargetUnreachable``, as a failed WebSocket reconnect does), and so does a refused token
(``AuthFailed``): neither is a measurement of the gateway.

aiohttp's client rather than httpx: the profile of a concurrent relay probe put about 4/5 of the client's
busy time in httpx (2.1 ms of CPU per call, against 0.58 ms here), CPU that a gateway on the same host
then lacks; aiohttp is already the reference servers' library.

Neither has a notion of runs or foreign events: ``wait_run``, ``history`` and ``take_foreign_events``
keep the base class defaults, so fates of failed calls rest on the witness alone.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import http_exceptions

from ocprobe import __version__, untrusted
from ocprobe.errors import AuthFailed, TargetUnreachable
from ocprobe.models import ChatOutcome
from ocprobe.transports.base import Transport
from ocprobe.transports.relay_format import (
    DEFAULT_OPENAI_MODEL, DEFAULT_RELAY_BODY, DEFAULT_REPLY_PATH, RelayBody, ReplyPathError, extract_reply, parse_reply_path,
)

SESSION_HEADER = "x-openclaw-session-key"
AUTH_STATUSES = (401, 403)
MAX_LINE = 2**20  # an SSE line holds a whole chunk: longer than aiohttp's 64 KiB default
MAX_BODY = 16 * 2**20  # the most of one answer (or of one streamed reply's text) read, after decompression


# -- shared HTTP machinery -------------------------------------------------------------------------
class _Failed(Exception):
    """The exchange ended in an error outcome (the message says why)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Reply:
    """A whole HTTP answer, read: what the error texts and JSON bodies are taken from."""

    status: int
    reason: str
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


async def _read(response: aiohttp.ClientResponse) -> _Reply:
    """The whole answer, up to MAX_BODY bytes as decoded (a 1 MB gzip body may inflate to gigabytes)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise _Failed(f"the answer is over {MAX_BODY // 2**20} MiB (decoded): not read further", code="too_large")
        chunks.append(chunk)
    return _Reply(response.status, response.reason or "", b"".join(chunks))


class HttpTransport(Transport):
    def __init__(self, url: str, token: str | None, *, connect_timeout: float = 10.0) -> None:
        self.url = url
        self._token = token
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=30.0),
                trust_env=False,  # no proxy from the environment: the probe times the gateway, not a proxy
                timeout=aiohttp.ClientTimeout(total=None, connect=self._connect_timeout),
                headers={"User-Agent": f"ocprobe/{__version__}"},
                read_bufsize=MAX_LINE,
            )
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _check(self, method: str, url: str, **kwargs: Any) -> _Reply:
        """One reachability request for ``open``: refused -> TargetUnreachable, 401/403 -> AuthFailed."""
        session = self._ensure_session()
        try:
            async with session.request(method, url, headers=self._headers(), allow_redirects=False,
                                       timeout=aiohttp.ClientTimeout(total=self._connect_timeout), **kwargs) as response:
                reply = await _read(response)
        except asyncio.TimeoutError:
            raise TargetUnreachable(f"{url}: no answer within {self._connect_timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise TargetUnreachable(f"cannot connect to {url}: {_reason(exc)}") from None
        except _Failed as exc:
            raise TargetUnreachable(f"{url}: {exc}") from None
        self._refuse_auth(reply, url)
        return reply

    @staticmethod
    def _refuse_auth(reply: _Reply, url: str) -> None:
        if reply.status in AUTH_STATUSES:
            raise AuthFailed(f"{url}: HTTP {reply.status}, the gateway refused the token ({_error_text(reply)})")

    async def send(self, session_key: str, message: str, idempotency_key: str, timeout: float) -> ChatOutcome:
        session = self._ensure_session()
        started_at, t0 = time.time(), time.perf_counter()
        outcome = ChatOutcome(run_id=idempotency_key, state="error", started_at=started_at)
        partial: list[str] = []  # a streamed reply's pieces, joined once (at the end, or when the call is cut)
        try:
            await asyncio.wait_for(self._exchange(session, outcome, session_key, message, idempotency_key, partial),
                                   timeout)
            outcome.state = "final"
        except aiohttp.ConnectionTimeoutError:
            raise TargetUnreachable(f"cannot connect to {self.url}: timed out") from None
        except asyncio.TimeoutError:
            outcome.state = "timeout"
            outcome.error_message = f"no reply within {timeout:g}s"
        except aiohttp.ClientConnectorError as exc:
            raise TargetUnreachable(f"cannot connect to {self.url}: {_reason(exc)}") from None
        except aiohttp.ClientError as exc:
            outcome.error_message = f"connection error: {_reason(exc)}"
        except _Failed as exc:
            outcome.error_code = exc.code
            outcome.error_message = str(exc)
        except (http_exceptions.HttpProcessingError, UnicodeError, ValueError) as exc:
            # What the client library raises on an answer it cannot parse (a header or SSE line over the
            # limit, a broken chunked body): the gateway's fault, a classified call, not the end of the run.
            outcome.error_code = "bad_body"
            outcome.error_message = f"unreadable answer: {type(exc).__name__}: {_reason(exc)}"
        if partial and not outcome.text:
            outcome.text = "".join(partial)
        outcome.latency_ms = (time.perf_counter() - t0) * 1000.0
        outcome.ended_at = time.time()
        return outcome

    async def _exchange(
        self, session: aiohttp.ClientSession, outcome: ChatOutcome, session_key: str, message: str, idempotency_key: str,
        partial: list[str],
    ) -> None:
        """Fill ``outcome.text`` (or ``partial``, a streamed reply's pieces so far), or raise _Failed; runs under
        the per-call timeout."""
        raise NotImplementedError

    def _http_error(self, reply: _Reply) -> _Failed:
        self._refuse_auth(reply, self.url)
        return _Failed(f"HTTP {reply.status}: {_error_text(reply)}", code=f"http_{reply.status}")


def _error_text(reply: _Reply) -> str:
    """The message of an error body (OpenAI ``{error: {message}}``, relay ``{error: "..."}``), else its start."""
    try:
        body = untrusted.loads(reply.body)
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
        if isinstance(body.get("message"), str):
            return body["message"]
    text = reply.body.decode("utf-8", "replace").strip()
    return text[:200] or reply.reason or "no body"


def _reason(exc: BaseException) -> str:
    seen: BaseException | None = exc
    for _ in range(6):  # the OSError sits on the exception (aiohttp's os_error) or a few causes down
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError) or isinstance(getattr(seen, "os_error", None), ConnectionRefusedError):
            return "connection refused"
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


def _json_body(reply: _Reply, what: str) -> Any:
    try:
        return untrusted.loads(reply.body)
    except (ValueError, RecursionError):
        start = reply.body[:80].decode("utf-8", "replace")
        raise _Failed(f"{what} answered a body that is not JSON: {start!r}", code="bad_body") from None


# -- the relay -------------------------------------------------------------------------------------
class RelayTransport(HttpTransport):
    """``POST URL`` with a JSON body from a template; the reply text sits at a dotted path of the answer."""

    def __init__(
        self, url: str, token: str | None, *, body_template: str = DEFAULT_RELAY_BODY,
        reply_path: str = DEFAULT_REPLY_PATH, connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(url, token, connect_timeout=connect_timeout)
        self.body = RelayBody(body_template)
        self.reply_path = reply_path
        self._segments = parse_reply_path(reply_path)

    async def open(self) -> None:
        # Nothing to handshake. A GET is harmless (a POST would send a turn): any answer means reachable,
        # 401/403 means the token is refused (a relay that checks auth before the method does say so).
        await self._check("GET", self.url)

    async def _exchange(
        self, session: aiohttp.ClientSession, outcome: ChatOutcome, session_key: str, message: str, idempotency_key: str,
        partial: list[str],
    ) -> None:
        content = self.body.render(session_key=session_key, message=message, idempotency_key=idempotency_key)
        headers = {**self._headers(), "Content-Type": "application/json"}
        async with session.post(self.url, data=content.encode(), headers=headers, allow_redirects=False) as response:
            reply = await _read(response)
        if not reply.ok:
            raise self._http_error(reply)
        body = _json_body(reply, "the relay")
        try:
            outcome.text = extract_reply(body, self._segments)
        except ReplyPathError as exc:
            raise _Failed(f"reply path {self.reply_path!r}: {exc}", code="bad_body") from None


# -- OpenAI-compatible chat completions ------------------------------------------------------------
def openai_base_url(url: str) -> str:
    """``http://h:p`` -> ``http://h:p/v1``; ``.../v1/chat/completions`` -> ``.../v1``; ``.../v1`` stays."""
    base = url.rstrip("/")
    if base.endswith("/chat/completions"):
        base = base[: -len("/chat/completions")]
    if not base.partition("://")[2].partition("/")[2]:  # no path at all
        base += "/v1"
    return base


class OpenAITransport(HttpTransport):
    """``POST {base}/chat/completions`` with ``model``, the session in ``x-openclaw-session-key``, a Bearer
    token, streamed (SSE) or not."""

    def __init__(
        self, base_url: str, token: str | None, *, model: str = DEFAULT_OPENAI_MODEL, stream: bool = True,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(openai_base_url(base_url), token, connect_timeout=connect_timeout)
        self.model = model
        self.stream = stream
        self.endpoint = f"{self.url}/chat/completions"

    async def open(self) -> None:
        reply = await self._check("GET", f"{self.url}/models")
        if reply.ok:
            return
        # No model list (the OpenClaw gateway has none): ask the endpoint itself with no user message.
        # Auth is checked first; a gateway then answers 400 without starting a run or calling the LLM.
        reply = await self._check("POST", self.endpoint, json={"model": self.model, "messages": []})
        if reply.status in (404, 405):
            raise TargetUnreachable(
                f"{self.endpoint}: HTTP {reply.status}, no chat completions endpoint there "
                "(on OpenClaw enable gateway.http.endpoints.chatCompletions.enabled)"
            )

    async def _exchange(
        self, session: aiohttp.ClientSession, outcome: ChatOutcome, session_key: str, message: str, idempotency_key: str,
        partial: list[str],
    ) -> None:
        body = {"model": self.model, "messages": [{"role": "user", "content": message}], "stream": self.stream}
        headers = {**self._headers(), SESSION_HEADER: session_key}
        if self.stream:
            headers["Accept"] = "text/event-stream"
        async with session.post(self.endpoint, json=body, headers=headers, allow_redirects=False) as response:
            if not 200 <= response.status < 300:
                raise self._http_error(await _read(response))
            if response.content_type == "text/event-stream":
                await self._read_sse(response, partial)
                return
            reply = await _read(response)  # not streamed (asked so, or the server chose to): one JSON completion
        completion = _json_body(reply, "the chat completions endpoint")
        if isinstance(completion, dict) and "error" in completion:
            raise _Failed(f"error in the completion: {_error_text(reply)}", code="api_error")
        try:
            outcome.text = extract_reply(completion, ("choices", "0", "message", "content"))
        except ReplyPathError as exc:
            raise _Failed(f"not a chat completion: {exc}", code="bad_body") from None

    @staticmethod
    async def _read_sse(response: aiohttp.ClientResponse, pieces: list[str]) -> None:
        """``data: {chunk}`` lines until ``data: [DONE]``; the text is the concatenated ``delta.content``,
        appended to ``pieces`` (joined once by the caller: joining on every chunk is quadratic)."""
        received = 0
        async for raw in response.content:  # one line at a time, its end of line included
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line.startswith("data:"):
                continue  # blank separators, comments, event:/id: fields
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                chunk = untrusted.loads(data)
            except (ValueError, RecursionError):
                raise _Failed(f"a stream chunk is not JSON: {data[:80]!r}", code="bad_body") from None
            if not isinstance(chunk, dict):
                raise _Failed(f"a stream chunk is not an object: {data[:80]!r}", code="bad_body")
            if chunk.get("error") is not None:
                error = chunk["error"]
                text = error.get("message") if isinstance(error, dict) else error
                raise _Failed(f"error in the stream: {text}", code="api_error")
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                piece = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(piece, str) and piece:
                    pieces.append(piece)
                    received += len(piece)
                    if received > MAX_BODY:
                        raise _Failed(f"the streamed reply is over {MAX_BODY // 2**20} MiB: not read further",
                                      code="too_large")
        raise _Failed("the stream ended without data: [DONE]", code="bad_body")

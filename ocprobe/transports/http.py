"""HTTP transports: a JSON relay in front of ``chat.send`` (as the #77485 reporter used) and the gateway's
OpenAI-compatible ``POST /v1/chat/completions``.

Both keep one ``httpx.AsyncClient`` (connection reuse, no proxy from the environment) and turn every
exchange into a ``ChatOutcome``: ``final`` with the reply text, ``error`` for an HTTP error status or a
body that does not hold a reply, ``timeout`` past the per-call timeout. A refused connection ends the run
(``TargetUnreachable``, as a failed WebSocket reconnect does), and so does a refused token
(``AuthFailed``): neither is a measurement of the gateway.

Neither has a notion of runs or foreign events: ``wait_run``, ``history`` and ``take_foreign_events``
keep the base class defaults, so fates of failed calls rest on the witness alone.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from ocprobe import __version__
from ocprobe.errors import AuthFailed, TargetUnreachable
from ocprobe.models import ChatOutcome
from ocprobe.transports.base import Transport
from ocprobe.transports.relay_format import (
    DEFAULT_OPENAI_MODEL, DEFAULT_RELAY_BODY, DEFAULT_REPLY_PATH, RelayBody, ReplyPathError, extract_reply, parse_reply_path,
)

SESSION_HEADER = "x-openclaw-session-key"
AUTH_STATUSES = (401, 403)


# -- shared HTTP machinery -------------------------------------------------------------------------
class _Failed(Exception):
    """The exchange ended in an error outcome (the message says why)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class HttpTransport(Transport):
    def __init__(self, url: str, token: str | None, *, connect_timeout: float = 10.0) -> None:
        self.url = url
        self._token = token
        self._connect_timeout = connect_timeout
        self._client: httpx.AsyncClient | None = None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _ensure_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                trust_env=False,  # no proxy from the environment: the probe times the gateway, not a proxy
                follow_redirects=False,
                timeout=httpx.Timeout(self._connect_timeout, connect=self._connect_timeout),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16, keepalive_expiry=30.0),
                headers={"User-Agent": f"ocprobe/{__version__}"},
            )
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _check(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One reachability request for ``open``: refused -> TargetUnreachable, 401/403 -> AuthFailed."""
        client = self._ensure_client()
        try:
            response = await client.request(method, url, headers=self._headers(), timeout=self._connect_timeout, **kwargs)
        except httpx.TimeoutException:
            raise TargetUnreachable(f"{url}: no answer within {self._connect_timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise TargetUnreachable(f"cannot connect to {url}: {_reason(exc)}") from None
        self._refuse_auth(response, url)
        return response

    @staticmethod
    def _refuse_auth(response: httpx.Response, url: str) -> None:
        if response.status_code in AUTH_STATUSES:
            raise AuthFailed(f"{url}: HTTP {response.status_code}, the gateway refused the token ({_error_text(response)})")

    async def send(self, session_key: str, message: str, idempotency_key: str, timeout: float) -> ChatOutcome:
        client = self._ensure_client()
        started_at, t0 = time.time(), time.perf_counter()
        outcome = ChatOutcome(run_id=idempotency_key, state="error", started_at=started_at)
        try:
            await asyncio.wait_for(self._exchange(client, outcome, session_key, message, idempotency_key, timeout), timeout)
            outcome.state = "final"
        except (asyncio.TimeoutError, httpx.TimeoutException) as exc:
            if isinstance(exc, httpx.ConnectTimeout):
                raise TargetUnreachable(f"cannot connect to {self.url}: timed out") from None
            outcome.state = "timeout"
            outcome.error_message = f"no reply within {timeout:g}s"
        except httpx.ConnectError as exc:
            raise TargetUnreachable(f"cannot connect to {self.url}: {_reason(exc)}") from None
        except httpx.HTTPError as exc:
            outcome.error_message = f"connection error: {_reason(exc)}"
        except _Failed as exc:
            outcome.error_code = exc.code
            outcome.error_message = str(exc)
        outcome.latency_ms = (time.perf_counter() - t0) * 1000.0
        outcome.ended_at = time.time()
        return outcome

    async def _exchange(
        self, client: httpx.AsyncClient, outcome: ChatOutcome, session_key: str, message: str, idempotency_key: str,
        timeout: float,
    ) -> None:
        """Fill ``outcome.text``, or raise _Failed; runs under the per-call timeout."""
        raise NotImplementedError

    def _http_error(self, response: httpx.Response) -> _Failed:
        self._refuse_auth(response, self.url)
        return _Failed(f"HTTP {response.status_code}: {_error_text(response)}", code=f"http_{response.status_code}")


def _error_text(response: httpx.Response) -> str:
    """The message of an error body (OpenAI ``{error: {message}}``, relay ``{error: "..."}``), else its start."""
    try:
        body = response.json()
    except (ValueError, httpx.ResponseNotRead):
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
        if isinstance(body.get("message"), str):
            return body["message"]
    try:
        text = response.text.strip()
    except httpx.ResponseNotRead:
        text = ""
    return text[:200] or response.reason_phrase or "no body"


def _reason(exc: BaseException) -> str:
    seen: BaseException | None = exc
    for _ in range(6):  # the OSError sits a few causes down (httpx -> httpcore -> OSError)
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError) or "connection refused" in str(seen).lower():
            return "connection refused"
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, httpx.ConnectError) and "all connection attempts failed" in str(exc).lower():
        return "connection refused"
    return str(exc) or type(exc).__name__


def _json_body(response: httpx.Response, what: str) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        start = response.content[:80].decode("utf-8", "replace")
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
        self, client: httpx.AsyncClient, outcome: ChatOutcome, session_key: str, message: str, idempotency_key: str,
        timeout: float,
    ) -> None:
        content = self.body.render(session_key=session_key, message=message, idempotency_key=idempotency_key)
        headers = {**self._headers(), "Content-Type": "application/json"}
        response = await client.post(self.url, content=content.encode(), headers=headers, timeout=timeout)
        if not response.is_success:
            raise self._http_error(response)
        body = _json_body(response, "the relay")
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
        response = await self._check("GET", f"{self.url}/models")
        if response.is_success:
            return
        # No model list (the OpenClaw gateway has none): ask the endpoint itself with no user message.
        # Auth is checked first; a gateway then answers 400 without starting a run or calling the LLM.
        response = await self._check("POST", self.endpoint, json={"model": self.model, "messages": []})
        if response.status_code in (404, 405):
            raise TargetUnreachable(
                f"{self.endpoint}: HTTP {response.status_code}, no chat completions endpoint there "
                "(on OpenClaw enable gateway.http.endpoints.chatCompletions.enabled)"
            )

    async def _exchange(
        self, client: httpx.AsyncClient, outcome: ChatOutcome, session_key: str, message: str, idempotency_key: str,
        timeout: float,
    ) -> None:
        body = {"model": self.model, "messages": [{"role": "user", "content": message}], "stream": self.stream}
        headers = {**self._headers(), SESSION_HEADER: session_key}
        if self.stream:
            headers["Accept"] = "text/event-stream"
        async with client.stream("POST", self.endpoint, json=body, headers=headers, timeout=timeout) as response:
            if not response.is_success:
                await response.aread()
                raise self._http_error(response)
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                await self._read_sse(response, outcome)
                return
            await response.aread()  # not streamed (asked so, or the server chose to): one JSON completion
        completion = _json_body(response, "the chat completions endpoint")
        if isinstance(completion, dict) and "error" in completion:
            raise _Failed(f"error in the completion: {_error_text(response)}", code="api_error")
        try:
            outcome.text = extract_reply(completion, ("choices", "0", "message", "content"))
        except ReplyPathError as exc:
            raise _Failed(f"not a chat completion: {exc}", code="bad_body") from None

    @staticmethod
    async def _read_sse(response: httpx.Response, outcome: ChatOutcome) -> None:
        """``data: {chunk}`` lines until ``data: [DONE]``; the text is the concatenated ``delta.content``."""
        pieces: list[str] = []
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, comments, event:/id: fields
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                chunk = json.loads(data)
            except ValueError:
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
                    outcome.text = "".join(pieces)  # kept so far, should the timeout strike
        raise _Failed("the stream ended without data: [DONE]", code="bad_body")

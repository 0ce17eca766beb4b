"""The reference provider, exercised over loopback with a real HTTP client."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from ocprobe.reference.provider import ReferenceProvider

LATENCY_MS = 30.0

Check = Callable[[ReferenceProvider, httpx.AsyncClient], Awaitable[None]]


def run(check: Check, **provider_args: Any) -> None:
    """Start a provider, hand it and a client to ``check``, and always stop it."""

    async def main() -> None:
        provider_args.setdefault("latency_ms", LATENCY_MS)
        async with ReferenceProvider(**provider_args) as provider:
            async with httpx.AsyncClient(base_url=provider.base_url, timeout=5.0) as client:
                await check(provider, client)

    asyncio.run(main())


def chat_body(*messages: tuple[str, Any], stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "model": "m1",
        "messages": [{"role": role, "content": content} for role, content in messages],
        "stream": stream,
        **extra,
    }


async def stream_chunks(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The SSE ``data:`` chunks of a streamed completion, and whether ``[DONE]`` ended the stream."""
    chunks: list[dict[str, Any]] = []
    done = False
    async with client.stream("POST", "/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            if data == "[DONE]":
                done = True
            else:
                assert not done, "chunk after [DONE]"
                chunks.append(json.loads(data))
    return chunks, done


async def reply_text(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await client.post("/chat/completions", json=body)
    assert response.status_code == 200
    return str(response.json()["choices"][0]["message"]["content"])


def test_base_url_and_port() -> None:
    async def check(provider: ReferenceProvider, client: httpx.AsyncClient) -> None:
        assert provider.port > 0
        assert provider.base_url == f"http://127.0.0.1:{provider.port}/v1"

    run(check)


def test_serves_on_a_socket_bound_before_it_starts() -> None:
    # An embedded run hands the socket's URL to the gateway child before the provider has started.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    port = sock.getsockname()[1]

    async def check(provider: ReferenceProvider, client: httpx.AsyncClient) -> None:
        assert provider.port == port
        assert await reply_text(client, chat_body(("user", "ok-1-abc"))) == "ok-1-abc"

    run(check, sock=sock)
    assert sock.fileno() == -1  # stopping the provider closed it


def test_refuses_a_socket_that_is_not_on_loopback() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.2", 0))  # loopback still, but not the one address allowed
    try:
        with pytest.raises(ValueError, match="127.0.0.1 only, not .127.0.0.2."):
            ReferenceProvider(sock=sock)
    finally:
        sock.close()


def test_streaming_sse() -> None:
    async def check(provider: ReferenceProvider, client: httpx.AsyncClient) -> None:
        body = chat_body(("user", "reply with ok-3-7f3a9c"), stream=True, stream_options={"include_usage": True})
        chunks, done = await stream_chunks(client, body)
        assert done
        assert all(c["object"] == "chat.completion.chunk" and c["id"].startswith("chatcmpl-") for c in chunks)
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        assert text == "ok-3-7f3a9c"
        content_chunks = [c for c in chunks[1:] if c["choices"] and c["choices"][0]["delta"].get("content")]
        assert len(content_chunks) == 2
        finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
        assert finishes[-1] == "stop"
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
        assert provider.requests[0].stream is True

    run(check)


def test_non_stream() -> None:
    async def check(provider: ReferenceProvider, client: httpx.AsyncClient) -> None:
        response = await client.post("/chat/completions", json=chat_body(("user", "ok-1-abc")))
        payload = response.json()
        assert payload["object"] == "chat.completion"
        assert payload["model"] == "m1"
        assert payload["choices"][0]["message"] == {"role": "assistant", "content": "ok-1-abc"}
        assert payload["choices"][0]["finish_reason"] == "stop"
        assert "total_tokens" in payload["usage"]
        assert await reply_text(client, chat_body(("user", "hello"))) == "pong"
        assert [(r.seq, r.nonces, r.model, r.stream) for r in provider.requests] == [
            (1, ("ok-1-abc",), "m1", False),
            (2, (), "m1", False),
        ]

    run(check)


def test_nonce_in_content_parts_and_after_timestamp_prefix() -> None:
    async def check(provider: ReferenceProvider, client: httpx.AsyncClient) -> None:
        parts = [{"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "say ok-2-p4rt5"}]
        assert await reply_text(client, chat_body(("user", parts))) == "ok-2-p4rt5"
        stamped = "[Tue 2026-11-24 15:21 UTC] ok-5-a1b2c3"
        assert await reply_text(client, chat_body(("user", stamped))) == "ok-5-a1b2c3"
        assert [(r.seq, r.nonces) for r in provider.requests] == [(1, ("ok-2-p4rt5",)), (2, ("ok-5-a1b2c3",))]

    run(check)


def test_only_user_messages_after_last_assistant_count() -> None:
    async def check(provider: ReferenceProvider, client: httpx.AsyncClient) -> None:
        body = chat_body(
            ("system", "ok-0-sys"),
            ("user", "ok-1-old"),
            ("assistant", "ok-1-old"),
            ("user", "ok-2-new"),
            ("user", "runtime context: nothing here"),
        )
        assert await reply_text(client, body) == "ok-2-new"
        assert [r.nonces for r in provider.requests] == [("ok-2-new",)]  # only the last user turn counts

    run(check)


def test_witness_time_and_latency() -> None:
    async def check(provider: ReferenceProvider, client: httpx.AsyncClient) -> None:
        sent_at = time.time()
        started = time.monotonic()
        await reply_text(client, chat_body(("user", "ok-4-t1me")))
        elapsed_ms = (time.monotonic() - started) * 1000.0
        done_at = time.time()
        assert elapsed_ms >= LATENCY_MS
        (witnessed,) = provider.requests
        # Recorded on arrival, not on reply: at least the latency before the response completed.
        assert sent_at <= witnessed.at <= done_at - LATENCY_MS / 1000.0 + 0.005

    run(check, jitter_ms=10.0, seed=1)


def test_models() -> None:
    async def check(provider: ReferenceProvider, client: httpx.AsyncClient) -> None:
        response = await client.get("/models")
        assert response.json() == {
            "object": "list",
            "data": [{"id": "mock-model", "object": "model", "owned_by": "ocprobe"}],
        }

    run(check)


def test_bad_requests_are_400_and_not_witnessed() -> None:
    async def check(provider: ReferenceProvider, client: httpx.AsyncClient) -> None:
        bad_json = await client.post(
            "/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        no_messages = await client.post("/chat/completions", json={"model": "m1"})
        for response in (bad_json, no_messages):
            assert response.status_code == 400
            assert response.json()["error"]["type"] == "invalid_request_error"
            assert response.json()["error"]["message"]
        assert len(provider.requests) == 0

    run(check)


def test_api_key() -> None:
    async def check(provider: ReferenceProvider, client: httpx.AsyncClient) -> None:
        body = chat_body(("user", "ok-6-k3y"))
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            refused = await client.post("/chat/completions", json=body, headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error"]["message"]
            assert (await client.get("/ocprobe/witness", headers=headers)).status_code == 401
        assert len(provider.requests) == 0
        client.headers["Authorization"] = "Bearer s3cret"
        assert await reply_text(client, body) == "ok-6-k3y"
        assert (await client.get("/ocprobe/witness")).status_code == 200

    run(check, api_key="s3cret")


def test_witness_endpoint() -> None:
    async def check(provider: ReferenceProvider, client: httpx.AsyncClient) -> None:
        assert (await client.get("/ocprobe/witness")).json() == {"requests": []}
        await reply_text(client, chat_body(("user", "ok-7-a ok-7-b")))
        records = (await client.get("/ocprobe/witness")).json()["requests"]
        (record,) = provider.requests
        assert records == [
            {"seq": 1, "at": record.at, "nonces": ["ok-7-a", "ok-7-b"], "model": "m1", "stream": False}
        ]

    run(check)


def test_stop_is_idempotent() -> None:
    async def main() -> None:
        provider = ReferenceProvider(latency_ms=LATENCY_MS)
        await provider.start()
        await provider.stop()
        await provider.stop()

    asyncio.run(main())

"""The relay and OpenAI transports end to end against the reference gateway and provider on loopback, and
small loopback servers that answer what a real one should not."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from ocprobe.errors import AuthFailed, TargetUnreachable, UsageError
from ocprobe.reference.gateway import GatewayConfig, GatewayLog, ReferenceGateway
from ocprobe.reference.provider import ReferenceProvider
from ocprobe.transports.http import OpenAITransport, RelayTransport, openai_base_url

TOKEN = "h" * 48
# The queued send's empty final (300 ms) comes after the teardown (50 ms): the next send finds the session idle.
RACE = {"profile": "reply-run-race", "teardown_ms": 50}


@asynccontextmanager
async def reference(tmp_path: Path, latency_ms: float = 40, **config: Any) -> AsyncIterator[tuple[ReferenceGateway, ReferenceProvider, io.StringIO]]:
    stderr = io.StringIO()
    async with ReferenceProvider(latency_ms=latency_ms, api_key="sk-t") as provider:
        cfg = GatewayConfig(token=TOKEN, provider_url=provider.base_url, provider_api_key="sk-t", **config)
        gateway = ReferenceGateway(cfg, log=GatewayLog(tmp_path / "gw.log", stderr))
        await gateway.start()
        try:
            yield gateway, provider, stderr
        finally:
            await gateway.stop()


def http_url(gateway: ReferenceGateway) -> str:
    return f"http://127.0.0.1:{gateway.port}"


@asynccontextmanager
async def scripted(routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]) -> AsyncIterator[str]:
    """A loopback HTTP server whose answers a test scripts (``"POST /path": handler``)."""
    app = web.Application()
    for route, handler in routes.items():
        method, path = route.split(" ", 1)
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# -- the relay -------------------------------------------------------------------------------------
def test_relay_healthy_every_reply_is_real(tmp_path: Path) -> None:
    async def main() -> None:
        async with reference(tmp_path) as (gateway, provider, _):
            transport = RelayTransport(f"{http_url(gateway)}/chat.send", TOKEN)
            await transport.open()
            outcomes = [await transport.send("agent:test:main", f"say ok-{i}-rel", f"k{i}", timeout=5) for i in range(1, 5)]
            assert [o.state for o in outcomes] == ["final"] * 4
            assert [o.text for o in outcomes] == [f"ok-{i}-rel" for i in range(1, 5)]
            assert all(40 <= o.latency_ms < 2000 and o.started_at <= o.ended_at for o in outcomes)
            assert len(provider.requests) == 4
            assert transport.take_foreign_events() == [] and await transport.history("agent:test:main") == []
            await transport.close()
            await transport.close()  # idempotent

    asyncio.run(main())


def test_relay_reply_run_race_alternates_like_ws(tmp_path: Path) -> None:
    async def main() -> None:
        async with reference(tmp_path, **RACE) as (gateway, provider, stderr):
            transport = RelayTransport(f"{http_url(gateway)}/chat.send", TOKEN)
            await transport.open()
            outcomes = [await transport.send("s", f"say ok-{i}-race", f"k{i}", timeout=5) for i in range(1, 7)]
            await transport.close()
            assert [o.state for o in outcomes] == ["final"] * 6
            assert [o.text for o in outcomes] == ["ok-1-race", "", "ok-3-race", "", "ok-5-race", ""]
            assert all(o.latency_ms >= 250 for o in outcomes[1::2])  # the queued send's empty final
            late = {f"ok-{i}-race" for i in (2, 4, 6)}
            for _ in range(100):  # the queued turns run late, through the drain
                if late <= {n for r in provider.requests for n in r.nonces}:
                    break
                await asyncio.sleep(0.05)
            assert late <= {n for r in provider.requests for n in r.nonces}

    asyncio.run(main())


def test_relay_template_fields_reach_the_relay_escaped() -> None:
    seen: list[Any] = []

    async def echo(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append((body, request.headers.get("Authorization")))
        return web.json_response({"data": {"items": [{"text": body["input"]["text"]}]}})

    async def main() -> None:
        async with scripted({"POST /relay": echo}) as base:
            template = '{"input": {"text": {message}, "key": "s={session_key}"}, "id": {idempotency_key}, "n": 1}'
            transport = RelayTransport(f"{base}/relay", TOKEN, body_template=template, reply_path="data.items.0.text")
            await transport.open()  # GET: 405 from this server, still reachable
            message = 'he said "hi"\\ \n ok-1-x é'
            outcome = await transport.send('agent:"q"', message, "id-1", timeout=5)
            await transport.close()
            assert outcome.state == "final" and outcome.text == message
            body, auth = seen[0]
            assert body == {"input": {"text": message, "key": 's=agent:"q"'}, "id": "id-1", "n": 1}
            assert auth == f"Bearer {TOKEN}"

    asyncio.run(main())


@pytest.mark.parametrize(
    ("template", "needle"),
    [
        ('{"sessionKey": {session_key}}', "must contain {message}"),
        ('{"message": {message}', "not JSON once filled in"),
        ('{"message": {message}, "x": {other}}', "not JSON once filled in"),
        ("message={message}", "not JSON once filled in"),
    ],
)
def test_bad_relay_template_is_a_usage_error(template: str, needle: str) -> None:
    with pytest.raises(UsageError, match="relay body template") as info:
        RelayTransport("http://127.0.0.1:9/x", TOKEN, body_template=template)
    assert needle in str(info.value)


@pytest.mark.parametrize("path", ["", "a..b", ".reply", "reply."])
def test_malformed_reply_path_is_a_usage_error(path: str) -> None:
    with pytest.raises(UsageError, match="bad reply path"):
        RelayTransport("http://127.0.0.1:9/x", TOKEN, reply_path=path)


def test_relay_missing_reply_key_is_an_error_outcome(tmp_path: Path) -> None:
    async def main() -> None:
        async with reference(tmp_path) as (gateway, _, _):
            transport = RelayTransport(f"{http_url(gateway)}/chat.send", TOKEN, reply_path="data.text")
            await transport.open()
            outcome = await transport.send("s", "say ok-1-p", "k1", timeout=5)
            await transport.close()
            assert outcome.state == "error" and outcome.error_code == "bad_body"
            assert outcome.error_message and "reply path 'data.text': no key 'data' at the top level" in outcome.error_message

    asyncio.run(main())


def test_relay_http_errors_and_bad_bodies_are_error_outcomes() -> None:
    async def not_json(request: web.Request) -> web.Response:
        return web.Response(text="<html>oops</html>")

    async def server_error(request: web.Request) -> web.Response:
        return web.json_response({"ok": False, "error": "relay exploded"}, status=502)

    async def main() -> None:
        async with scripted({"POST /html": not_json, "POST /boom": server_error}) as base:
            html = RelayTransport(f"{base}/html", TOKEN)
            outcome = await html.send("s", "m", "k", timeout=5)
            assert outcome.state == "error" and outcome.error_code == "bad_body" and "not JSON" in (outcome.error_message or "")
            boom = RelayTransport(f"{base}/boom", TOKEN)
            outcome = await boom.send("s", "m", "k", timeout=5)
            assert outcome.state == "error" and outcome.error_code == "http_502"
            assert outcome.error_message == "HTTP 502: relay exploded" and outcome.latency_ms > 0
            await html.close()
            await boom.close()

    asyncio.run(main())


def test_relay_wrong_token_is_auth_failed(tmp_path: Path) -> None:
    async def main() -> None:
        async with reference(tmp_path) as (gateway, provider, _):
            transport = RelayTransport(f"{http_url(gateway)}/chat.send", "wrong" * 10)
            await transport.open()  # the reference relay answers a GET with 405 before checking auth
            with pytest.raises(AuthFailed, match="HTTP 401, the gateway refused the token"):
                await transport.send("s", "say ok-1-a", "k1", timeout=5)
            await transport.close()
            assert len(provider.requests) == 0

    asyncio.run(main())


def test_relay_timeout(tmp_path: Path) -> None:
    async def main() -> None:
        async with reference(tmp_path, latency_ms=700) as (gateway, _, _):
            transport = RelayTransport(f"{http_url(gateway)}/chat.send", TOKEN)
            await transport.open()
            outcome = await transport.send("s", "say ok-1-t", "k1", timeout=0.3)
            assert outcome.state == "timeout" and 300 <= outcome.latency_ms < 650
            assert outcome.error_message == "no reply within 0.3s"
            await transport.close()
            for _ in range(40):  # let the turn end, or stopping waits for the relay handler
                if all(run.done.is_set() for run in gateway.runs.values()):
                    break
                await asyncio.sleep(0.05)

    asyncio.run(main())


@pytest.mark.parametrize("cls", [RelayTransport, OpenAITransport])
def test_refused_connection_is_unreachable(cls: type) -> None:
    async def main() -> None:
        transport = cls("http://127.0.0.1:9/chat.send" if cls is RelayTransport else "http://127.0.0.1:9/v1", TOKEN)
        with pytest.raises(TargetUnreachable, match=r"cannot connect to http://127\.0\.0\.1:9/.*: connection refused"):
            await transport.open()
        with pytest.raises(TargetUnreachable, match="connection refused"):
            await transport.send("s", "m", "k", timeout=2)
        await transport.close()

    asyncio.run(main())


def test_relay_gateway_gone_mid_run_is_unreachable(tmp_path: Path) -> None:
    async def main() -> None:
        async with reference(tmp_path) as (gateway, _, _):
            transport = RelayTransport(f"{http_url(gateway)}/chat.send", TOKEN)
            await transport.open()
            assert (await transport.send("s", "say ok-1-g", "k1", timeout=5)).state == "final"
        with pytest.raises(TargetUnreachable, match="connection refused"):
            await transport.send("s", "say ok-2-g", "k2", timeout=5)
        await transport.close()

    asyncio.run(main())


# -- OpenAI chat completions -----------------------------------------------------------------------
@pytest.mark.parametrize("stream", [True, False])
def test_openai_healthy_every_reply_is_real_and_the_session_keeps_history(tmp_path: Path, stream: bool) -> None:
    async def main() -> None:
        async with reference(tmp_path) as (gateway, provider, _):
            transport = OpenAITransport(f"{http_url(gateway)}/v1", TOKEN, stream=stream)
            await transport.open()
            outcomes = [await transport.send("agent:test:oa", f"say ok-{i}-oa", f"k{i}", timeout=5) for i in range(1, 4)]
            await transport.close()
            assert [(o.state, o.text) for o in outcomes] == [("final", f"ok-{i}-oa") for i in range(1, 4)]
            assert all(o.latency_ms >= 40 for o in outcomes)
            history = gateway.sessions["agent:test:oa"].history
            assert [m["role"] for m in history] == ["user", "assistant"] * 3
            assert [r.stream for r in provider.requests] == [True] * 3  # the gateway streams from its provider

    asyncio.run(main())


def test_openai_reply_run_race_stays_real(tmp_path: Path) -> None:
    """The OpenAI endpoint does not go through the chat.send queue: the race never shows through it."""

    async def main() -> None:
        async with reference(tmp_path, **RACE) as (gateway, provider, stderr):
            transport = OpenAITransport(http_url(gateway), TOKEN)
            await transport.open()
            outcomes = [await transport.send("s", f"say ok-{i}-race", f"k{i}", timeout=5) for i in range(1, 7)]
            await transport.close()
            assert [o.text for o in outcomes] == [f"ok-{i}-race" for i in range(1, 7)]
            assert len(provider.requests) == 6 and stderr.getvalue() == ""

    asyncio.run(main())


def test_openai_endpoint_of_the_reference_gateway(tmp_path: Path) -> None:
    """Shapes of the real gateway's endpoint: 401 OpenAI-style, 400 without a user message, session header."""

    async def main() -> None:
        async with reference(tmp_path) as (gateway, provider, _):
            url = f"{http_url(gateway)}/v1/chat/completions"
            body = {"model": "openclaw", "messages": [{"role": "user", "content": "say ok-1-r"}]}
            async with httpx.AsyncClient(trust_env=False) as client:
                denied = await client.post(url, json=body, headers={"Authorization": "Bearer nope"})
                assert denied.status_code == 401 and denied.json() == {"error": {"message": "Unauthorized", "type": "unauthorized"}}
                empty = await client.post(url, json={"messages": []}, headers={"Authorization": f"Bearer {TOKEN}"})
                assert empty.status_code == 400 and "Missing user message" in empty.json()["error"]["message"]
                ok = await client.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}", "x-openclaw-session-key": "Room"})
                assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "ok-1-r"
                assert ok.json()["id"].startswith("chatcmpl_") and ok.json()["model"] == "openclaw"
            assert list(gateway.sessions) == ["agent:main:room"] and len(provider.requests) == 1

    asyncio.run(main())


def test_openai_wrong_token_fails_open_without_an_llm_call(tmp_path: Path) -> None:
    async def main() -> None:
        async with reference(tmp_path) as (gateway, provider, _):
            with pytest.raises(AuthFailed, match="HTTP 401, the gateway refused the token \\(Unauthorized\\)"):
                await OpenAITransport(f"{http_url(gateway)}/v1", "bad" * 16).open()
            assert len(provider.requests) == 0

    asyncio.run(main())


def test_openai_against_the_reference_provider_uses_its_model_list() -> None:
    """Any OpenAI-compatible server: the provider has GET /v1/models, answers SSE in several chunks."""

    async def main() -> None:
        async with ReferenceProvider(latency_ms=10, api_key="sk-p") as provider:
            transport = OpenAITransport(f"{provider.base_url}/chat/completions", "sk-p", model="m")
            await transport.open()
            outcome = await transport.send("s", "say ok-7-prov", "k", timeout=5)
            await transport.close()
            assert outcome.state == "final" and outcome.text == "ok-7-prov"
            assert provider.requests[0].model == "m" and provider.requests[0].stream is True
            with pytest.raises(AuthFailed, match="Incorrect API key"):
                await OpenAITransport(provider.base_url, "sk-wrong").open()

    asyncio.run(main())


def test_openai_missing_endpoint_fails_open() -> None:
    async def models(request: web.Request) -> web.Response:
        return web.Response(status=404)

    async def main() -> None:
        async with scripted({"GET /nothing": models}) as base:
            with pytest.raises(TargetUnreachable, match="no chat completions endpoint there"):
                await OpenAITransport(base, TOKEN).open()

    asyncio.run(main())


def sse(lines: list[bytes]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A handler answering with these SSE lines, then the end of the stream."""
    async def completions(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for line in lines:
            await response.write(line)
        await response.write_eof()
        return response

    return completions


def test_openai_bad_streams_and_bodies_are_error_outcomes() -> None:
    chunk = b'data: {"choices": [{"delta": {"content": "part"}}]}\n\n'
    cut = sse([chunk])
    garbage = sse([chunk, b"data: {nope\n\n"])
    in_band_error = sse([b'data: {"error": {"message": "model overloaded"}}\n\n'])

    async def no_choices(request: web.Request) -> web.Response:
        return web.json_response({"id": "x", "object": "chat.completion"})

    async def server_error(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "internal error", "type": "api_error"}}, status=500)

    async def main() -> None:
        routes = {f"POST /{name}/v1/chat/completions": handler for name, handler in
                  (("cut", cut), ("garbage", garbage), ("inband", in_band_error), ("nochoices", no_choices), ("boom", server_error))}
        async with scripted(routes) as base:
            expected = {
                "cut": ("bad_body", "the stream ended without data: [DONE]", "part"),
                "garbage": ("bad_body", "a stream chunk is not JSON", "part"),
                "inband": ("api_error", "error in the stream: model overloaded", ""),
                "nochoices": ("bad_body", "not a chat completion: no key 'choices'", ""),
                "boom": ("http_500", "HTTP 500: internal error", ""),
            }
            for name, (code, message, text) in expected.items():
                transport = OpenAITransport(f"{base}/{name}/v1", TOKEN)
                outcome = await transport.send("s", "m", "k", timeout=5)
                await transport.close()
                assert (outcome.state, outcome.error_code, outcome.text) == ("error", code, text), name
                assert message in (outcome.error_message or ""), (name, outcome.error_message)

    asyncio.run(main())


def test_openai_timeout_keeps_the_text_so_far() -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices": [{"delta": {"content": "half"}}]}\n\n')
        await asyncio.sleep(0.7)
        return response

    async def main() -> None:
        async with scripted({"POST /v1/chat/completions": slow}) as base:
            transport = OpenAITransport(base, TOKEN)
            outcome = await transport.send("s", "m", "k", timeout=0.3)
            await transport.close()
            assert outcome.state == "timeout" and outcome.text == "half" and 300 <= outcome.latency_ms < 1500

    asyncio.run(main())


def test_connections_are_reused(tmp_path: Path) -> None:
    peers: set[Any] = set()

    async def relay(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        return web.json_response({"reply": "ok"})

    async def main() -> None:
        async with scripted({"POST /r": relay}) as base:
            transport = RelayTransport(f"{base}/r", TOKEN)
            for i in range(5):
                assert (await transport.send("s", "m", f"k{i}", timeout=5)).text == "ok"
            await transport.close()
        assert len(peers) == 1

    asyncio.run(main())


@pytest.mark.parametrize(("url", "base"), [
    ("http://h:1", "http://h:1/v1"),
    ("http://h:1/", "http://h:1/v1"),
    ("http://h:1/v1", "http://h:1/v1"),
    ("http://h:1/v1/chat/completions", "http://h:1/v1"),
    ("https://h/api/v1/", "https://h/api/v1"),
])
def test_openai_base_url(url: str, base: str) -> None:
    assert openai_base_url(url) == base

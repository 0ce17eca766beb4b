"""The WebSocket transport against the reference gateway and small loopback servers that misbehave."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ocprobe.errors import AuthFailed, ProtocolError, TargetUnreachable
from ocprobe.reference.gateway import GatewayConfig, GatewayLog, ReferenceGateway
from ocprobe.reference.provider import ReferenceProvider
from ocprobe.transports import ws as ws_transport
from ocprobe.transports.ws import OpenClawWsTransport

TOKEN = "k" * 48


@asynccontextmanager
async def reference(tmp_path: Path, **config: Any) -> AsyncIterator[ReferenceGateway]:
    async with ReferenceProvider(latency_ms=40, api_key="sk-t") as provider:
        cfg = GatewayConfig(token=TOKEN, provider_url=provider.base_url, provider_api_key="sk-t", **config)
        gateway = ReferenceGateway(cfg, log=GatewayLog(tmp_path / "gw.log", io.StringIO()))
        await gateway.start()
        try:
            yield gateway
        finally:
            await gateway.stop()


@asynccontextmanager
async def fake_gateway(handler: Callable[[web.WebSocketResponse], Awaitable[None]]) -> AsyncIterator[str]:
    """A loopback WebSocket server whose behaviour a test scripts frame by frame."""

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await handler(ws)
        return ws

    app = web.Application()
    app.router.add_get("/", ws_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"ws://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def hello(ws: web.WebSocketResponse, connect_reply: dict[str, Any] | None = None) -> dict[str, Any]:
    await ws.send_json({"type": "event", "event": "connect.challenge", "payload": {"nonce": "n", "ts": 1}})
    req = json.loads((await ws.receive()).data)
    await ws.send_json(connect_reply or {"type": "res", "id": req["id"], "ok": True,
                                         "payload": {"type": "hello-ok", "server": {"version": "fake/1"}}})
    return req


# What a scripted gateway does with one chat.send (already acknowledged as started): its runId and message.
ChatScript = Callable[[web.WebSocketResponse, str, str], Awaitable[None]]


def chat_gateway(script: ChatScript, hello_payload: dict[str, Any] | None = None,
                 ack: dict[str, Any] | None = None) -> Callable[[web.WebSocketResponse], Awaitable[None]]:
    """A loopback gateway handler: the handshake (with ``hello_payload``), an empty chat.history, and each
    chat.send acknowledged (``ack``, default started) and then answered by ``script``."""
    async def handler(ws: web.WebSocketResponse) -> None:
        await hello(ws, None if hello_payload is None else {"type": "res", "id": "connect", "ok": True,
                                                            "payload": hello_payload})
        async for msg in ws:
            req = json.loads(msg.data)
            if req.get("method") != "chat.send":  # chat.history: no earlier turns
                await ws.send_json({"type": "res", "id": req["id"], "ok": True, "payload": {"messages": []}})
                continue
            run_id = req["params"]["idempotencyKey"]
            await ws.send_json({"type": "res", "id": req["id"], "ok": True,
                                "payload": {"runId": run_id, **(ack or {"status": "started"})}})
            await script(ws, run_id, req["params"]["message"])

    return handler


async def final(ws: web.WebSocketResponse, run_id: str, text: str) -> None:
    await ws.send_json({"type": "event", "event": "chat", "payload": {
        "runId": run_id, "sessionKey": "s", "state": "final", "message": {"content": [{"type": "text", "text": text}]}}})


def send_once(handler: Callable[[web.WebSocketResponse], Awaitable[None]], message: str = "m",
              timeout: float = 5) -> Any:
    """The outcome of one chat.send through the WebSocket transport against a scripted gateway."""
    async def main() -> Any:
        async with fake_gateway(handler) as url:
            transport = OpenClawWsTransport(url, TOKEN)
            await transport.open()
            try:
                return await transport.send("s", message, "k1", timeout=timeout)
            finally:
                await transport.close()

    return asyncio.run(main())


async def run_engine(handler: Callable[[web.WebSocketResponse], Awaitable[None]], cfg: Any, observer: Any) -> Any:
    """One probe (``cfg``) through the WebSocket transport against a scripted gateway, no witness."""
    from ocprobe.engine import ProbeEngine
    from ocprobe.logwatch import LogWatcher
    from ocprobe.models import TargetInfo

    logs = LogWatcher()
    await logs.start()
    try:
        async with fake_gateway(handler) as url:
            transport = OpenClawWsTransport(url, TOKEN)
            await transport.open()
            try:
                return await ProbeEngine(transport, TargetInfo(target=url), witness=None, logs=logs,
                                         observer=observer).run(cfg)
            finally:
                await transport.close()
    finally:
        await logs.stop()


def test_send_gets_the_final_and_server_version(tmp_path: Path) -> None:
    async def main() -> None:
        async with reference(tmp_path) as gateway:
            transport = OpenClawWsTransport(gateway.url, TOKEN)
            await transport.open()
            assert transport.server_version and transport.server_version.startswith("ocprobe-reference/")
            outcome = await transport.send("agent:test:main", "say ok-1-abc", "run-1", timeout=5)
            assert outcome.state == "final" and outcome.text == "ok-1-abc" and outcome.ack_status == "started"
            assert 40 <= outcome.latency_ms < 2000 and outcome.ended_at >= outcome.started_at
            await transport.wait_run("run-1", timeout=2)
            history = await transport.history("agent:test:main")
            assert [m["role"] for m in history] == ["user", "assistant"]
            await transport.close()
            await transport.close()  # idempotent

    asyncio.run(main())


def test_late_finals_of_other_runs_are_collected(tmp_path: Path) -> None:
    async def main() -> None:
        async with reference(tmp_path, profile="reply-run-race", teardown_ms=100, debounce_ms=50, queued_ack_ms=20) as gateway:
            transport = OpenClawWsTransport(gateway.url, TOKEN)
            await transport.open()
            await transport.send("s", "ok-1-x", "a", timeout=5)
            queued = await transport.send("s", "ok-2-x", "b", timeout=5)
            assert queued.state == "final" and queued.text == ""
            for _ in range(100):
                events = transport.take_foreign_events()
                if events:
                    break
                await asyncio.sleep(0.05)
            assert events[0].text == "ok-2-x" and events[0].state == "final" and events[0].run_id not in ("a", "b")
            await transport.close()

    asyncio.run(main())


@pytest.mark.parametrize(("token", "needle"), [("wrong" * 10, "AUTH_TOKEN_MISMATCH"), (None, "DEVICE_IDENTITY_REQUIRED")])
def test_refused_credentials_raise_auth_failed(tmp_path: Path, token: str | None, needle: str) -> None:
    async def main() -> None:
        async with reference(tmp_path) as gateway:
            with pytest.raises(AuthFailed, match=needle):
                await OpenClawWsTransport(gateway.url, token).open()

    asyncio.run(main())


def test_closed_port_is_unreachable() -> None:
    with pytest.raises(TargetUnreachable, match="connection refused"):
        asyncio.run(OpenClawWsTransport("ws://127.0.0.1:9/", TOKEN).open())


@pytest.mark.parametrize("answered", [True, False], ids=["unavailable-then-1013", "1013-alone"])
def test_startup_unavailable_is_retried(answered: bool) -> None:
    attempts = []

    async def handler(ws: web.WebSocketResponse) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            await ws.send_json({"type": "event", "event": "connect.challenge", "payload": {"nonce": "n", "ts": 1}})
            req = json.loads((await ws.receive()).data)
            if answered:
                await ws.send_json({"type": "res", "id": req["id"], "ok": False, "error": {
                    "code": "UNAVAILABLE", "message": "gateway starting; retry shortly", "retryable": True,
                    "retryAfterMs": 50, "details": {"reason": "startup-sidecars"}}})
            await ws.close(code=1013)  # protocol 4 closes with "try again later" (alone: retried as well)
        else:
            await hello(ws)
            await ws.receive()

    async def main() -> None:
        async with fake_gateway(handler) as url:
            transport = OpenClawWsTransport(url, TOKEN)
            await transport.open()
            assert transport.server_version == "fake/1" and len(attempts) == 2
            await transport.close()

    asyncio.run(main())


def test_no_challenge_is_unreachable_within_the_timeout() -> None:
    async def handler(ws: web.WebSocketResponse) -> None:
        await asyncio.sleep(3)

    async def main() -> None:
        async with fake_gateway(handler) as url:
            with pytest.raises(TargetUnreachable, match="no connect.challenge"):
                await OpenClawWsTransport(url, TOKEN, connect_timeout=0.3).open()

    asyncio.run(main())


def test_wrong_first_frame_is_a_protocol_error() -> None:
    async def handler(ws: web.WebSocketResponse) -> None:
        await ws.send_json({"type": "event", "event": "tick", "payload": {}})
        await asyncio.sleep(1)

    async def main() -> None:
        async with fake_gateway(handler) as url:
            with pytest.raises(ProtocolError, match="expected connect.challenge"):
                await OpenClawWsTransport(url, TOKEN).open()

    asyncio.run(main())


def test_dropped_connection_is_an_error_then_reconnects() -> None:
    connections = []

    async def handler(ws: web.WebSocketResponse) -> None:
        connections.append(1)
        await hello(ws)
        req = json.loads((await ws.receive()).data)
        await ws.send_json({"type": "res", "id": req["id"], "ok": True, "payload": {"runId": "r", "status": "started"}})
        if len(connections) == 1:
            await ws.close()  # mid-call
            return
        run_id = req["params"]["idempotencyKey"]
        await ws.send_json({"type": "event", "event": "chat", "seq": 1, "payload": {
            "runId": run_id, "sessionKey": "s", "state": "final",
            "message": {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}}})
        await ws.receive()

    async def main() -> None:
        async with fake_gateway(handler) as url:
            transport = OpenClawWsTransport(url, TOKEN)
            await transport.open()
            broken = await transport.send("s", "m", "r1", timeout=5)
            assert broken.state == "error" and "connection closed" in (broken.error_message or "")
            fine = await transport.send("s", "m", "r2", timeout=5)
            assert fine.state == "final" and fine.text == "ok" and len(connections) == 2
            await transport.close()

    asyncio.run(main())


def test_no_final_is_a_timeout() -> None:
    async def handler(ws: web.WebSocketResponse) -> None:
        await hello(ws)
        req = json.loads((await ws.receive()).data)
        await ws.send_json({"type": "res", "id": req["id"], "ok": True, "payload": {"runId": "r", "status": "started"}})
        await ws.receive()

    async def main() -> None:
        async with fake_gateway(handler) as url:
            transport = OpenClawWsTransport(url, TOKEN)
            await transport.open()
            outcome = await transport.send("s", "m", "r1", timeout=0.3)
            assert outcome.state == "timeout" and 300 <= outcome.latency_ms < 1500
            await transport.close()

    asyncio.run(main())


def test_repeated_finals_are_dropped_while_their_run_is_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    """A repeated final of a finished run is no late reply, as long as the run is among the last
    FINISHED_KEPT; older runs are forgotten (the memory of a long probe stays bounded)."""
    monkeypatch.setattr(ws_transport, "FINISHED_KEPT", 2)

    async def final(ws: web.WebSocketResponse, run_id: str) -> None:
        await ws.send_json({"type": "event", "event": "chat", "seq": 1, "payload": {
            "runId": run_id, "sessionKey": "s", "state": "final",
            "message": {"role": "assistant", "content": [{"type": "text", "text": f"reply of {run_id}"}]}}})

    async def handler(ws: web.WebSocketResponse) -> None:
        await hello(ws)
        async for message in ws:
            req = json.loads(message.data)
            run_id, text = req["params"]["idempotencyKey"], req["params"]["message"]
            await ws.send_json({"type": "res", "id": req["id"], "ok": True, "payload": {"runId": run_id, "status": "started"}})
            if text.startswith("repeat "):
                await final(ws, text.removeprefix("repeat "))
            await final(ws, run_id)

    async def main() -> None:
        async with fake_gateway(handler) as url:
            transport = OpenClawWsTransport(url, TOKEN)
            await transport.open()
            outcomes = [await transport.send("s", "m", run_id, timeout=5) for run_id in ("r1", "r2", "r3")]
            # The state is the one interned string, not a copy decoded per frame: every record keeps it.
            assert all(o.state == "final" and o.state is sys.intern("final") for o in outcomes)
            await transport.send("s", "repeat r3", "r4", timeout=5)
            assert transport.take_foreign_events() == []
            await transport.send("s", "repeat r1", "r5", timeout=5)
            assert [(e.run_id, e.text) for e in transport.take_foreign_events()] == [("r1", "reply of r1")]
            await transport.close()

    asyncio.run(main())

"""The reference gateway over a raw WebSocket client: the wire protocol and the #77485 mechanism."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from ocprobe.reference.gateway import GatewayConfig, GatewayLog, ReferenceGateway, canonical_session_key
from ocprobe.reference.provider import ReferenceProvider

TOKEN = "t" * 48
DRAIN_ERROR = "followup queue drain failed for agent:test:main: ReplyRunAlreadyActiveError: Reply run already active for agent:test:main"


@asynccontextmanager
async def stack(tmp_path: Path, latency_ms: float = 60.0, **config: Any) -> AsyncIterator[tuple[ReferenceGateway, ReferenceProvider, io.StringIO]]:
    stderr = io.StringIO()
    async with ReferenceProvider(latency_ms=latency_ms, api_key="sk-test") as provider:
        cfg = GatewayConfig(token=TOKEN, provider_url=provider.base_url, provider_api_key="sk-test",
                            log_file=tmp_path / "gateway.log", **config)
        gateway = ReferenceGateway(cfg, log=GatewayLog(cfg.log_file, stderr))
        await gateway.start()
        try:
            yield gateway, provider, stderr
        finally:
            await gateway.stop()


async def recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def handshake(url: str, auth: dict[str, Any] | None) -> tuple[ClientConnection, dict[str, Any], dict[str, Any]]:
    ws = await connect(url, proxy=None)
    challenge = await recv(ws)
    params: dict[str, Any] = {
        "minProtocol": 3, "maxProtocol": 4, "role": "operator", "scopes": ["operator.read", "operator.write"],
        "client": {"id": "gateway-client", "version": "test", "platform": "linux", "mode": "backend"},
    }
    if auth is not None:
        params["auth"] = auth
    await ws.send(json.dumps({"type": "req", "id": "c", "method": "connect", "params": params}))
    return ws, challenge, await recv(ws)


async def request(ws: ClientConnection, method: str, params: dict[str, Any]) -> dict[str, Any]:
    req_id = uuid.uuid4().hex
    await ws.send(json.dumps({"type": "req", "id": req_id, "method": method, "params": params}))
    while True:
        frame = await recv(ws)
        if frame.get("type") == "res" and frame.get("id") == req_id:
            return frame


async def chat_until_terminal(ws: ClientConnection, run_id: str) -> list[dict[str, Any]]:
    """Every chat event up to the run's final/error, in order."""
    events = []
    while True:
        frame = await recv(ws)
        if frame.get("event") == "chat" and frame["payload"]["runId"] == run_id:
            events.append(frame["payload"])
            if frame["payload"]["state"] in ("final", "error", "aborted"):
                return events


def run(tmp_path: Path, check: Callable[..., Awaitable[None]], **config: Any) -> None:
    async def main() -> None:
        async with stack(tmp_path, **config) as parts:
            await check(*parts)

    asyncio.run(main())


def test_challenge_first_then_hello_ok(tmp_path: Path) -> None:
    async def check(gateway: ReferenceGateway, provider: ReferenceProvider, stderr: io.StringIO) -> None:
        ws, challenge, res = await handshake(gateway.url, {"token": TOKEN})
        assert challenge["type"] == "event" and challenge["event"] == "connect.challenge"
        assert set(challenge["payload"]) == {"nonce", "ts", "capabilities"}  # protocol 4, the default
        assert res["ok"] is True
        hello = res["payload"]
        assert hello["type"] == "hello-ok" and hello["protocol"] == 4
        assert hello["server"]["version"].startswith("ocprobe-reference/")
        assert "chat.send" in hello["features"]["methods"]
        assert hello["policy"]["maxPayload"] > 0 and hello["policy"]["tickIntervalMs"] > 0
        await ws.close()

    run(tmp_path, check)


@pytest.mark.parametrize(
    ("auth", "code", "detail", "message"),
    [
        ({"token": "wrong-token"}, "INVALID_REQUEST", "AUTH_TOKEN_MISMATCH", "unauthorized: gateway token mismatch"),
        (None, "NOT_PAIRED", "DEVICE_IDENTITY_REQUIRED", "device identity required"),
    ],
)
def test_auth_refusals_match_the_real_gateway(tmp_path: Path, auth: Any, code: str, detail: str, message: str) -> None:
    async def check(gateway: ReferenceGateway, provider: ReferenceProvider, stderr: io.StringIO) -> None:
        ws, _, res = await handshake(gateway.url, auth)
        assert res["ok"] is False
        assert res["error"]["code"] == code
        assert res["error"]["details"]["code"] == detail
        assert res["error"]["message"].startswith(message)
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await recv(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008

    run(tmp_path, check)


def test_chat_send_started_deltas_final_and_idempotency(tmp_path: Path) -> None:
    async def check(gateway: ReferenceGateway, provider: ReferenceProvider, stderr: io.StringIO) -> None:
        ws, _, _ = await handshake(gateway.url, {"token": TOKEN})
        res = await request(ws, "chat.send", {"sessionKey": "agent:test:main", "message": "say ok-1-abc", "idempotencyKey": "k1"})
        assert res["payload"] == {"runId": "k1", "status": "started"}
        again = await request(ws, "chat.send", {"sessionKey": "agent:test:main", "message": "say ok-1-abc", "idempotencyKey": "k1"})
        assert again["payload"] == {"runId": "k1", "status": "in_flight"}
        events = await chat_until_terminal(ws, "k1")
        assert [e["state"] for e in events][-1] == "final"
        assert "delta" in [e["state"] for e in events]
        final = events[-1]
        assert final["sessionKey"] == "agent:test:main"
        assert final["message"]["role"] == "assistant"
        assert final["message"]["content"] == [{"type": "text", "text": "ok-1-abc"}]
        await asyncio.sleep(0.05)
        cached = await request(ws, "chat.send", {"sessionKey": "agent:test:main", "message": "say ok-1-abc", "idempotencyKey": "k1"})
        assert cached["payload"] == {"runId": "k1", "status": "ok"}
        waited = await request(ws, "agent.wait", {"runId": "k1", "timeoutMs": 1000})
        assert waited["payload"]["status"] == "ok"
        history = await request(ws, "chat.history", {"sessionKey": "agent:test:main", "limit": 10})
        assert [m["role"] for m in history["payload"]["messages"]] == ["user", "assistant"]
        health = await request(ws, "health", {})
        assert health["payload"]["ok"] is True
        bad = await request(ws, "chat.send", {"sessionKey": "agent:test:main"})
        assert bad["ok"] is False and bad["error"]["code"] == "INVALID_REQUEST"
        assert len(provider.requests) == 1
        await ws.close()

    run(tmp_path, check)


def test_http_health_ready_and_relay(tmp_path: Path) -> None:
    async def check(gateway: ReferenceGateway, provider: ReferenceProvider, stderr: io.StringIO) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", trust_env=False) as http:
            assert (await http.get("/healthz")).json()["ok"] is True
            assert (await http.get("/readyz")).json()["ready"] is True
            refused = await http.post("/chat.send", json={"sessionKey": "main", "message": "x"})
            assert refused.status_code == 401
            ok = await http.post("/chat.send", json={"sessionKey": "main", "message": "ok-7-relay"},
                                 headers={"Authorization": f"Bearer {TOKEN}"})
            body = ok.json()
            assert body["reply"] == "ok-7-relay" and body["state"] == "final"
            assert body["sessionKey"] == "agent:main:main"

    run(tmp_path, check)


def test_session_keys_are_canonicalised() -> None:
    assert canonical_session_key("main") == "agent:main:main"
    assert canonical_session_key("Agent:Test:Main") == "agent:test:main"


def test_race_profile_queues_inside_the_teardown_window(tmp_path: Path) -> None:
    """A send right after a final is queued and gets a final without message; the drain fails while
    another run holds the guard, logs the real error line, and the queued turn runs later under a
    server-generated runId."""

    async def check(gateway: ReferenceGateway, provider: ReferenceProvider, stderr: io.StringIO) -> None:
        ws, _, _ = await handshake(gateway.url, {"token": TOKEN})
        key = "agent:test:main"

        async def send(run_id: str, nonce: str) -> dict[str, Any]:
            await request(ws, "chat.send", {"sessionKey": key, "message": f"say {nonce}", "idempotencyKey": run_id})
            return (await chat_until_terminal(ws, run_id))[-1]

        first = await send("r1", "ok-1-x")
        assert first["message"]["content"][0]["text"] == "ok-1-x"
        queued = await send("r2", "ok-2-x")  # inside the teardown window
        assert queued["state"] == "final" and "message" not in queued
        third = await send("r3", "ok-3-x")  # the window has closed: runs, and the drain hits its guard
        assert third["message"]["content"][0]["text"] == "ok-3-x"
        late = None
        while late is None:
            frame = await recv(ws)
            payload = frame.get("payload") or {}
            if frame.get("event") == "chat" and payload.get("state") == "final" and payload.get("runId") not in ("r1", "r2", "r3"):
                late = payload
        assert late["message"]["content"][0]["text"] == "ok-2-x"
        uuid.UUID(late["runId"])  # server-generated
        assert DRAIN_ERROR in stderr.getvalue()
        logged = [json.loads(line) for line in (tmp_path / "gateway.log").read_text().splitlines()]
        assert any(entry["message"] == DRAIN_ERROR and entry["time"].endswith("Z") for entry in logged)
        assert [r.nonces for r in provider.requests] == [("ok-1-x",), ("ok-3-x",), ("ok-2-x",)]
        await ws.close()

    run(tmp_path, check, profile="reply-run-race", teardown_ms=100.0, latency_ms=400.0, queued_ack_ms=150.0, debounce_ms=200.0)


def test_healthy_profile_runs_every_sequential_send(tmp_path: Path) -> None:
    async def check(gateway: ReferenceGateway, provider: ReferenceProvider, stderr: io.StringIO) -> None:
        ws, _, _ = await handshake(gateway.url, {"token": TOKEN})
        for i in range(1, 5):
            await request(ws, "chat.send", {"sessionKey": "s", "message": f"ok-{i}-h", "idempotencyKey": f"h{i}"})
            final = (await chat_until_terminal(ws, f"h{i}"))[-1]
            assert final["message"]["content"][0]["text"] == f"ok-{i}-h"
        assert stderr.getvalue() == ""
        await ws.close()

    run(tmp_path, check)


def test_collect_mode_runs_all_queued_turns_as_one(tmp_path: Path) -> None:
    async def check(gateway: ReferenceGateway, provider: ReferenceProvider, stderr: io.StringIO) -> None:
        ws, _, _ = await handshake(gateway.url, {"token": TOKEN})
        await request(ws, "chat.send", {"sessionKey": "s", "message": "ok-1-c", "idempotencyKey": "c1"})
        await asyncio.sleep(0.02)  # while c1 runs: both of these are queued
        await request(ws, "chat.send", {"sessionKey": "s", "message": "ok-2-c", "idempotencyKey": "c2"})
        await request(ws, "chat.send", {"sessionKey": "s", "message": "ok-3-c", "idempotencyKey": "c3"})
        for _ in range(100):
            if len(provider.requests) >= 2:
                break
            await asyncio.sleep(0.05)
        assert [r.nonces for r in provider.requests] == [("ok-1-c",), ("ok-2-c", "ok-3-c")]
        await ws.close()

    run(tmp_path, check, profile="reply-run-race", queue_mode="collect", debounce_ms=100.0)


def test_drop_queued_never_runs_queued_turns(tmp_path: Path) -> None:
    async def check(gateway: ReferenceGateway, provider: ReferenceProvider, stderr: io.StringIO) -> None:
        ws, _, _ = await handshake(gateway.url, {"token": TOKEN})
        await request(ws, "chat.send", {"sessionKey": "s", "message": "ok-1-d", "idempotencyKey": "d1"})
        await asyncio.sleep(0.02)
        await request(ws, "chat.send", {"sessionKey": "s", "message": "ok-2-d", "idempotencyKey": "d2"})
        await chat_until_terminal(ws, "d2")
        await asyncio.sleep(0.5)
        assert [r.nonces for r in provider.requests] == [("ok-1-d",)]
        assert "dropped 1 queued turn(s)" in stderr.getvalue()
        await ws.close()

    run(tmp_path, check, profile="reply-run-race", drop_queued=True, debounce_ms=100.0)

"""The WebSocket transport against a hostile gateway: the reference gateway with fault profiles, in this
process, and small scripted loopback servers for what no profile does (broken handshakes and answers)."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from ocprobe.errors import AuthFailed, TargetUnreachable
from ocprobe.reference.fault_specs import parse_faults
from ocprobe.reference.gateway import GatewayConfig, GatewayLog, ReferenceGateway
from ocprobe.reference.provider import ReferenceProvider
from ocprobe.transports.ws import OpenClawWsTransport
from tests.transports.test_ws import TOKEN, fake_gateway, hello

SESSION = "agent:test:main"


@asynccontextmanager
async def faulty(*faults: str, **transport: Any) -> AsyncIterator[tuple[ReferenceGateway, OpenClawWsTransport, io.StringIO]]:
    """The reference gateway with ``faults`` and a connected transport; the gateway's stderr is returned."""
    stderr = io.StringIO()
    async with ReferenceProvider(latency_ms=20, api_key="sk-t") as provider:
        cfg = GatewayConfig(token=TOKEN, provider_url=provider.base_url, provider_api_key="sk-t", faults=parse_faults(faults))
        gateway = ReferenceGateway(cfg, log=GatewayLog(None, stderr))
        await gateway.start()
        client = OpenClawWsTransport(gateway.url, TOKEN, **transport)
        try:
            await client.open()
            yield gateway, client, stderr
        finally:
            await client.close()
            await gateway.stop()


async def send(client: OpenClawWsTransport, i: int, timeout: float = 3.0, session: str = SESSION) -> tuple[str, str, str | None]:
    outcome = await client.send(session, f"say ok-{i}-x", f"run-{i}-{time.monotonic_ns()}", timeout)
    return outcome.state, outcome.text, outcome.error_message


def test_a_dropped_socket_fails_its_call_and_the_next_one_reconnects() -> None:
    async def main() -> None:
        async with faulty("drop:every=2") as (_, client, stderr):
            results = [await send(client, i) for i in range(1, 5)]
            assert [r[0] for r in results] == ["final", "error", "final", "error"]
            assert results[1][2] == "connection closed by the gateway" and results[2][1] == "ok-3-x"
            assert client.reconnects == 1
            assert stderr.getvalue().count("injected fault drop: chat.send") == 2

    asyncio.run(main())


def test_refused_reconnects_are_retried_with_a_growing_backoff() -> None:
    async def main() -> None:
        async with faulty("auth-flap:every=2,connects=3") as (_, client, stderr):
            assert (await send(client, 1))[0] == "final"
            assert (await send(client, 2))[0] == "error"
            started = time.monotonic()
            assert (await send(client, 3))[:2] == ("final", "ok-3-x")
            assert time.monotonic() - started >= 0.1 + 0.2 + 0.4  # three refusals, three waits
            assert stderr.getvalue().count("injected fault auth-flap: connect refused") == 3

    asyncio.run(main())


def test_a_refusal_that_lasts_past_the_budget_ends_the_run() -> None:
    async def main() -> None:
        async with faulty("auth-flap:every=1,connects=1000", reconnect_budget=0.5) as (_, client, _stderr):
            assert (await send(client, 1))[0] == "error"
            started = time.monotonic()
            with pytest.raises(AuthFailed, match=r"could not re-establish it \(\d attempt\(s\) in 0\.\ds\).*AUTH_TOKEN_MISMATCH"):
                await send(client, 2)
            assert time.monotonic() - started < 2.0

    asyncio.run(main())


def test_a_gateway_that_went_away_ends_the_run_unreachable() -> None:
    async def main() -> None:
        async with faulty(reconnect_budget=0.3) as (gateway, client, _):
            assert (await send(client, 1))[0] == "final"
            await gateway.stop()
            await asyncio.sleep(0.1)  # the client has seen its socket close
            with pytest.raises(TargetUnreachable, match="could not re-establish it .*connection refused"):
                await send(client, 2)

    asyncio.run(main())


def test_a_stalled_handshake_is_outwaited_and_retried() -> None:
    async def main() -> None:
        async with faulty("stall-handshake:every=2,ms=5000", connect_timeout=0.3) as (_, client, stderr):
            assert (await send(client, 1))[0] == "final"
            assert (await send(client, 2))[0] == "error"
            started = time.monotonic()
            assert (await send(client, 3))[0] == "final"
            assert 0.3 <= time.monotonic() - started < 3.0  # the client's own timeout, not the gateway's 5 s
            assert "injected fault stall-handshake: connect gets no challenge" in stderr.getvalue()

    asyncio.run(main())


def test_a_frame_above_max_payload_closes_the_socket() -> None:
    async def main() -> None:
        async with faulty("oversize:every=1,bytes=2048") as (_, client, _):
            assert client.hello["policy"]["maxPayload"] == 2048
            state, _, error = await send(client, 1)
            assert state == "error" and error is not None
            assert re.fullmatch(r"the gateway sent a frame of \d+ bytes, above its maxPayload of 2048", error)

    asyncio.run(main())


def test_a_duplicate_final_is_not_a_late_reply() -> None:
    async def main() -> None:
        async with faulty("duplicate-final:every=1") as (_, client, _):
            assert (await send(client, 1))[:2] == ("final", "ok-1-x")
            assert (await send(client, 2))[:2] == ("final", "ok-2-x")
            await asyncio.sleep(0.1)
            assert client.take_foreign_events() == []

    asyncio.run(main())


def test_a_final_after_the_timeout_is_still_a_late_reply() -> None:
    async def main() -> None:
        async with faulty("slow-provider:every=1,ms=400") as (_, client, _):
            outcome = await client.send(SESSION, "say ok-1-x", "late-1", 0.2)
            assert outcome.state == "timeout"
            for _ in range(50):
                late = client.take_foreign_events()
                if late:
                    break
                await asyncio.sleep(0.05)
            assert [(e.run_id, e.state, e.text) for e in late] == [("late-1", "final", "ok-1-x")]

    asyncio.run(main())


def test_events_before_the_answer_and_for_other_runs() -> None:
    async def main() -> None:
        async with faulty("out-of-order:every=1") as (_, client, _):
            assert (await send(client, 1))[:2] == ("final", "ok-1-x")
            stray = client.take_foreign_events()
            assert len(stray) == 1 and stray[0].run_id.startswith("stray-") and "ok-1-x" not in stray[0].text

    asyncio.run(main())


def test_garbage_frames_are_skipped() -> None:
    async def main() -> None:
        async with faulty("garbage:every=1") as (_, client, _):
            assert [await send(client, i) for i in (1, 2)] == [("final", "ok-1-x", None), ("final", "ok-2-x", None)]

    asyncio.run(main())


def test_concurrent_calls_survive_drops_with_one_reconnect_each() -> None:
    async def main() -> None:
        async with faulty("drop:every=5") as (gateway, client, _):
            async def worker(w: int) -> list[tuple[str, str, str | None]]:
                # A session each: the calls share the socket, not a session's reply-run guard.
                return [await send(client, w * 100 + k, session=f"{SESSION}-{w}") for k in range(5)]

            results = [r for rs in await asyncio.gather(*(worker(w) for w in range(4))) for r in rs]
            assert len(results) == 20
            assert all(state == "final" or error == "connection closed by the gateway" for state, _, error in results)
            assert sum(state == "final" for state, _, _ in results) >= 10
            assert 1 <= client.reconnects <= gateway.faults.calls // 5  # never more than one per dropped socket

    asyncio.run(main())


@pytest.mark.parametrize(("refusal", "error", "match"), [
    ({"ok": False, "error": "no"}, TargetUnreachable, r"gateway refused the connection: unknown error \(None\)"),
    ({"ok": False, "error": {"code": ["x"], "message": "bad\nthings\r\nhappened"}}, TargetUnreachable,
     r"refused the connection: bad things happened \(None\)$"),
    ({"ok": False, "error": {"code": "UNAVAILABLE", "retryAfterMs": "soon", "message": "unauthorized"}}, AuthFailed,
     "unauthorized"),
])
def test_malformed_refusals_are_one_line_errors(refusal: dict[str, Any], error: type[Exception], match: str) -> None:
    async def handler(ws: web.WebSocketResponse) -> None:
        await hello(ws, {"type": "res", "id": "connect", **refusal})
        await ws.close()

    async def main() -> None:
        async with fake_gateway(handler) as url:
            with pytest.raises(error, match=match) as raised:
                await OpenClawWsTransport(url, TOKEN).open()
            assert "\n" not in str(raised.value)

    asyncio.run(main())


@pytest.mark.parametrize(("answer", "state", "message"), [
    ({"ok": "yes"}, "error", "chat.send refused"),
    ({"ok": False, "error": ["x"]}, "error", "chat.send refused"),
    ({"ok": False, "error": {"message": {"nested": 1}, "code": 5}}, "error", "chat.send refused"),
    ({"ok": True, "payload": ["started"]}, "timeout", "no final within 0.3s"),
    ({"ok": True, "payload": {"runId": 7, "status": ["ok"]}}, "timeout", "no final within 0.3s"),
])
def test_malformed_chat_send_answers(answer: dict[str, Any], state: str, message: str) -> None:
    async def handler(ws: web.WebSocketResponse) -> None:
        await hello(ws, {"type": "res", "id": "connect", "ok": True, "payload": ["not", "a", "hello"]})
        req = json.loads((await ws.receive()).data)
        await ws.send_json({"type": "res", "id": req["id"], **answer})
        await ws.receive()

    async def main() -> None:
        async with fake_gateway(handler) as url:
            client = OpenClawWsTransport(url, TOKEN)
            await client.open()
            assert client.hello == {} and client.server_version is None
            outcome = await client.send(SESSION, "m", "r1", timeout=0.3)
            assert (outcome.state, outcome.error_message) == (state, message)
            assert outcome.error_code is None
            await client.close()

    asyncio.run(main())


"""Protocol negotiation (3..4) and what protocol 4 adds, against the reference gateway speaking either
generation and the frames captured from real 2026.5.3 and 2026.9.6 (tests/data/wire)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import websockets
from aiohttp import web
from websockets.asyncio.client import connect

from ocprobe.errors import AuthFailed, ProtocolMismatch
from ocprobe.transports.ws import PROTOCOL_MAX, PROTOCOL_MIN, OpenClawWsTransport
from tests.transports.test_ws import TOKEN, chat_gateway, fake_gateway, hello, reference, send_once

WIRE = Path(__file__).resolve().parents[1] / "data" / "wire"


def captured(version: str) -> dict[str, Any]:
    return json.loads((WIRE / f"openclaw-{version}.json").read_text())


async def offer(url: str, low: int, high: int) -> tuple[dict[str, Any], dict[str, Any], tuple[int | None, str]]:
    """A raw client offering ``low..high``: the challenge, the connect answer and the close (code, reason)."""
    async with connect(url) as ws:
        challenge = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "req", "id": "connect", "method": "connect", "params": {
            "minProtocol": low, "maxProtocol": high, "role": "operator", "scopes": ["operator.read", "operator.write"],
            "client": {"id": "gateway-client", "version": "t", "platform": "linux", "mode": "backend"},
            "auth": {"token": TOKEN}}}))
        answer = json.loads(await ws.recv())
        close: tuple[int | None, str] = (None, "no close")
        try:
            await asyncio.wait_for(ws.recv(), 0.5 if answer.get("ok") else 5)
        except asyncio.TimeoutError:
            pass  # accepted: the connection stays open
        except websockets.exceptions.ConnectionClosed as exc:
            close = (exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else "")
    return challenge, answer, close


@pytest.mark.parametrize("protocol", [3, 4])
def test_the_client_negotiates_either_generation(tmp_path: Path, protocol: int) -> None:
    async def main() -> None:
        async with reference(tmp_path, protocol=protocol) as gateway:
            transport = OpenClawWsTransport(gateway.url, TOKEN)
            await transport.open()
            assert transport.protocol == protocol
            outcome = await transport.send("agent:test:main", "say ok-1-p", "run-1", timeout=5)
            assert outcome.state == "final" and outcome.text == "ok-1-p"
            await transport.close()

    asyncio.run(main())


@pytest.mark.parametrize(("version", "protocol"), [("2026.5.3", 3), ("2026.9.6", 4)])
def test_the_reference_refuses_a_range_as_the_real_release_does(tmp_path: Path, version: str, protocol: int) -> None:
    real = captured(version)

    async def main() -> None:
        async with reference(tmp_path, protocol=protocol) as gateway:
            for case in real["mismatch"]:
                low, high = map(int, case["offered"].split(".."))
                challenge, answer, close = await offer(gateway.url, low, high)
                assert answer == case["response"]  # code, message and every detail
                assert list(close) == [case["close"]["code"], case["close"]["reason"]]
                assert set(challenge["payload"]) == set(real["challenge"]["payload"]) - (
                    set() if protocol >= 4 else {"capabilities"})
            _, answer, _ = await offer(gateway.url, PROTOCOL_MIN, PROTOCOL_MAX)
            assert answer["ok"] and answer["payload"]["protocol"] == real["hello_protocol"] == protocol

    asyncio.run(main())


def refusing(answer: dict[str, Any] | None, close_code: int, attempts: list[int]) -> Any:
    """A gateway that answers connect with ``answer`` (None: no answer) and closes with ``close_code``."""
    async def handler(ws: web.WebSocketResponse) -> None:
        attempts.append(1)
        if answer is None:
            await ws.send_json({"type": "event", "event": "connect.challenge", "payload": {"nonce": "n", "ts": 1}})
            await ws.receive()
        else:
            await hello(ws, answer)
        await ws.close(code=close_code, message=b"protocol mismatch" if close_code == 1002 else b"refused")

    return handler


def open_error(answer: dict[str, Any] | None, close_code: int) -> tuple[Exception, int]:
    """What opening a transport on a refusing gateway raises, and how many connections it made."""
    attempts: list[int] = []

    async def main() -> Exception:
        async with fake_gateway(refusing(answer, close_code, attempts)) as url:
            try:
                await OpenClawWsTransport(url, TOKEN).open()
            except Exception as exc:  # noqa: BLE001 - the test inspects it
                return exc
        raise AssertionError("the connection was not refused")

    return asyncio.run(main()), len(attempts)


def test_a_mismatch_is_one_line_naming_both_ranges_and_is_not_retried() -> None:
    error, attempts = open_error(captured("2026.9.6")["mismatch"][0]["response"], 1002)
    text = str(error)
    assert isinstance(error, ProtocolMismatch) and "\n" not in text and "PROTOCOL_MISMATCH" in text
    assert "it speaks protocol 4" in text and f"ocprobe offers {PROTOCOL_MIN}..{PROTOCOL_MAX}" in text
    assert attempts == 1


def test_a_v3_mismatch_names_its_protocol_too() -> None:
    error, _ = open_error(captured("2026.5.3")["mismatch"][0]["response"], 1002)
    assert isinstance(error, ProtocolMismatch) and "it speaks protocol 3, ocprobe offers 3..4" in str(error)


def test_a_1002_close_without_an_answer_is_a_mismatch() -> None:
    error, _ = open_error(None, 1002)
    assert isinstance(error, ProtocolMismatch) and "protocol error: protocol mismatch" in str(error)


@pytest.mark.parametrize("code", ["AUTH_REQUIRED", "AUTH_UNAUTHORIZED", "AUTH_TOKEN_NOT_CONFIGURED", "AUTH_RATE_LIMITED",
                                  "PAIRING_REQUIRED"])
def test_the_v4_auth_codes_are_auth_failures(code: str) -> None:
    error, _ = open_error({"type": "res", "id": "connect", "ok": False,
                           "error": {"code": "INVALID_REQUEST", "message": "refused", "details": {"code": code}}}, 1008)
    assert isinstance(error, AuthFailed) and code in str(error)


def scripted_run(events: list[dict[str, Any]], ack: dict[str, Any]) -> Any:
    """A gateway that answers a chat.send with ``ack`` then sends ``events`` (runId filled in)."""
    async def script(ws: web.WebSocketResponse, run_id: str, message: str) -> None:
        for event in events:
            await ws.send_json({"type": "event", "event": "chat", "payload": {"runId": run_id, "sessionKey": "s", **event}})

    return chat_gateway(script, ack=ack)


def test_status_events_are_not_terminal_and_delta_text_accumulates() -> None:
    events = [{"state": "status", "phase": "preparing_workspace"}, {"state": "status", "phase": "starting_model"},
              {"state": "delta", "deltaText": "ok-1"}, {"state": "delta", "deltaText": "-x"}, {"state": "final"}]

    outcome = send_once(scripted_run(events, {"status": "started", "messageSeq": 2}))
    assert outcome.state == "final" and outcome.text == "ok-1-x"


@pytest.mark.parametrize("status", ["ok", "completed", "error", "timeout", "aborted"])
def test_answers_from_the_idempotency_cache_end_the_call_at_once(status: str) -> None:
    outcome = send_once(scripted_run([], {"status": status, "cached": True}), timeout=30)
    assert outcome.state == "error" and f"status {status}" in (outcome.error_message or "")  # not a timeout

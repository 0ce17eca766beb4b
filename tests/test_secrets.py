"""Secrets: servers ocprobe starts listen on 127.0.0.1 only and want the token; tokens are compared in
constant time and never reach an output, error line, log copy or report, even when a hostile gateway
echoes them back."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from ocprobe.errors import AuthFailed
from ocprobe.reference.gateway import GatewayConfig
from ocprobe.reference.provider import ReferenceProvider
from ocprobe.secret import Redactor, same_secret
from ocprobe.transports.ws import OpenClawWsTransport
from tests.transports.test_ws import fake_gateway, hello

TOKEN = "tok-" + "9" * 40


def _listening(pid: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp* writes them) of the sockets ``pid`` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.append(fields[1].split(":")[0])
    return found


def test_reference_servers_refuse_any_address_but_loopback() -> None:
    with pytest.raises(ValueError, match="127.0.0.1 only"):
        GatewayConfig(token=TOKEN, provider_url="http://127.0.0.1:1/v1", host="0.0.0.0")
    with pytest.raises(ValueError, match="127.0.0.1 only"):
        ReferenceProvider(host="::")


def test_gateway_serve_listens_on_loopback_only_and_wants_the_token(tmp_path: Path) -> None:
    serve = subprocess.Popen(
        [sys.executable, "-m", "ocprobe", "gateway", "serve", "--port", "0", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OCPROBE_CACHE": str(tmp_path), "OPENCLAW_GATEWAY_TOKEN": TOKEN},
    )
    try:
        assert serve.stdout is not None
        ready: dict[str, Any] = json.loads(serve.stdout.readline())
        addresses = _listening(serve.pid)
        assert len(addresses) == 2 and set(addresses) == {"0100007F"}  # gateway and provider, 127.0.0.1 each
        with httpx.Client(trust_env=False) as http:
            for url, body in ((f"{ready['http_url']}/chat.send", {"message": "x"}),
                              (f"{ready['http_url']}/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
                              (f"{ready['provider_url']}/chat/completions", {"messages": []})):
                assert http.post(url, json=body).status_code == 401
                assert http.post(url, json=body, headers={"Authorization": "Bearer " + TOKEN[:-1]}).status_code == 401
        for token, needle in ((None, "DEVICE_IDENTITY_REQUIRED"), ("\ud800" * 20, "AUTH_TOKEN_MISMATCH")):
            with pytest.raises(AuthFailed, match=needle):  # a lone surrogate is a mismatch, not a crash
                asyncio.run(OpenClawWsTransport(ready["url"], token).open())
    finally:
        serve.send_signal(signal.SIGTERM)
        _, stderr = serve.communicate(timeout=15)
    assert "Traceback" not in stderr


def test_constant_time_comparison_takes_any_text() -> None:
    assert same_secret(TOKEN, TOKEN) and not same_secret(TOKEN, TOKEN + "x")
    assert not same_secret("\ud800abc", TOKEN) and not same_secret("é" * 10, TOKEN)


def test_redactor_keeps_types_and_replaces_everywhere() -> None:
    from ocprobe.models import CallClass

    redact = Redactor([TOKEN, None, "short"])
    value = {"a": [TOKEN, ("x" + TOKEN, 3)], TOKEN: CallClass.REAL}
    assert redact(value) == {"a": ["***", ("x***", 3)], "***": CallClass.REAL}
    assert redact("a short one") == "a *** one"  # a short token is still a token


async def _ocprobe(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ocprobe", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", **env})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_a_token_echoed_in_a_refusal_is_redacted(tmp_path: Path) -> None:
    async def echo(ws: web.WebSocketResponse) -> None:
        await ws.send_json({"type": "event", "event": "connect.challenge", "payload": {"nonce": "n", "ts": 1}})
        req = json.loads((await ws.receive()).data)
        await ws.send_json({"type": "res", "id": req["id"], "ok": False, "error": {
            "code": "INVALID_REQUEST", "message": f"unauthorized: you sent {req['params']['auth']['token']}"}})

    async def main() -> None:
        async with fake_gateway(echo) as url:
            code, out, err = await _ocprobe("sequential", "--target", url, env={
                "OPENCLAW_GATEWAY_TOKEN": TOKEN, "OCPROBE_CACHE": str(tmp_path)})
        assert code == 2 and out == ""
        assert err.strip().endswith("gateway refused the connection: unauthorized: you sent *** (INVALID_REQUEST)")
        assert TOKEN not in err

    asyncio.run(main())


def test_a_token_echoed_in_replies_reaches_no_output(tmp_path: Path) -> None:
    async def echo(ws: web.WebSocketResponse) -> None:
        req = await hello(ws)
        token = req["params"]["auth"]["token"]
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame["method"] != "chat.send":
                await ws.send_json({"type": "res", "id": frame["id"], "ok": True, "payload": {"messages": []}})
                continue
            run_id, text = frame["params"]["idempotencyKey"], frame["params"]["message"]
            await ws.send_json({"type": "res", "id": frame["id"], "ok": True, "payload": {"runId": run_id, "status": "started"}})
            nonce = text.rsplit(" ", 1)[-1]
            await ws.send_json({"type": "event", "event": "chat", "payload": {
                "runId": run_id, "state": "final", "message": {"content": [{"type": "text", "text": f"{token} {nonce}"}]}}})

    async def main() -> None:
        out_file, report = tmp_path / "out.jsonl", tmp_path / "report"
        async with fake_gateway(echo) as url:
            code, out, err = await _ocprobe("sequential", "-n", "2", "--target", url, "--json", str(out_file), "--settle", "0",
                                            "--report", str(report), env={
                                                "OPENCLAW_GATEWAY_TOKEN": TOKEN, "OCPROBE_CACHE": str(tmp_path / "c")})
        assert code == 0, err
        texts = [out, err, out_file.read_text()] + [p.read_text() for p in report.iterdir()]
        assert "*** ok-1-" in out  # the table shows the reply, redacted before it is cut to fit
        for text in texts:
            assert TOKEN[:12] not in text

    asyncio.run(main())


def test_a_short_token_echoed_by_the_gateway_is_redacted_too(tmp_path: Path, in_thread) -> None:  # type: ignore[no-untyped-def]
    """Before: tokens under 8 characters were never redacted, so a refusal that quoted one printed it."""
    from aiohttp import web

    from tests.transports.test_ws import fake_gateway

    async def quoting(ws: web.WebSocketResponse) -> None:
        await ws.send_json({"type": "event", "event": "connect.challenge", "payload": {"nonce": "n", "ts": 1}})
        connect = json.loads((await ws.receive()).data)
        token = connect["params"]["auth"]["token"]
        await ws.send_json({"type": "res", "id": connect["id"], "ok": False, "error": {
            "code": "INVALID_REQUEST", "message": f"unauthorized: token {token} is not ours",
            "details": {"code": "AUTH_TOKEN_MISMATCH"}}})
        await ws.close(code=1008)

    url = in_thread(lambda: fake_gateway(quoting))
    out = tmp_path / "run.jsonl"
    proc = subprocess.run([sys.executable, "-m", "ocprobe", "sequential", "-n", "1", "--target", url, "--json", str(out)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "OPENCLAW_GATEWAY_TOKEN": "k9Zq2"})
    assert proc.returncode == 2 and "AUTH_TOKEN_MISMATCH" in proc.stderr
    assert "k9Zq2" not in proc.stderr + proc.stdout + (out.read_text() if out.exists() else "")


def test_a_token_file_others_can_read_is_warned_about(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t" * 48)
    token.chmod(0o644)
    proc = subprocess.run([sys.executable, "-m", "ocprobe", "sequential", "-n", "1", "--target", "ws://127.0.0.1:9",
                           "--token-file", str(token)], capture_output=True, text=True, timeout=60)
    assert f"warning: token file {token} is readable by others (mode 0644): chmod 600 {token}" in proc.stderr
    token.chmod(0o600)
    proc = subprocess.run([sys.executable, "-m", "ocprobe", "sequential", "-n", "1", "--target", "ws://127.0.0.1:9",
                           "--token-file", str(token)], capture_output=True, text=True, timeout=60)
    assert "warning" not in proc.stderr

"""A scenario file is untrusted: it cannot choose where the gateway token comes from, let it travel in
clear, or send it to another machine; the user's own command line can (issue: a shared scenario sent a
private file's content and an unrelated environment secret in the connect frame)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from tests.transports.test_ws import fake_gateway


def run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ocprobe", "run", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "OCPROBE_CACHE": str(tmp_path / "cache"), **(env or {})})


def scenario(tmp_path: Path, target: str, transport: str = "") -> Path:
    path = tmp_path / "shared.toml"
    path.write_text(f'description = "a shared scenario"\ntarget = "{target}"\n\n[transport]\n{transport}\n'
                    '[probe]\ncalls = 1\n')
    return path


@pytest.mark.parametrize("line", ['token_file = "/etc/ocprobe-private"', 'token_env = "CI_DEPLOY_TOKEN"',
                                  "allow_insecure = true"])
def test_a_file_cannot_name_a_secret_source_or_clear_text(tmp_path: Path, line: str) -> None:
    path = scenario(tmp_path, "ws://127.0.0.1:9", line)
    proc = run(tmp_path, "--check", str(path))
    key = line.split(" ")[0]
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: {path}:5: transport.{key}: a scenario file cannot choose where the gateway "
                                   "token comes from or let it travel in clear: give --token-file, --token-env or "
                                   "--allow-insecure to 'ocprobe run'")


def test_the_user_can_give_them_on_the_command_line(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t" * 48)
    path = scenario(tmp_path, "ws://127.0.0.1:9")
    for extra in (["--token-file", str(token)], ["--token-env", "MY_TOKEN"], ["--set", "transport.token_env=MY_TOKEN"]):
        proc = run(tmp_path, "--check", str(path), *extra)
        assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("target", ["wss://gateway.example.net:443", "https://10.1.2.3/chat.send", "ws://[2001:db8::1]:80"])
def test_a_file_cannot_send_the_token_to_another_machine(tmp_path: Path, target: str) -> None:
    path = scenario(tmp_path, target)
    proc = run(tmp_path, "--check", str(path))
    assert proc.returncode == 2 and f"{path}:2: target: {target} is not on this machine" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_remote_target_runs_when_the_user_accepts_it(tmp_path: Path) -> None:
    path = scenario(tmp_path, "wss://gateway.example.net:443")
    assert run(tmp_path, "--check", str(path), "--allow-remote").returncode == 0
    assert run(tmp_path, "--check", str(path), "--set", "target=wss://other.example.net:443").returncode == 0


def test_no_secret_is_sent_when_the_file_asks_for_one(tmp_path: Path, in_thread) -> None:  # type: ignore[no-untyped-def]
    """The attack as seen: a private file and an environment secret named by the file, a listener on loopback."""
    private = tmp_path / "private-key"
    private.write_text("PRIVATE-FILE-CONTENT")
    frames: list[str] = []

    async def capture(ws: web.WebSocketResponse) -> None:
        await ws.send_json({"type": "event", "event": "connect.challenge", "payload": {"nonce": "n", "ts": 1}})
        frames.append(str((await ws.receive()).data))

    url = in_thread(lambda: fake_gateway(capture))
    for line in (f'token_file = "{private}"', 'token_env = "CI_DEPLOY_TOKEN"'):
        proc = run(tmp_path, str(scenario(tmp_path, url, line)), env={"CI_DEPLOY_TOKEN": "ENV-SECRET"})
        assert proc.returncode == 2 and "cannot choose where the gateway token comes from" in proc.stderr
    assert frames == []  # refused before any connection: neither secret left ocprobe

"""``ocprobe sequential --transport relay|openai`` as a user runs it: real processes, the reference stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_sequential import calls, ocprobe, summary

DRAIN_PATTERN = "ReplyRunAlreadyActiveError"


def test_relay_on_reply_run_race_alternates(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    run_dir = tmp_path / "run"
    proc = ocprobe("sequential", "--transport", "relay", "-n", "6", "--profile", "reply-run-race", "--json", str(out),
                   "--run-dir", str(run_dir), tmp_path=tmp_path)
    assert proc.returncode == 1, proc.stderr
    records = calls(out)
    assert [c["class"] for c in records] == ["real", "fast_fail"] * 3
    assert all(c["evidence"] == "witness" for c in records)
    s = summary(out)
    assert s["pattern"] == "alternating" and s["log_counts"][DRAIN_PATTERN] > 0
    assert s["fates"]["ran_late"] == 3  # seen by the witness: the relay has no foreign finals
    assert s["target"]["transport"] == "relay" and s["target"]["url"].endswith("/chat.send")
    assert s["target"]["witness"] is True and s["target"]["gateway_version"].startswith("ocprobe-reference/")
    token = (run_dir / "gateway.token").read_text().strip()
    assert token not in proc.stdout + proc.stderr + out.read_text()


@pytest.mark.parametrize("stream", [[], ["--no-stream"]])
def test_openai_on_reply_run_race_is_all_real(tmp_path: Path, stream: list[str]) -> None:
    out = tmp_path / "run.jsonl"
    proc = ocprobe("sequential", "--transport", "openai", *stream, "-n", "6", "--profile", "reply-run-race",
                   "--json", str(out), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [c["class"] for c in calls(out)] == ["real"] * 6
    s = summary(out)
    assert s["log_counts"][DRAIN_PATTERN] == 0 and s["target"]["transport"] == "openai"
    assert "PASS: 6/6 real, pattern all-pass" in proc.stdout


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``ocprobe gateway serve`` in its own process: an external target reached over HTTP."""
    serve = subprocess.Popen(
        [sys.executable, "-m", "ocprobe", "gateway", "serve", "--port", "0", "--json", "--latency-ms", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OCPROBE_CACHE": str(tmp_path / "cache"), "OPENCLAW_GATEWAY_TOKEN": "right-token-123456"},
    )
    try:
        assert serve.stdout is not None
        yield json.loads(serve.stdout.readline())
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=10)


def test_external_http_targets_pick_the_transport_from_the_url(tmp_path: Path, served: dict[str, Any]) -> None:
    base = served["http_url"]
    env = {"OPENCLAW_GATEWAY_TOKEN": "right-token-123456"}
    for target, transport in ((f"{base}/chat.send", "relay"), (f"{base}/v1", "openai"),
                              (f"{base}/v1/chat/completions", "openai")):
        proc = ocprobe("sequential", "-n", "2", "--target", target, "--json", "-", tmp_path=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr
        lines = [json.loads(line) for line in proc.stdout.splitlines()]
        s = lines[-1]
        assert s["record"] == "summary" and s["counts"]["real"] == 2 and s["target"]["transport"] == transport
        assert [c["evidence"] for c in lines if c["record"] == "call"] == ["nonce"] * 2  # no witness here
    proc = ocprobe("sequential", "-n", "1", "--target", base, "--transport", "openai", "--openai-model", "openclaw:main",
                   "-q", tmp_path=tmp_path, env=env)
    assert proc.returncode == 0 and proc.stdout.startswith("PASS: 1/1 real"), proc.stderr


@pytest.mark.parametrize(("target", "needle", "before"), [
    # The OpenAI transport checks the token when it opens (a request with no user message: no run, no LLM).
    ("/v1", "HTTP 401, the gateway refused the token (Unauthorized)", 0),
    # A relay has nothing harmless to ask with a POST: the first call finds out, after the "probing" line.
    ("/chat.send", "HTTP 401, the gateway refused the token (unauthorized)", 1),
])
def test_external_wrong_token_is_an_auth_error(tmp_path: Path, served: dict[str, Any], target: str, needle: str,
                                               before: int) -> None:
    proc = ocprobe("sequential", "-n", "2", "--target", served["http_url"] + target, tmp_path=tmp_path,
                   env={"OPENCLAW_GATEWAY_TOKEN": "wrong-token-123456"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == before + 1 and needle in lines[-1] and "Traceback" not in proc.stderr
    assert "wrong-token-123456" not in proc.stdout + proc.stderr


def test_unreachable_http_target(tmp_path: Path) -> None:
    proc = ocprobe("sequential", "--target", "http://127.0.0.1:9/chat.send", tmp_path=tmp_path,
                   env={"OPENCLAW_GATEWAY_TOKEN": "x" * 16})
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: cannot connect to http://127.0.0.1:9/chat.send: connection refused"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--transport", "relay", "--relay-body", '{"sessionKey": {session_key}}'], "must contain {message}"),
        (["--transport", "relay", "--relay-body", '{"message": {message}'], "not JSON once filled in"),
        (["--transport", "relay", "--reply-path", "data..text"], "bad reply path (--reply-path)"),
        (["--relay-body", '{"message": {message}}'], "--relay-body applies to --transport relay only"),
        (["--transport", "relay", "--no-stream"], "--no-stream applies to --transport openai only"),
        (["--transport", "openai", "--openai-model", " "], "--openai-model must not be empty"),
        (["--target", "http://10.1.2.3:18789/chat.send"], "not loopback: http:// would send the gateway token in clear text"),
        (["--target", "ws://127.0.0.1:1", "--transport", "relay"], "--transport relay needs an http:// or https:// target"),
        (["--target", "http://127.0.0.1:1/v1", "--transport", "ws"], "--transport ws needs a ws:// or wss:// target"),
        (["--target", "ftp://127.0.0.1:1"], "unsupported target"),
        (["--transport", "relay", "--wait", "agent.wait"], "--wait agent.wait needs the ws transport"),
        (["--target", "http://127.0.0.1:1/v1", "--token-env", "OCPROBE_TEST_UNSET_TOKEN"], "no gateway token"),
    ],
)
def test_bad_transport_input_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    proc = ocprobe("sequential", *args, tmp_path=tmp_path, timeout=30)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "cache" / "runs").exists()  # refused before anything ran

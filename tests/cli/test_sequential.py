"""``ocprobe sequential`` end to end, as a user runs it: a real process, the embedded reference stack."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

DRAIN_PATTERN = "ReplyRunAlreadyActiveError"


def ocprobe(*args: str, tmp_path: Path, env: dict[str, str] | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocprobe", *args],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "OCPROBE_CACHE": str(tmp_path / "cache"), "COLUMNS": "200", **(env or {})},
    )


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def calls(path: Path) -> list[dict[str, Any]]:
    return [r for r in records(path) if r["record"] == "call"]


def summary(path: Path) -> dict[str, Any]:
    return [r for r in records(path) if r["record"] == "summary"][-1]


def test_embedded_healthy_all_real(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    proc = ocprobe("sequential", "-n", "10", "--json", str(out), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [c["class"] for c in calls(out)] == ["real"] * 10
    assert all(c["evidence"] == "witness" and c["llm_reached"] is True for c in calls(out))
    s = summary(out)
    assert s["pattern"] == "all-pass" and s["counts"]["real"] == 10
    assert s["target"]["gateway_version"].startswith("ocprobe-reference/")
    assert "✔✔✔✔✔✔✔✔✔✔" in proc.stdout and "PASS: 10/10 real, pattern all-pass" in proc.stdout


def test_reply_run_race_gap_0_alternates_and_queued_turns_run_late(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    proc = ocprobe("sequential", "-n", "10", "--profile", "reply-run-race", "--gap", "0", "--json", str(out), tmp_path=tmp_path)
    assert proc.returncode == 1, proc.stderr
    classes = [c["class"] for c in calls(out)]
    assert classes[0::2] == ["real"] * 5
    assert all(c in ("fast_fail", "empty") for c in classes[1::2])
    s = summary(out)
    assert s["pattern"] == "alternating" and s["strip"] == "✔✗" * 5
    assert s["log_counts"][DRAIN_PATTERN] > 0
    settled = {r["index"]: r for r in records(out) if r["record"] == "settle"}
    attached = [m for r in settled.values() for m in r["log_matches"] if m["pattern"] == DRAIN_PATTERN]
    assert len(attached) == s["log_counts"][DRAIN_PATTERN] and all(m["call"] for m in attached)
    for index in (2, 4, 6, 8, 10):
        assert settled[index]["fate"] == "ran_late"
        late = settled[index]["late"]
        assert late["via"] == "witness+final" and late["run_id"] and f"ok-{index}-" in late["text"]
    assert s["fates"]["ran_late"] == 5
    assert "alternating" in proc.stdout and "ran_late" in proc.stdout


def test_reply_run_race_gap_above_the_window_is_clean(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    proc = ocprobe("sequential", "-n", "10", "--profile", "reply-run-race", "--gap", "0.3", "--json", str(out), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    s = summary(out)
    assert s["counts"]["real"] == 10
    assert s["log_counts"][DRAIN_PATTERN] == 0


def test_agent_wait_closes_the_window(tmp_path: Path) -> None:
    proc = ocprobe("sequential", "-n", "6", "--profile", "reply-run-race", "--wait", "agent.wait", "-q", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("PASS: 6/6 real")


def test_drop_queued_gives_lost_fates(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    proc = ocprobe("sequential", "-n", "4", "--profile", "reply-run-race", "--drop-queued", "--settle", "1.5",
                   "--json", str(out), tmp_path=tmp_path)
    assert proc.returncode == 1
    assert summary(out)["fates"] == {"ran_late": 0, "lost": 2, "unknown": 0}


def test_json_to_stdout_is_only_json(tmp_path: Path) -> None:
    proc = ocprobe("sequential", "-n", "2", "--json", "-", tmp_path=tmp_path)
    assert proc.returncode == 0
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["record"] for r in lines] == ["start", "call", "call", "run", "summary"]


def test_json_to_a_device_that_cannot_be_synced(tmp_path: Path) -> None:
    # The results file is fsync'ed at close: /dev/null (or a pipe) has nothing to sync and must not fail.
    proc = ocprobe("sequential", "-n", "2", "--latency-ms", "0", "--json", os.devnull, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not proc.stderr.count("error")


def test_token_never_reaches_outputs(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    run_dir = tmp_path / "run"
    proc = ocprobe("sequential", "-n", "2", "--json", str(out), "--run-dir", str(run_dir), tmp_path=tmp_path)
    assert proc.returncode == 0
    token = (run_dir / "gateway.token").read_text().strip()
    assert oct((run_dir / "gateway.token").stat().st_mode & 0o777) == "0o600"
    for text in (proc.stdout, proc.stderr, out.read_text(), (run_dir / "gateway.stdout.log").read_text()):
        assert token not in text


def test_wrong_token_is_an_auth_error(tmp_path: Path) -> None:
    """A real gateway refusing the token: exit 2 and one line naming the failure."""
    serve = subprocess.Popen(
        [sys.executable, "-m", "ocprobe", "gateway", "serve", "--port", "0", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OCPROBE_CACHE": str(tmp_path / "cache"), "OPENCLAW_GATEWAY_TOKEN": "right-token-123456"},
    )
    try:
        assert serve.stdout is not None
        ready = json.loads(serve.stdout.readline())
        proc = ocprobe("sequential", "-n", "1", "--target", ready["url"], tmp_path=tmp_path,
                       env={"OPENCLAW_GATEWAY_TOKEN": "wrong-token-123456"})
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "gateway token mismatch" in lines[0] and "AUTH_TOKEN_MISMATCH" in lines[0]
        assert "Traceback" not in proc.stderr
        proc = ocprobe("sequential", "-n", "2", "--target", ready["url"], "-q", tmp_path=tmp_path,
                       env={"OPENCLAW_GATEWAY_TOKEN": "right-token-123456"})
        assert proc.returncode == 0 and "no witness" not in proc.stdout
        assert proc.stdout.startswith("PASS: 2/2 real")
        # The same session again: its history is there, and turns left queued on it would poison the probe.
        again = ocprobe("sequential", "-n", "1", "--target", ready["url"], "-q", tmp_path=tmp_path,
                        env={"OPENCLAW_GATEWAY_TOKEN": "right-token-123456"})
        assert again.returncode == 0 and "session agent:test:main already has" in again.stderr
        fresh = ocprobe("sequential", "-n", "1", "--target", ready["url"], "--session-key", "auto", "--json", "-",
                        tmp_path=tmp_path, env={"OPENCLAW_GATEWAY_TOKEN": "right-token-123456"})
        assert fresh.returncode == 0 and "already has" not in fresh.stderr
        keys = {json.loads(line).get("session_key") for line in fresh.stdout.splitlines()} - {None}
        assert len(keys) == 1 and keys.pop().startswith("agent:test:main-")
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=10)


def test_unreachable_target(tmp_path: Path) -> None:
    proc = ocprobe("sequential", "--target", "ws://127.0.0.1:9", tmp_path=tmp_path, env={"OPENCLAW_GATEWAY_TOKEN": "x" * 16})
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: cannot connect to ws://127.0.0.1:9: connection refused"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--message", "hello {i}"], "must contain {nonce}"),
        (["--message", "hello {nonce} {who}"], "unknown field '{who}'"),
        (["--message", "hello {nonce"], "bad --message template"),
        (["-n", "0"], "-n must be between 1 and 100000"),
        (["--gap", "-1"], "--gap must be between 0 and 3600"),
        (["--log-pattern", "("], "bad --log-pattern"),
        (["--target", "ftp://x"], "unsupported target"),
        (["--target", "ws://10.1.2.3:18789"], "not loopback"),
        (["--target", "ws://127.0.0.1:1", "--token-file", "/nonexistent/token"], "cannot read token file"),
        (["--target", "ws://127.0.0.1:1", "--token-env", "OCPROBE_TEST_UNSET_TOKEN"], "no gateway token"),
        (["--log", "/"], "is a directory"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    proc = ocprobe("sequential", *args, tmp_path=tmp_path, timeout=30)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "cache" / "runs").exists()  # refused before anything ran


def test_ctrl_c_keeps_finished_calls_on_disk(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocprobe", "sequential", "-n", "200", "--gap", "0.05", "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OCPROBE_CACHE": str(tmp_path / "cache")},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or len(calls(out)) < 3):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    finished = calls(out)
    assert len(finished) >= 3 and [c["index"] for c in finished] == list(range(1, len(finished) + 1))
    assert summary(out)["interrupted"] is True
    assert "Traceback" not in stderr
    assert not any(p.is_dir() for p in [Path(f"/proc/{pid}") for pid in _children_of(proc.pid)])


def _children_of(pid: int) -> list[int]:
    """Any process still parented to the (now dead) ocprobe: the gateway must have been stopped."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name (field 2) may hold spaces and parentheses: the fields after it are split.
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_a_results_file_that_cannot_be_written_stops_the_run_in_one_line(tmp_path: Path) -> None:
    """Before: --json /dev/full ended in an internal error (OSError) with a traceback hint."""
    proc = ocprobe("sequential", "-n", "3", "--json", "/dev/full", tmp_path=tmp_path)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: cannot write --json /dev/full: No space left on device"]
    assert "internal error" not in proc.stderr


def test_a_reader_that_goes_away_ends_the_output_not_the_verdict(tmp_path: Path) -> None:
    """Before: 'ocprobe sequential ... | head -1' exited 1, the code that says a call failed."""
    for args in (("sequential", "-n", "5"), ("sequential", "-n", "5", "--json", "-")):
        proc = subprocess.run(f"{shlex.join([sys.executable, '-m', 'ocprobe', *args])} | head -c 20 >/dev/null; "
                              "echo ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", capture_output=True,
                              text=True, timeout=90, env={**os.environ, "OCPROBE_CACHE": str(tmp_path / "cache")})
        assert proc.stdout.strip() == "0", proc.stderr
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr

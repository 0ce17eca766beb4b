"""``ocprobe bisect`` as a user runs it: a real process over a given version list, each version judged by a
command (``--cmd``, as ``git bisect run``); resume after Ctrl-C; one-line usage errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

VERSIONS = ",".join(f"1.{i}.0" for i in range(10))
JUDGE = '''
import os, sys, time
version, first_bad, runs = sys.argv[1:4]
special = dict(arg.split("=", 1) for arg in sys.argv[4:])  # skip=V exit=V:CODE sleep=V
with open(runs, "a") as f:
    f.write(f"{version} {os.getpid()}\\n")
if version in special.get("skip", "").split(","):
    sys.exit(125)
if special.get("exit", ":").split(":")[0] == version:
    sys.exit(int(special["exit"].split(":")[1]))
if special.get("sleep") == version and not os.path.exists(runs + ".go"):
    time.sleep(60)
print(f"judged {version}")
sys.exit(0 if tuple(map(int, version.split("."))) < tuple(map(int, first_bad.split("."))) else 1)
'''


def ocprobe(*args: str, tmp_path: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ocprobe", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OCPROBE_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"})


def judge(tmp_path: Path, first_bad: str = "1.6.0", *special: str) -> str:
    script = tmp_path / "judge.py"
    script.write_text(JUDGE)
    return " ".join([sys.executable, str(script), "{version}", first_bad, str(tmp_path / "runs.txt"), *special])


def runs(tmp_path: Path) -> list[str]:
    path = tmp_path / "runs.txt"
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def bisect_args(tmp_path: Path, cmd: str, *extra: str) -> list[str]:
    return ["bisect", "--good", "1.0.0", "--bad", "1.9.0", "--versions", VERSIONS, "--cmd", cmd,
            "--run-dir", str(tmp_path / "run"), *extra]


def log(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "run" / "bisect.json").read_text())


def test_a_command_bisect_finds_the_first_bad_version(tmp_path: Path) -> None:
    proc = ocprobe(*bisect_args(tmp_path, judge(tmp_path)), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "RESULT: first bad 1.6.0, last good 1.5.0" in proc.stdout
    assert "$ git bisect start v1.6.0 v1.5.0" in proc.stdout
    assert runs(tmp_path)[:2] == ["1.9.0", "1.0.0"] and len(runs(tmp_path)) <= 6  # endpoints, then ~log2(8) steps
    assert sorted(runs(tmp_path)) == sorted(set(runs(tmp_path)))  # one run per version
    state = log(tmp_path)
    assert state["status"] == "done" and state["result"]["first_new"] == "1.6.0"
    report = (tmp_path / "run" / "report.md").read_text()
    assert "ocprobe bisect --good 1.0.0 --bad 1.9.0" in report and "exit 1: judged 1.6.0" in report
    assert (tmp_path / "run" / "1.6.0" / "session-1" / "command-1.log").read_text() == "judged 1.6.0\n"


def test_skipped_versions_leave_the_boundary_open_exit_3(tmp_path: Path) -> None:
    proc = ocprobe(*bisect_args(tmp_path, judge(tmp_path, "1.6.0", "skip=1.4.0,1.5.0")), tmp_path=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "first bad 1.6.0, last good 1.3.0; the change may also be in 1.4.0, 1.5.0" in proc.stdout
    skipped = {r["version"]: r["evidence"] for r in log(tmp_path)["records"] if r["verdict"] == "skip"}
    assert skipped == {"1.4.0": "the command exited 125 (skip)", "1.5.0": "the command exited 125 (skip)"}


def test_endpoints_that_do_not_verify_stop_with_one_line(tmp_path: Path) -> None:
    proc = ocprobe(*bisect_args(tmp_path, judge(tmp_path, "9.9.9")), tmp_path=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --bad 1.9.0 does not fail: 0/1 failed in 1 calls, so there is no change to bisect with this probe")
    assert log(tmp_path)["status"] == "aborted"


def test_an_exit_code_above_127_stops_the_bisect(tmp_path: Path) -> None:
    proc = ocprobe(*bisect_args(tmp_path, judge(tmp_path, "1.6.0", "exit=1.4.0:200")), tmp_path=tmp_path)
    assert proc.returncode == 1
    assert "the command exited 200 on 1.4.0: above 127" in proc.stderr


def test_a_command_past_its_timeout_is_stopped_and_skipped(tmp_path: Path) -> None:
    proc = ocprobe(*bisect_args(tmp_path, judge(tmp_path, "1.6.0", "sleep=1.6.0"), "--cmd-timeout", "1"),
                   tmp_path=tmp_path)
    assert proc.returncode == 3, proc.stderr
    record = next(r for r in log(tmp_path)["records"] if r["version"] == "1.6.0")
    assert record["verdict"] == "skip" and "timed out after 1 s" in record["evidence"]
    assert "first bad 1.7.0, last good 1.5.0; the change may also be in 1.6.0" in proc.stdout


def test_ctrl_c_prints_the_resume_command_and_resume_probes_only_what_is_left(tmp_path: Path) -> None:
    args = bisect_args(tmp_path, judge(tmp_path, "1.6.0", "sleep=1.4.0"))
    proc = subprocess.Popen([sys.executable, "-m", "ocprobe", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OCPROBE_CACHE": str(tmp_path / "cache")})
    deadline = time.monotonic() + 30
    while "1.4.0" not in runs(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    sleeper = int((tmp_path / "runs.txt").read_text().splitlines()[-1].split()[1])
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert f"continue with: ocprobe bisect --resume {tmp_path / 'run'}" in err
    state = log(tmp_path)
    assert state["status"] == "interrupted" and {r["version"]: r["verdict"] for r in state["records"]} == {
        "1.9.0": "bad", "1.0.0": "good", "1.4.0": None}
    with pytest.raises(ProcessLookupError):  # the command's whole process group was stopped
        for _ in range(50):
            os.kill(sleeper, 0)
            time.sleep(0.1)

    # The log names a command: it runs again only when the user gives that same command, having seen it.
    saved = state["settings"]["cmd"]
    refused = ocprobe("bisect", "--resume", str(tmp_path / "run"), "--cmd", "true {version}", tmp_path=tmp_path)
    assert refused.returncode == 2 and f"judges versions by running {saved!r}" in refused.stderr
    unconfirmed = ocprobe("bisect", "--resume", str(tmp_path / "run"), tmp_path=tmp_path)
    assert unconfirmed.returncode == 2 and "runs no command only because a log file names it" in unconfirmed.stderr
    (tmp_path / "runs.txt.go").touch()
    resumed = ocprobe("bisect", "--resume", str(tmp_path / "run"), "--cmd", saved, tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "RESULT: first bad 1.6.0, last good 1.5.0" in resumed.stdout
    done = runs(tmp_path)
    assert done.count("1.0.0") == 1 and done.count("1.9.0") == 1 and done.count("1.4.0") == 2
    again = ocprobe("bisect", "--resume", str(tmp_path / "run"), "--cmd", saved, tmp_path=tmp_path)
    assert again.returncode == 2 and "is finished" in again.stderr


def test_quiet_prints_the_result_line_only(tmp_path: Path) -> None:
    proc = ocprobe(*bisect_args(tmp_path, judge(tmp_path), "--quiet"), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("RESULT: first bad 1.6.0, last good 1.5.0") and len(proc.stdout.splitlines()) == 1
    assert not proc.stderr


def test_json_lines(tmp_path: Path) -> None:
    proc = ocprobe(*bisect_args(tmp_path, judge(tmp_path), "--json"), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [r["record"] for r in records]
    assert kinds[0] == "bisect" and kinds[-1] == "bisect-result" and "batch" in kinds and "verdict" in kinds
    assert records[-1]["first_new"] == "1.6.0" and records[-1]["git"] == ["git bisect start v1.6.0 v1.5.0"]


@pytest.mark.parametrize("args, message", [
    (["--good", "1.0.0"], "give --good VERSION and --bad VERSION"),
    (["--good", "1.0.0", "--bad", "1.9.0", "--cmd", "true"], "--cmd must contain {version}"),
    (["--good", "1.0.0", "--bad", "1.9.0", "--cmd", "true '{version}"], "bad --cmd"),
    (["--good", "1.0.0", "--bad", "1.9.0", "--cmd", "true {version}", "--gap", "0.1"], "--gap: not with --cmd"),
    (["--good", "1.0.0", "--bad", "1.9.0", "--cmd", "true {version}", "--scenario", "x"], "--cmd or --scenario, not both"),
    (["--good", "1.0.0", "--bad", "1.9.0", "--risk", "0.7", "--cmd", "true {version}"], "--risk must be between 0 and 0.5"),
    (["--good", "1.0.0", "--bad", "1.9.0", "-n", "20", "--max-calls", "10"], "--max-calls must be between -n (20)"),
    (["--good", "1.0.0", "--bad", "2.0.0", "--cmd", "true {version}"], "--bad '2.0.0' is not a published version"),
    (["--good", "1.0.0", "--bad", "1.9.0", "--gate", "real.rate >> 1"], "bad gate"),
    (["--resume", "/nonexistent/dir"], "no bisect.json there"),
])
def test_usage_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    if "--resume" not in args:
        args = [*args, "--versions", VERSIONS]
    proc = ocprobe("bisect", *args, tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def _damaged_logs() -> list[tuple[str, Any]]:
    """(what, change to a valid log) pairs: each must end in one line naming the damage, never a traceback."""
    def set_(path: tuple[Any, ...], value: Any) -> Any:
        def change(data: dict[str, Any]) -> None:
            node = data
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
        return change

    return [
        ("a version outside the cache", set_(("records", 0, "version"), "../../x")),
        ("an endpoint outside the cache", set_(("good",), "../../../tmp/evil")),
        ("versions not a list", set_(("versions",), "1.0.0")),
        ("a record not an object", set_(("records", 0), "junk")),
        ("batches not a list", set_(("records", 0, "batches"), 7)),
        ("failed above trials", set_(("records", 0, "batches", 0, "failed"), 99)),
        ("a negative count", set_(("records", 0, "batches", 0, "calls"), -1)),
        ("a verdict unknown", set_(("records", 0, "verdict"), "maybe")),
        ("risk not a number", set_(("risk",), "high")),
        ("settings not an object", set_(("settings",), [])),
        ("a setting missing", lambda data: data["settings"].pop("calls")),
    ]


@pytest.mark.parametrize(("what", "change"), _damaged_logs(), ids=[w for w, _ in _damaged_logs()])
def test_a_damaged_log_is_refused_in_one_line(tmp_path: Path, what: str, change: Any) -> None:
    """Before: a version '../../x' in bisect.json made --resume write outside the run dir, and 4 of 7 damaged
    logs ended in internal errors."""
    proc = ocprobe(*bisect_args(tmp_path, judge(tmp_path)), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = log(tmp_path)
    data["status"] = "interrupted"
    change(data)
    (tmp_path / "run" / "bisect.json").write_text(json.dumps(data))
    saved = log(tmp_path)["settings"]["cmd"] if isinstance(log(tmp_path).get("settings"), dict) else None
    args = ["bisect", "--resume", str(tmp_path / "run"), *(["--cmd", saved] if isinstance(saved, str) else [])]
    resumed = ocprobe(*args, tmp_path=tmp_path)
    assert resumed.returncode == 2, resumed.stdout
    lines = resumed.stderr.strip().splitlines()
    assert len(lines) == 1 and "bisect.json is damaged" in lines[0] and "internal error" not in lines[0], lines
    assert not (tmp_path / "x").exists() and not Path("/tmp/evil").exists()

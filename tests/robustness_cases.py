"""Every fault profile and bad input ocprobe is tested against, in one table.

The tests are parametrized from it (tests/reference/test_faults.py, tests/cli/test_bad_input.py) and
docs/robustness.md is rendered from it, so the document cannot drift from what is tested:

    python -m tests.robustness_cases > docs/robustness.md
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

# Every fault case runs ``ocprobe sequential`` against the embedded target with these options.
FAULT_ARGS = ("--latency-ms", "50", "--settle", "0.2", "--timeout", "1.5", "--log-pattern", "injected fault")
CLASS_MARK = {"real": "R", "timeout": "T", "error": "E", "wrong": "W", "fast_fail": "F", "empty": "0"}


@dataclass(frozen=True)
class FaultCase:
    id: str
    faults: tuple[str, ...]
    classes: tuple[str, ...]  # of the calls that end, in call order
    hits: tuple[int, ...]  # the calls the faults hit (1-based): their gateway log lines belong to them
    exit_code: int
    observed: str  # what ocprobe does about it, for the document
    args: tuple[str, ...] = ()  # more options than FAULT_ARGS
    calls: int | None = None  # -n, when more calls are asked for than end (a lost connection)
    min_ms: tuple[tuple[int, float], ...] = ()  # (call, least round trip) for calls made slow
    unattributed: int | None = None  # finals under runs ocprobe did not start
    error: str | None = None  # part of the one error line, for runs that end with exit 2

    @property
    def n(self) -> int:
        return self.calls or len(self.classes)


FAULT_CASES: tuple[FaultCase, ...] = (
    FaultCase("hang", ("hang:every=2",), ("real", "timeout", "real", "timeout"), (2, 4), 1,
              "no final: `timeout` after --timeout; the next call is real"),
    FaultCase("drop", ("drop:every=2",), ("real", "error", "real", "error"), (2, 4), 1,
              "socket closed under the call: `error` (connection closed); the next call reconnects and is real"),
    FaultCase("error-state", ("error-state:every=2",), ("real", "error", "real", "error"), (2, 4), 1,
              "final with state error and errorKind: `error` with the gateway's errorMessage"),
    FaultCase("error-frame", ("error-frame:every=2",), ("real", "error", "real", "error"), (2, 4), 1,
              "chat.send answered ok:false: `error` with the gateway's message; no run starts"),
    FaultCase("garbage", ("garbage:every=2",), ("real",) * 4, (2, 4), 0,
              "non-JSON text, binary, deeply nested and wrongly typed frames are skipped: every call real"),
    FaultCase("wrong-reply", ("wrong-reply:every=2",), ("real", "wrong", "real", "wrong"), (2, 4), 1,
              "reply without the nonce although the LLM was reached: `wrong`"),
    FaultCase("slow-provider", ("slow-provider:every=2,ms=400",), ("real", "real"), (2,), 0,
              "an LLM latency spike under --timeout: `real`, its round trip at least the spike",
              min_ms=((2, 400.0),)),
    FaultCase("slow-provider-timeout", ("slow-provider:every=2,ms=2500",), ("real", "timeout"), (2,), 1,
              "a spike beyond --timeout: `timeout`"),
    FaultCase("duplicate-final", ("duplicate-final:every=2",), ("real",) * 4, (2, 4), 0,
              "the second final is dropped, not taken for a late reply: every call real, no unattributed final",
              unattributed=0),
    FaultCase("out-of-order", ("out-of-order:every=2",), ("real",) * 4, (2, 4), 0,
              "a final for a run nobody started, then the run's events before the chat.send answer: every call "
              "real, the stray finals reported as unattributed", unattributed=2),
    FaultCase("oversize", ("oversize:every=2",), ("real", "error", "real", "error"), (2, 4), 1,
              "a frame above the negotiated maxPayload: the socket is closed (1009), `error` naming both sizes; "
              "the next call reconnects and is real"),
    FaultCase("auth-flap", ("auth-flap:every=2",), ("real", "error", "real", "error"), (2, 4), 1,
              "socket closed, the next connect refused: `error`; the reconnect backs off, retries and succeeds"),
    FaultCase("stall-handshake", ("stall-handshake:every=2,ms=300",), ("real", "error", "real", "error"), (2, 4), 1,
              "socket closed, the next connect gets no challenge: `error`; the reconnect retries and succeeds"),
    FaultCase("rate", ("drop:rate=0.5,seed=1",), ("error", "real", "real", "error"), (1, 4), 1,
              "rate=0.5 with seed 1 hits calls 1 and 4, every run"),
    FaultCase("combined", ("hang:every=3", "wrong-reply:every=2"),
              ("real", "wrong", "timeout", "wrong", "real", "timeout"), (2, 3, 4, 6), 1,
              "two faults: each hits its own calls; call 6, hit by both, gets the first given (hang)"),
    FaultCase("connection-lost", ("auth-flap:every=2,connects=1000",), ("real", "error"), (2,), 2,
              "the connection cannot be re-established: exit 2 after the backoff budget, every finished call "
              "and the summary written", calls=4, error="lost the connection and could not re-establish it"),
)


@dataclass(frozen=True)
class BadInput:
    id: str
    argv: tuple[str, ...]  # after ``ocprobe``; {tmp} is a directory holding FILES
    error: str  # a part of the one line on stderr
    env: tuple[tuple[str, str], ...] = ()


# Input files the bad inputs name, by file name under {tmp}.
_CALL = {"record": "call", "index": 1, "class": "real", "latency_ms": 10.0}
_START = {"record": "start", "schema_version": 1, "target": {"target": "embedded"}, "calls": 1}
_SUMMARY = {"record": "summary", "schema_version": 1, "calls": 1, "target": {"gateway_version": "x"}}
FILES: dict[str, bytes] = {
    "empty.token": b"",
    "blank.token": b"  \n\t\n",
    "binary.token": b"\xff\xfe\x00\x01token",
    "binary.log": b"2026-05-04 ok\n\x00\x01\x02\x03 binary\n",
    "good.jsonl": "".join(json.dumps(r) + "\n" for r in (_START, _CALL, _SUMMARY)).encode(),
    "truncated.jsonl": "".join(json.dumps(r) + "\n" for r in (_START, _CALL, _CALL)).encode(),
    "cut.jsonl": ("".join(json.dumps(r) + "\n" for r in (_START, _CALL)) + '{"record": "ca').encode(),
    "future.jsonl": "".join(json.dumps({**r, "schema_version": 99}) + "\n" for r in (_START, _CALL, _SUMMARY)).encode(),
    "foreign.jsonl": b'{"level": "info", "msg": "hello"}\n',
    "array.jsonl": b"[1, 2, 3]\n",
    "summary.json": json.dumps({"schema_version": 1, "pooled": {}, "runs": []}, indent=2).encode(),
    "empty.jsonl": b"",
    "binary.jsonl": b"\x89PNG\r\n\x1a\n\x00\x00",
    "badcall.jsonl": b'{"record": "call", "class": "splendid", "latency_ms": 1}\n',
    "nan.jsonl": "".join(json.dumps(r) + "\n" for r in (_START, {**_CALL, "latency_ms": float("nan")}, _SUMMARY)).encode(),
    "inf.jsonl": "".join(json.dumps(r) + "\n" for r in (_START, {**_CALL, "latency_ms": float("inf")}, _SUMMARY)).encode(),
    "classlist.jsonl": b'{"record": "call", "class": ["real"], "latency_ms": 1}\n',
    "deep.toml": b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "longline.jsonl": b'{"record": "call", "reply": "' + b"x" * (5 * 2**20) + b'"}\n',
}
_SEQ = ("sequential", "-n", "1")
_WS = ("--target", "ws://127.0.0.1:1")

BAD_INPUTS: tuple[BadInput, ...] = (
    # numbers
    BadInput("calls-zero", ("sequential", "-n", "0"), "-n must be between 1 and 100000, got 0"),
    BadInput("calls-negative", ("sequential", "-n", "-5"), "-n must be between 1 and 100000, got -5"),
    BadInput("calls-absurd", ("sequential", "-n", "1000000000"), "-n must be between 1 and 100000"),
    BadInput("calls-not-a-number", ("sequential", "-n", "ten"), "Invalid value for '-n' / '--calls'"),
    BadInput("timeout-zero", (*_SEQ, "--timeout", "0"), "--timeout must be between 0 and 3600, got 0"),
    BadInput("timeout-nan", (*_SEQ, "--timeout", "nan"), "--timeout must be between 0 and 3600, got nan"),
    BadInput("timeout-inf", (*_SEQ, "--timeout", "inf"), "--timeout must be between 0 and 3600, got inf"),
    BadInput("gap-negative", (*_SEQ, "--gap", "-1"), "--gap must be between 0 and 3600"),
    BadInput("floor-negative", (*_SEQ, "--floor-ms", "-1"), "--floor-ms must be between 0 and 3600000"),
    BadInput("floor-nan", (*_SEQ, "--floor-ms", "nan"), "--floor-ms must be between 0 and 3600000, got nan"),
    BadInput("settle-absurd", (*_SEQ, "--settle", "1e9"), "--settle must be between 0 and 600"),
    BadInput("latency-negative", (*_SEQ, "--latency-ms", "-1"), "--latency-ms must be between 0 and 600000"),
    BadInput("jitter-nan", (*_SEQ, "--jitter-ms", "nan"), "--jitter-ms must be between 0 and 600000, got nan"),
    BadInput("teardown-absurd", (*_SEQ, "--teardown-ms", "1e12"), "--teardown-ms must be between 0 and 600000"),
    BadInput("repeat-zero", (*_SEQ, "--repeat", "0"), "--repeat must be between 1 and 1000"),
    BadInput("concurrency-zero", ("concurrent", "-c", "0"), "-c must be between 1 and 1000"),
    BadInput("concurrency-absurd", ("concurrent", "-c", "100000"), "-c must be between 1 and 1000"),
    BadInput("rate-nan", ("concurrent", "--rate", "nan"), "--rate must be between 0 and 10000"),
    BadInput("sessions-zero", ("concurrent", "--sessions", "0"), "--sessions must be between 1 and 1000"),
    BadInput("profile-unknown", (*_SEQ, "--profile", "chaotic"), "Invalid value for '--profile'"),
    # templates, patterns, gates
    BadInput("message-no-nonce", (*_SEQ, "--message", "hello {i}"), "it must contain {nonce}"),
    BadInput("message-unknown-field", (*_SEQ, "--message", "{nonce} {who}"), "unknown field '{who}'"),
    BadInput("message-positional", (*_SEQ, "--message", "{0} {nonce}"), "unknown field '{0}'"),
    BadInput("message-unclosed", (*_SEQ, "--message", "hello {nonce"), "bad --message template"),
    BadInput("message-conversion", (*_SEQ, "--message", "{nonce!x}"), "'{nonce!x}' has a format spec or conversion"),
    BadInput("message-format-spec", (*_SEQ, "--message", "{nonce:.3}"), "has a format spec or conversion"),
    BadInput("message-nested-spec", (*_SEQ, "--message", "{nonce:.{i}}"), "has a format spec or conversion"),
    BadInput("message-huge-spec", (*_SEQ, "--message", "{nonce} {i:{i}{i}}"), "'{i:{i}{i}}' has a format spec"),
    BadInput("message-conversion-repr", (*_SEQ, "--message", "{nonce!r}"), "has a format spec or conversion"),
    BadInput("session-key-blank", (*_SEQ, "--session-key", "  "), "--session-key must not be empty"),
    BadInput("log-pattern-regex", (*_SEQ, "--log-pattern", "(unclosed"), "bad --log-pattern '(unclosed'"),
    BadInput("gate-syntax", (*_SEQ, "--gate", "real.rate >> 1"), "bad gate 'real.rate >> 1'"),
    BadInput("gate-metric", (*_SEQ, "--gate", "speed.max < 3"), "unknown metric 'speed.max'"),
    BadInput("gate-regex", (*_SEQ, "--gate", 'log["(x"] == 0'), "bad --log-pattern '(x'"),
    # log paths
    BadInput("log-directory", (*_SEQ, "--log", "{tmp}"), "is a directory, not a log file"),
    BadInput("log-binary", (*_SEQ, "--log", "{tmp}/binary.log"), "looks binary, not a text log"),
    # targets, versions and tokens
    BadInput("target-scheme", (*_SEQ, "--target", "ftp://127.0.0.1:1"), "unsupported target 'ftp://127.0.0.1:1'"),
    BadInput("target-word", (*_SEQ, "--target", "production"), "unsupported target 'production'"),
    BadInput("target-no-host", (*_SEQ, "--target", "ws://"), "has no host"),
    BadInput("target-bad-port", (*_SEQ, "--target", "ws://127.0.0.1:99999"), "has an invalid port"),
    BadInput("target-ipv6-unclosed", (*_SEQ, "--target", "ws://[::1:80/"), "is not a valid URL"),
    BadInput("target-credentials", (*_SEQ, "--target", "ws://user:pw@127.0.0.1:1"), "must not carry credentials"),
    BadInput("target-not-loopback", (*_SEQ, "--target", "ws://10.1.2.3:18789"), "is not loopback"),
    BadInput("target-embedded-profile", (*_SEQ, "--target", "embedded:chaotic"), "unknown profile 'chaotic'"),
    BadInput("version-missing", (*_SEQ, "--target", "openclaw@"), "names no version"),
    BadInput("version-malformed", (*_SEQ, "--target", "openclaw@1.2"), "is neither a version"),
    BadInput("version-path", (*_SEQ, "--target", "openclaw@../../etc"), "is neither a version"),
    BadInput("token-missing", (*_SEQ, *_WS, "--token-env", "OCPROBE_TEST_UNSET"), "no gateway token: set $OCPROBE_TEST_UNSET"),
    BadInput("token-blank-env", (*_SEQ, *_WS), "no gateway token", env=(("OPENCLAW_GATEWAY_TOKEN", "   "),)),
    BadInput("token-file-missing", (*_SEQ, *_WS, "--token-file", "{tmp}/nope.token"), "cannot read token file"),
    BadInput("token-file-empty", (*_SEQ, *_WS, "--token-file", "{tmp}/empty.token"), "is empty"),
    BadInput("token-file-blank", (*_SEQ, *_WS, "--token-file", "{tmp}/blank.token"), "is empty"),
    BadInput("token-file-binary", (*_SEQ, *_WS, "--token-file", "{tmp}/binary.token"), "cannot read token file"),
    BadInput("token-file-directory", (*_SEQ, *_WS, "--token-file", "{tmp}"), "is not a regular file"),
    BadInput("token-file-device", (*_SEQ, *_WS, "--token-file", "/dev/zero"), "token file /dev/zero is not a regular file"),
    BadInput("log-pattern-lookaround", (*_SEQ, "--log-pattern", "(?<=x)y"), "patterns are RE2"),
    # fault specs
    BadInput("fault-unknown", (*_SEQ, "--fault", "explode:every=2"), "unknown fault 'explode'"),
    BadInput("fault-no-selector", (*_SEQ, "--fault", "hang"), "give exactly one of every=N or rate=P"),
    BadInput("fault-both-selectors", (*_SEQ, "--fault", "drop:every=2,rate=0.1"), "give exactly one of every=N or rate=P"),
    BadInput("fault-every-zero", (*_SEQ, "--fault", "hang:every=0"), "every out of range"),
    BadInput("fault-every-word", (*_SEQ, "--fault", "hang:every=two"), "every must be an integer"),
    BadInput("fault-rate-zero", (*_SEQ, "--fault", "drop:rate=0"), "rate out of range (0 < rate <= 1)"),
    BadInput("fault-rate-nan", (*_SEQ, "--fault", "drop:rate=nan"), "rate out of range (0 < rate <= 1)"),
    BadInput("fault-seed-alone", (*_SEQ, "--fault", "drop:every=2,seed=1"), "seed goes with rate=P only"),
    BadInput("fault-option-unknown", (*_SEQ, "--fault", "hang:every=2,ms=5"), "unknown option 'ms'"),
    BadInput("fault-option-range", (*_SEQ, "--fault", "slow-provider:every=2,ms=-1"), "ms out of range"),
    BadInput("fault-option-twice", (*_SEQ, "--fault", "hang:every=2,every=3"), "every given twice"),
    BadInput("fault-not-key-value", (*_SEQ, "--fault", "hang:every"), "expected KEY=VALUE"),
    BadInput("fault-name-twice", (*_SEQ, "--fault", "hang:every=2", "--fault", "hang:every=3"), "hang given twice"),
    BadInput("fault-external-target", (*_SEQ, *_WS, "--fault", "hang:every=2"), "--fault applies to the embedded target only"),
    BadInput("fault-http-transport", (*_SEQ, "--transport", "relay", "--fault", "hang:every=2"), "it needs --transport ws"),
    # the standalone gateway
    BadInput("serve-fault", ("gateway", "serve", "--fault", "drop:rate=2"), "rate out of range"),
    BadInput("serve-port", ("gateway", "serve", "--port", "70000"), "ports must be between 0 and 65535"),
    BadInput("serve-provider-url", ("gateway", "serve", "--provider-url", "ftp://x"), "is not an http(s)://"),
    BadInput("serve-log-file", ("gateway", "serve", "--log-file", "/proc/ocprobe-nope/err.log"), "cannot write --log-file"),
    BadInput("serve-token-file", ("gateway", "serve", "--token-file", "{tmp}/empty.token"), "is empty"),
    # results files given to compare
    BadInput("results-truncated", ("compare", "{tmp}/truncated.jsonl", "{tmp}/good.jsonl"), "truncated: 2 call record(s) but no summary record"),
    BadInput("results-cut-line", ("compare", "{tmp}/cut.jsonl", "{tmp}/good.jsonl"), "cut.jsonl:3: not JSON"),
    BadInput("results-schema", ("compare", "{tmp}/future.jsonl", "{tmp}/good.jsonl"), "written with results schema version 99"),
    BadInput("results-foreign", ("compare", "{tmp}/foreign.jsonl", "{tmp}/good.jsonl"), "not an ocprobe record"),
    BadInput("results-array", ("compare", "{tmp}/array.jsonl", "{tmp}/good.jsonl"), "not an ocprobe record"),
    BadInput("results-report-summary", ("compare", "{tmp}/summary.json", "{tmp}/good.jsonl"), "is a report's summary.json"),
    BadInput("results-empty", ("compare", "{tmp}/empty.jsonl", "{tmp}/good.jsonl"), "no call records"),
    BadInput("results-binary", ("compare", "{tmp}/binary.jsonl", "{tmp}/good.jsonl"), "cannot read results file"),
    BadInput("results-bad-call", ("compare", "{tmp}/badcall.jsonl", "{tmp}/good.jsonl"), "a call record without a valid class"),
    BadInput("results-missing", ("compare", "{tmp}/nope.jsonl", "{tmp}/good.jsonl"), "cannot read results file"),
    BadInput("results-directory", ("compare", "{tmp}", "{tmp}/good.jsonl"), "cannot read results file"),
    BadInput("results-one", ("compare", "{tmp}/good.jsonl"), "compare needs at least two"),
    # output paths, checked before the first call
    BadInput("run-dir-is-a-file", (*_SEQ, "--run-dir", "{tmp}/empty.token"), "cannot create --run-dir"),
    BadInput("cache-is-a-file", _SEQ, "cannot create a run dir in the cache", env=(("OCPROBE_CACHE", "{tmp}/empty.token"),)),
    BadInput("compare-markdown-full-disk", ("compare", "{tmp}/good.jsonl", "{tmp}/good.jsonl", "--markdown", "/dev/full"),
             "cannot write --markdown /dev/full"),
    BadInput("results-long-line", ("compare", "{tmp}/longline.jsonl", "{tmp}/good.jsonl"), "longline.jsonl:1: a line over 4 MiB"),
    BadInput("results-class-list", ("compare", "{tmp}/classlist.jsonl", "{tmp}/good.jsonl"), "without a valid class"),
    BadInput("results-nan", ("compare", "{tmp}/nan.jsonl", "{tmp}/good.jsonl"), "a finite number of milliseconds"),
    BadInput("results-infinity", ("compare", "{tmp}/inf.jsonl", "{tmp}/good.jsonl"), "a finite number of milliseconds"),
    BadInput("scenario-nested-deep", ("run", "--check", "{tmp}/deep.toml"), "nested too deep to be a scenario"),
    BadInput("report-is-a-file", ("sequential", "-n", "1", "--report", "{tmp}/empty.token"),
             "empty.token: it exists and is not a directory"),
    BadInput("report-under-a-file", ("sequential", "-n", "1", "--report", "{tmp}/empty.token/sub"), "cannot write --report"),
    # protocol versions and the release matrix
    BadInput("protocol-unknown", ("sequential", "--protocol", "5"), "Invalid value for '--protocol'"),
    BadInput("matrix-probe-unknown", ("matrix", "run", "--versions", "2026.5.3", "--probe", "soak:n=5"),
             "write MODE:KEY=VALUE,... with MODE sequential or concurrent"),
    BadInput("matrix-probe-key", ("matrix", "run", "--versions", "2026.5.3", "--probe", "concurrent:n=4,rate=3"),
             "unknown key 'rate' for concurrent"),
    BadInput("matrix-sample-without-range", ("matrix", "run", "--versions", "2026.5.3", "--sample", "3"),
             "--sample takes a --range"),
    BadInput("matrix-merge-not-a-cell", ("matrix", "merge", "{tmp}/good.jsonl"), "not JSON"),
    # the command line itself
    BadInput("option-unknown", ("sequential", "--colour"), "No such option: --colour"),
    BadInput("command-unknown", ("probe",), "No such command 'probe'"),
)


def _strip(classes: Sequence[str]) -> str:
    return "".join(CLASS_MARK[c] for c in classes)


def _arg(arg: str) -> str:
    return arg if arg and " " not in arg else repr(arg)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    lines = [
        "# Robustness: hostile gateways and bad input",
        "",
        "Generated by `python -m tests.robustness_cases` from the table the tests run "
        "(tests/reference/test_faults.py, tests/cli/test_bad_input.py); a test fails when this file differs.",
        "",
        "## Fault profiles of the reference gateway",
        "",
        "`ocprobe sequential --fault SPEC " + " ".join(map(_arg, FAULT_ARGS)) + "` against the embedded target. Classes per "
        "call: " + ", ".join(f"{mark} {name}" for name, mark in CLASS_MARK.items()) + ". Every fault writes "
        "`injected fault NAME: ...` to the gateway's stderr and error log; the lines are attributed to the hit calls.",
        "",
        "| case | --fault | calls hit | classes | exit | observed |",
        "|---|---|---|---|---|---|",
    ]
    for case in FAULT_CASES:
        faults = " ".join(f"`{f}`" for f in case.faults) + "".join(f" `{a}`" for a in case.args)
        classes = _strip(case.classes) + (f" (of -n {case.calls})" if case.calls else "")
        lines.append(f"| {case.id} | {faults} | {', '.join(map(str, case.hits))} | {classes} | {case.exit_code} | "
                     f"{_cell(case.observed)} |")
    lines += [
        "",
        "## Bad input",
        "",
        "Each is refused before anything runs (no gateway started, no run directory made) with exit 2 and one "
        "line on stderr containing the text shown. `{tmp}` holds the input files the test writes.",
        "",
        "| case | command | error line contains |",
        "|---|---|---|",
    ]
    for bad in BAD_INPUTS:
        env = " ".join(f"{k}={v!r}" for k, v in bad.env)
        command = " ".join(["ocprobe", *map(_arg, bad.argv)])
        lines.append(f"| {bad.id} | `{_cell((env + ' ' if env else '') + command)}` | {_cell(bad.error)} |")
    lines += [
        "",
        "Also tested, outside this table: the WebSocket transport against each fault in process "
        "(tests/transports/test_ws_faults.py), the log watcher under rotation, truncation, deletion, partial lines, "
        "non-UTF-8 text and a flooding stderr (tests/test_logwatch.py), fuzzed frames and gates (tests/test_fuzz.py) "
        "and a 10,000-call soak with mixed faults (tests/test_soak.py); hostile text, secrets and bounds "
        "(tests/transports/test_hostile_text.py, tests/test_scenario_secrets.py, tests/test_secrets.py, "
        "tests/test_fuzz_hostile.py).",
        "",
        "## Bounds",
        "",
        "Every input from outside has a bound; these are the constants the code uses (read from it when this "
        "file is generated).",
        "",
        "| what | bound | past it |",
        "|---|---|---|",
        *(f"| {what} | {bound} | {past} |" for what, bound, past in _bounds()),
        "",
    ]
    return "\n".join(lines)


def _bounds() -> list[tuple[str, str, str]]:
    from ocprobe import logwatch, matrix, models
    from ocprobe.bisect import state
    from ocprobe.compare import MAX_CALLS, MAX_RECORD_LINE
    from ocprobe.engine import MAX_FOREIGN
    from ocprobe.runner import LIMITS
    from ocprobe.sweep import MAX_POINTS
    from ocprobe.targets import MAX_TOKEN_FILE
    from ocprobe.transports.http import MAX_BODY, MAX_LINE
    from ocprobe.transports.ws import MAX_FRAME_BYTES

    mib = 2**20
    return [
        ("a WebSocket frame", f"{MAX_FRAME_BYTES // mib} MiB", "the connection is closed (1009); the call is an error"),
        ("an HTTP answer, and a streamed reply's text (decoded)", f"{MAX_BODY // mib} MiB", "the call is an error (too_large)"),
        ("an SSE line", f"{MAX_LINE // mib} MiB", "the call is an error (unreadable answer)"),
        ("a reply kept in a record, a stray final's text", f"{models.KEPT_TEXT} characters",
         "cut, with the length and every nonce in the rest"),
        ("stray finals kept per run", f"{MAX_FOREIGN}", "later ones are not kept"),
        ("a token file", f"{MAX_TOKEN_FILE // 1024} KiB, a regular file", "refused"),
        ("files a --log glob follows", f"{logwatch.MAX_FILES} (of at most {logwatch.MAX_GLOB_ENTRIES} entries "
         f"per glob, re-expanded at most every {logwatch.EXPAND_INTERVAL:g} s)", "left out"),
        ("a matched log line kept", f"{logwatch.MAX_LINE} characters", "cut"),
        ("a log line without a newline", f"{logwatch.MAX_PENDING // mib} MiB", "taken as complete"),
        ("a results file line (compare)", f"{MAX_RECORD_LINE // mib} MiB", "refused"),
        ("calls in a results file (compare)", f"{MAX_CALLS}", "refused"),
        ("a bisect log", f"{state.MAX_LOG_BYTES // mib} MiB", "refused"),
        ("a matrix cell file", f"{matrix.MAX_CELL_BYTES // mib} MiB", "refused"),
        ("releases in a matrix", f"{matrix.MAX_VERSIONS}", "refused (--sample N)"),
        ("points of a sweep", f"{MAX_POINTS}", "refused"),
        *((f"`{limit.option}`", f"{limit.low:g} to {limit.high:g}", "refused") for limit in LIMITS.values()),
        ("a log pattern", "RE2 syntax: linear time in the line", "refused (backreferences, lookaround)"),
        ("a message template", "{i} and {nonce}, no format spec or conversion", "refused"),
    ]


if __name__ == "__main__":
    print(render(), end="")

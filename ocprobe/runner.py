"""One probe from start to end: watch logs, open the target, run the engine, tear everything down."""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol
from pathlib import Path

from ocprobe.engine import (
    DEFAULT_SESSION_KEY, ConcurrencyStats, ConcurrentConfig, ConcurrentResult, ProbeConfig, ProbeEngine, ProbeObserver, ScriptCallRecord,
    ScriptConfig, SendStep, pooled_concurrency, pooled_summary, summarize,
)
from ocprobe.errors import OcprobeError, UsageError
from ocprobe.gates import Gate, GateResult, GateSyntaxError, UnknownMetricError, overall_status, parse_gates, probe_metrics
from ocprobe.logwatch import DEFAULT_PATTERNS, LogWatcher
from ocprobe.patterns import PatternError, compile_pattern
from ocprobe.process import ensure_open_files
from ocprobe.models import ProbeResult, ProbeSummary, TargetInfo
from ocprobe.secret import Redactor
from ocprobe.transports.base import Transport
from ocprobe.targets import TargetSpec, open_target, run_dir_for, validate_target

TEMPLATE_FIELDS = {"i", "nonce"}
AUTO_SESSION_KEY = "auto"  # --session-key auto: a key no earlier probe used
EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INCONCLUSIVE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def validate_message_template(template: str) -> None:
    try:
        parsed = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as exc:
        raise UsageError(f"bad --message template {template!r}: {exc}") from None
    for name, spec, conversion in parsed:
        # A format spec or conversion changes what is sent ('{nonce:.3}' cuts the nonce) and can be made to
        # allocate without bound ('{i:{i}{i}}'): placeholders are plain.
        if spec or conversion:
            field = "{" + name + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
            raise UsageError(f"bad --message template {template!r}: {field!r} has a format spec or conversion; "
                             f"placeholders are plain ({{i}}, {{nonce}})")
    fields = {name for name, _, _ in parsed}
    unknown = fields - TEMPLATE_FIELDS
    if unknown:
        field = "{" + sorted(unknown)[0] + "}"
        raise UsageError(f"bad --message template: unknown field {field!r} (use {{i}} and {{nonce}})")
    if "nonce" not in fields:
        raise UsageError("bad --message template: it must contain {nonce}, the token that proves a real reply")


def log_patterns(extra: Sequence[str]) -> list[str]:
    patterns = list(DEFAULT_PATTERNS)
    for pattern in extra:
        try:
            compile_pattern(pattern)
        except PatternError as exc:
            raise UsageError(f"bad --log-pattern {pattern!r}: {exc} (patterns are RE2: no backreferences or "
                             f"lookaround)") from None
        if pattern not in patterns:
            patterns.append(pattern)
    return patterns


def validate_log_paths(paths: Sequence[str]) -> None:
    for path in paths:
        if any(ch in path for ch in "*?["):
            continue  # a glob may match files that appear later
        p = Path(path)
        if p.is_dir():
            raise UsageError(f"--log {path} is a directory, not a log file")
        if p.exists():
            if not p.is_file():  # opening a FIFO would wait for a writer, forever
                raise UsageError(f"--log {path} is not a regular file (a FIFO or a device cannot be tailed)")
            try:
                with p.open("rb") as f:
                    head = f.read(4096)
            except OSError as exc:
                raise UsageError(f"cannot read --log {path}: {exc.strerror}") from None
            if b"\0" in head:
                raise UsageError(f"--log {path} looks binary, not a text log")


@dataclass(frozen=True)
class Limit:
    """The accepted range of a probe setting, and the option that sets it on the command line."""

    option: str
    low: float
    high: float
    low_open: bool = False  # the low end itself is refused (e.g. a timeout of 0)

    def check(self, value: float | None, name: str | None = None) -> None:
        """``name``: how to call the setting in the error (default: its option)."""
        if value is None:
            return
        if not self.low <= value <= self.high or (self.low_open and value == self.low):  # NaN fails too
            raise UsageError(f"{name or self.option} must be between {_num(self.low)} and {_num(self.high)}, got {_num(value)}")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


#: Probe settings by config field. Where a setting is both an option and a scenario key, both are checked here.
LIMITS: dict[str, Limit] = {
    "calls": Limit("-n", 1, 100_000),
    "timeout": Limit("--timeout", 0, 3600, low_open=True),
    "floor_ms": Limit("--floor-ms", 0, 3_600_000),
    "settle": Limit("--settle", 0, 600),
    "gap": Limit("--gap", 0, 3600),
    "concurrency": Limit("-c", 1, 1000),
    "sessions": Limit("--sessions", 1, 1000),
    "rate": Limit("--rate", 0, 10_000, low_open=True),
    "duration": Limit("--duration", 0, 86_400, low_open=True),
    "repeat": Limit("--repeat", 1, 1000),
    "iterations": Limit("iterations", 1, 100_000),
}


def validate_config(cfg: ProbeConfig) -> None:
    """Refuse out-of-range options of any probe mode before anything starts."""
    for name, limit in LIMITS.items():
        limit.check(getattr(cfg, name, None))
    if not cfg.session_key.strip():
        raise UsageError("--session-key must not be empty")
    validate_message_template(cfg.message)
    if isinstance(cfg, ScriptConfig):
        for step in cfg.steps:
            if isinstance(step, SendStep):
                validate_message_template(step.message)


@dataclass
class ProbeOutcome:
    """Every run of one probe command, pooled, with its gates and the exit code they mean."""

    target: TargetInfo
    runs: list[ProbeResult]
    pooled: ProbeSummary
    gates: list[GateResult]
    gate_status: str | None  # None without gates
    exit_code: int
    concurrency: ConcurrencyStats | None = None  # concurrent probes: per-session strips and throughput, pooled
    expectations: tuple[int, int] | None = None  # scripted probes: (met, judged) over every call's ``expect``

    def __repr__(self) -> str:
        # Short on purpose: asyncio.run() reprs its main task (and so this, its result) when it restores
        # the SIGINT handler, and the generated repr of every record cost megabytes at exit.
        calls = sum(len(r.records) for r in self.runs)
        return f"ProbeOutcome(target={self.target.target!r}, runs={len(self.runs)}, calls={calls}, exit_code={self.exit_code})"


class SessionObserver(ProbeObserver, Protocol):
    def info(self, message: str) -> None: ...  # start-up steps worth showing (installing, launching)

    def warn(self, message: str) -> None: ...

    def probe_started(self, target: TargetInfo, calls: int, secrets: Sequence[str]) -> None: ...

    def probe_finished(self, outcome: ProbeOutcome) -> None: ...


def prepare_gates(texts: Sequence[str], patterns: list[str]) -> list[Gate]:
    """Parse gates and check their metrics before anything runs; a log gate's pattern gets watched."""
    try:
        gates = parse_gates(texts)
    except GateSyntaxError as exc:
        raise UsageError(str(exc)) from None
    for gate in gates:
        if gate.metric.startswith("log[") and gate.metric[4:-1] not in patterns:
            log_patterns([gate.metric[4:-1]])  # the same regex check as --log-pattern
            patterns.append(gate.metric[4:-1])
    known = probe_metrics(summarize([], {p: 0 for p in patterns}, None, interrupted=False))
    for gate in gates:
        if gate.metric not in known:
            raise UsageError(str(UnknownMetricError(gate, known)))
    return gates


def exit_code(pooled: ProbeSummary, gate_status: str | None, expectations: tuple[int, int] | None = None) -> int:
    """0 pass, 1 fail, 3 inconclusive. Without gates a run passes when every call is real, or for a
    scripted probe, when every call is of a class its step expects."""
    if gate_status is None:
        if expectations is not None:
            return EXIT_PASS if expectations[0] == expectations[1] else EXIT_FAIL
        return EXIT_PASS if pooled.all_real else EXIT_FAIL
    return {"pass": EXIT_PASS, "fail": EXIT_FAIL}.get(gate_status, EXIT_INCONCLUSIVE)


async def run_probe(
    spec: TargetSpec,
    cfg: ProbeConfig,
    *,
    log_paths: Sequence[str],
    patterns: Sequence[str],
    gates: Sequence[str] = (),
    repeat: int = 1,
    run_dir: Path | None,
    observer: SessionObserver,
) -> ProbeOutcome:
    """One probe command: the mode is the config's (``SequentialConfig`` or ``ConcurrentConfig``)."""
    validate_config(cfg)
    LIMITS["repeat"].check(repeat)
    if isinstance(cfg, ConcurrentConfig):
        ensure_open_files(cfg.concurrency)
    auto_session = cfg.session_key == AUTO_SESSION_KEY
    if auto_session:
        cfg = replace(cfg, session_key=f"{DEFAULT_SESSION_KEY}-{cfg.probe_id}")
    watched = list(patterns)
    parsed_gates = prepare_gates(gates, watched)
    token = validate_target(spec)
    for warning in spec.warnings:
        observer.warn(warning)
    if cfg.wait == "agent.wait" and spec.transport != "ws":
        raise UsageError(f"--wait agent.wait needs the ws transport ({spec.transport} has no agent.wait)")
    validate_log_paths(log_paths)
    run_dir = run_dir_for(run_dir, cfg.probe_id)
    logs = LogWatcher(watched, log_paths)
    await logs.start()
    runs: list[ProbeResult] = []
    target: TargetInfo | None = None
    engine: ProbeEngine | None = None
    try:
        async with open_target(spec, token, logs, run_dir, on_progress=observer.info) as opened:
            target = opened.info
            observer.probe_started(opened.info, cfg.calls * repeat, opened.secrets)
            if not auto_session:
                await _warn_if_used(opened.transport, cfg, observer)
            for run in range(1, repeat + 1):
                # Each repeat gets its own session: leftover queued turns would poison the next one.
                # Nonces and idempotency keys must be new too, or the gateway answers from its cache.
                run_cfg = cfg if run == 1 else replace(
                    cfg, run=run, session_key=f"{cfg.session_key}-r{run}", probe_id=f"{cfg.probe_id}r{run}"
                )
                engine = ProbeEngine(opened.transport, opened.info, witness=opened.witness, logs=logs, observer=observer)
                runs.append(await engine.run(run_cfg))
    except BaseException as exc:
        if isinstance(exc, OcprobeError):
            # A gateway may echo the token in a refusal, before the output's redactor has learnt it.
            exc.args = (Redactor([token])(str(exc)),)
        # Cut short (Ctrl-C, a lost target): the last record on disk is still a summary of what ran.
        if target is not None:
            if engine is not None and engine.result is not None and all(r is not engine.result for r in runs):
                runs.append(engine.result)
            code = exc.exit_code if isinstance(exc, OcprobeError) else EXIT_INTERRUPTED
            observer.probe_finished(_outcome(target, runs, [], code))
        raise
    finally:
        await logs.stop()
    assert target is not None
    outcome = _outcome(target, runs, parsed_gates, None)
    observer.probe_finished(outcome)
    return outcome



async def _warn_if_used(transport: Transport, cfg: ProbeConfig, observer: SessionObserver) -> None:
    """Turns still queued on a session from an earlier probe run late into this one and poison it."""
    key = cfg.session_keys()[0] if isinstance(cfg, ConcurrentConfig) else cfg.session_key
    try:
        history = await transport.history(key, limit=20)
    except OcprobeError:
        return  # the history is advice; a gateway that will not give it still gets probed
    if history:
        observer.warn(f"session {key} already has {len(history)}+ message(s) from earlier turns; turns still "
                      f"queued there would land in this probe (use --session-key auto for a fresh one)")


def _outcome(target: TargetInfo, runs: list[ProbeResult], gates: Sequence[Gate], forced_exit: int | None) -> ProbeOutcome:
    pooled = pooled_summary(runs)
    results = [gate.evaluate(probe_metrics(pooled)) for gate in gates]
    gate_status = overall_status(results) if results else None
    concurrency = pooled_concurrency([r.concurrency for r in runs if isinstance(r, ConcurrentResult) and r.concurrency])
    scripted = [c for r in runs for c in r.records if isinstance(c, ScriptCallRecord)]
    expectations = (sum(c.met for c in scripted), len(scripted)) if scripted else None
    return ProbeOutcome(target=target, runs=runs, pooled=pooled, gates=results, gate_status=gate_status,
                        exit_code=forced_exit if forced_exit is not None else exit_code(pooled, gate_status, expectations),
                        concurrency=concurrency, expectations=expectations)

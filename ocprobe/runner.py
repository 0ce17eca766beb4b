"""One probe from start to end: watch logs, open the target, run the engine, tear everything down."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol
from pathlib import Path

from ocprobe.engine import (
    ConcurrencyStats, ConcurrentConfig, ConcurrentResult, ProbeConfig, ProbeEngine, ProbeObserver, SequentialConfig,
    pooled_concurrency, pooled_summary, summarize,
)
from ocprobe.errors import OcprobeError, UsageError
from ocprobe.gates import Gate, GateResult, GateSyntaxError, UnknownMetricError, overall_status, parse_gates, probe_metrics
from ocprobe.logwatch import DEFAULT_PATTERNS, LogWatcher
from ocprobe.models import ProbeResult, ProbeSummary, TargetInfo
from ocprobe.targets import TargetSpec, new_run_dir, open_target, validate_target

TEMPLATE_FIELDS = {"i", "nonce"}
EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INCONCLUSIVE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def validate_message_template(template: str) -> None:
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise UsageError(f"bad --message template {template!r}: {exc}") from None
    unknown = fields - TEMPLATE_FIELDS
    if unknown:
        raise UsageError(f"bad --message template: unknown field {{{sorted(unknown)[0]}}} (use {{i}} and {{nonce}})")
    if "nonce" not in fields:
        raise UsageError("bad --message template: it must contain {nonce}, the token that proves a real reply")


def log_patterns(extra: Sequence[str]) -> list[str]:
    patterns = list(DEFAULT_PATTERNS)
    for pattern in extra:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise UsageError(f"bad --log-pattern {pattern!r}: {exc}") from None
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
            try:
                with p.open("rb") as f:
                    head = f.read(4096)
            except OSError as exc:
                raise UsageError(f"cannot read --log {path}: {exc.strerror}") from None
            if b"\0" in head:
                raise UsageError(f"--log {path} looks binary, not a text log")


def validate_config(cfg: ProbeConfig) -> None:
    """Refuse out-of-range options of any probe mode before anything starts."""
    if not 1 <= cfg.calls <= 100_000:
        raise UsageError(f"-n must be between 1 and 100000, got {cfg.calls}")
    if not 0 < cfg.timeout <= 3600:
        raise UsageError(f"--timeout must be between 0 and 3600 seconds, got {cfg.timeout:g}")
    if cfg.floor_ms is not None and cfg.floor_ms < 0:
        raise UsageError(f"--floor-ms must not be negative, got {cfg.floor_ms:g}")
    if cfg.settle is not None and not 0 <= cfg.settle <= 600:
        raise UsageError(f"--settle must be between 0 and 600 seconds, got {cfg.settle:g}")
    if not cfg.session_key.strip():
        raise UsageError("--session-key must not be empty")
    if isinstance(cfg, SequentialConfig) and not 0 <= cfg.gap <= 3600:
        raise UsageError(f"--gap must be between 0 and 3600 seconds, got {cfg.gap:g}")
    if isinstance(cfg, ConcurrentConfig):
        if not 1 <= cfg.concurrency <= 1000:
            raise UsageError(f"-c must be between 1 and 1000, got {cfg.concurrency}")
        if not 1 <= cfg.sessions <= 1000:
            raise UsageError(f"--sessions must be between 1 and 1000, got {cfg.sessions}")
        if cfg.rate is not None and not 0 < cfg.rate <= 10_000:
            raise UsageError(f"--rate must be between 0 and 10000 calls per second, got {cfg.rate:g}")
        if cfg.duration is not None and not 0 < cfg.duration <= 86_400:
            raise UsageError(f"--duration must be between 0 and 86400 seconds, got {cfg.duration:g}")
    validate_message_template(cfg.message)


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


class SessionObserver(ProbeObserver, Protocol):
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


def exit_code(pooled: ProbeSummary, gate_status: str | None) -> int:
    """0 pass, 1 fail, 3 inconclusive. Without gates a run passes when every call is real."""
    if gate_status is None:
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
    if not 1 <= repeat <= 1000:
        raise UsageError(f"--repeat must be between 1 and 1000, got {repeat}")
    watched = list(patterns)
    parsed_gates = prepare_gates(gates, watched)
    token = validate_target(spec)
    if cfg.wait == "agent.wait" and spec.transport != "ws":
        raise UsageError(f"--wait agent.wait needs the ws transport ({spec.transport} has no agent.wait)")
    validate_log_paths(log_paths)
    if run_dir is None:
        run_dir = new_run_dir(cfg.probe_id)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
    logs = LogWatcher(watched, log_paths)
    await logs.start()
    runs: list[ProbeResult] = []
    target: TargetInfo | None = None
    engine: ProbeEngine | None = None
    try:
        async with open_target(spec, token, logs, run_dir) as opened:
            target = opened.info
            observer.probe_started(opened.info, cfg.calls * repeat, opened.secrets)
            for run in range(1, repeat + 1):
                # Each repeat gets its own session: leftover queued turns would poison the next one.
                # Nonces and idempotency keys must be new too, or the gateway answers from its cache.
                run_cfg = cfg if run == 1 else replace(
                    cfg, run=run, session_key=f"{cfg.session_key}-r{run}", probe_id=f"{cfg.probe_id}r{run}"
                )
                engine = ProbeEngine(opened.transport, opened.info, witness=opened.witness, logs=logs, observer=observer)
                runs.append(await engine.run(run_cfg))
    except BaseException as exc:
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



def _outcome(target: TargetInfo, runs: list[ProbeResult], gates: Sequence[Gate], forced_exit: int | None) -> ProbeOutcome:
    pooled = pooled_summary(runs)
    results = [gate.evaluate(probe_metrics(pooled)) for gate in gates]
    gate_status = overall_status(results) if results else None
    concurrency = pooled_concurrency([r.concurrency for r in runs if isinstance(r, ConcurrentResult) and r.concurrency])
    return ProbeOutcome(target=target, runs=runs, pooled=pooled, gates=results, gate_status=gate_status,
                        exit_code=forced_exit if forced_exit is not None else exit_code(pooled, gate_status),
                        concurrency=concurrency)

"""One probe from start to end: watch logs, open the target, run the engine, tear everything down."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from pathlib import Path

from ocprobe.engine import ProbeEngine, ProbeObserver, SequentialConfig
from ocprobe.errors import UsageError
from ocprobe.logwatch import DEFAULT_PATTERNS, LogWatcher
from ocprobe.models import ProbeResult
from ocprobe.targets import TargetSpec, new_run_dir, open_target, validate_target

TEMPLATE_FIELDS = {"i", "nonce"}


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


def validate_sequential(cfg: SequentialConfig) -> None:
    if not 1 <= cfg.calls <= 100_000:
        raise UsageError(f"-n must be between 1 and 100000, got {cfg.calls}")
    if not 0 <= cfg.gap <= 3600:
        raise UsageError(f"--gap must be between 0 and 3600 seconds, got {cfg.gap:g}")
    if not 0 < cfg.timeout <= 3600:
        raise UsageError(f"--timeout must be between 0 and 3600 seconds, got {cfg.timeout:g}")
    if cfg.floor_ms is not None and cfg.floor_ms < 0:
        raise UsageError(f"--floor-ms must not be negative, got {cfg.floor_ms:g}")
    if cfg.settle is not None and not 0 <= cfg.settle <= 600:
        raise UsageError(f"--settle must be between 0 and 600 seconds, got {cfg.settle:g}")
    if not cfg.session_key.strip():
        raise UsageError("--session-key must not be empty")
    validate_message_template(cfg.message)


async def run_sequential_probe(
    spec: TargetSpec,
    cfg: SequentialConfig,
    *,
    log_paths: Sequence[str],
    patterns: Sequence[str],
    run_dir: Path | None,
    observer: ProbeObserver,
) -> ProbeResult:
    validate_sequential(cfg)
    token = validate_target(spec)
    validate_log_paths(log_paths)
    if run_dir is None:
        run_dir = new_run_dir(cfg.probe_id)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
    logs = LogWatcher(patterns, log_paths)
    await logs.start()
    try:
        async with open_target(spec, token, logs, run_dir) as opened:
            observer.probe_started(opened.info, cfg.calls, opened.secrets)
            engine = ProbeEngine(opened.transport, opened.info, witness=opened.witness, logs=logs, observer=observer)
            return await engine.run_sequential(cfg)
    finally:
        await logs.stop()

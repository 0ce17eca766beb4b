"""``ocprobe concurrent``: N chat turns in parallel over K sessions (closed-loop workers or an arrival rate)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Optional

import typer

from ocprobe.cli.common import execute, make_output, report_writer
from ocprobe.cli.sequential import Profile, QueueMode, WaitMode
from ocprobe.engine import DEFAULT_MESSAGE, DEFAULT_SESSION_KEY, ConcurrentConfig
from ocprobe.reference.gateway import DEFAULT_TEARDOWN_MS
from ocprobe.reference.provider import DEFAULT_LATENCY_MS
from ocprobe.runner import log_patterns, run_probe
from ocprobe.targets import DEFAULT_TOKEN_ENV, EMBEDDED, EmbeddedOptions, TargetSpec


def concurrent(
    calls: int = typer.Option(100, "-n", "--calls", help="Total number of calls."),
    concurrency: int = typer.Option(10, "-c", "--concurrency", help="Workers (closed loop), or the cap on calls in flight (with --rate)."),
    sessions: int = typer.Option(1, "--sessions", help="Session keys the calls share: KEY-s1..KEY-sK (1: every call on KEY, same-session contention)."),
    rate: Optional[float] = typer.Option(None, "--rate", help="Open loop: start calls at this many per second whatever the replies do."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Seconds after which no call starts (calls in flight still finish)."),
    session_key: str = typer.Option(DEFAULT_SESSION_KEY, "--session-key", help="Base session key."),
    message: str = typer.Option(DEFAULT_MESSAGE, "--message", help="Message template; {i} is the call number, {nonce} the token the reply must carry."),
    wait: WaitMode = typer.Option(WaitMode.final, "--wait", help="What ends a call: the final chat event, or agent.wait after it."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds a call may take before it is a timeout."),
    target: str = typer.Option(EMBEDDED, "--target", help="'embedded' (reference gateway and provider started here) or ws://HOST:PORT."),
    profile: Profile = typer.Option(Profile.healthy, "--profile", help="Embedded gateway behaviour."),
    teardown_ms: float = typer.Option(DEFAULT_TEARDOWN_MS, "--teardown-ms", help="Embedded reply-run-race: how long the guard outlives the final."),
    latency_ms: float = typer.Option(DEFAULT_LATENCY_MS, "--latency-ms", help="Embedded provider: LLM latency."),
    jitter_ms: float = typer.Option(0.0, "--jitter-ms", help="Embedded provider: added uniform random latency."),
    drop_queued: bool = typer.Option(False, "--drop-queued", help="Embedded gateway drops queued turns instead of running them late."),
    queue_mode: QueueMode = typer.Option(QueueMode.steer, "--queue-mode", help="Embedded gateway follow-up queue: steer or collect."),
    token_env: str = typer.Option(DEFAULT_TOKEN_ENV, "--token-env", help="Environment variable holding the gateway token."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="File holding the gateway token."),
    allow_insecure: bool = typer.Option(False, "--allow-insecure", help="Allow ws:// to a non-loopback host (token in clear text)."),
    floor_ms: Optional[float] = typer.Option(None, "--floor-ms", help="Latency floor for targets without witness; default: half the median real round trip."),
    settle: Optional[float] = typer.Option(None, "--settle", help="Quiet seconds that end the watch for late replies after the last call (default: max(2, 3 real round trips))."),
    log: list[str] = typer.Option([], "--log", help="Gateway log file or glob to watch (repeatable)."),
    log_pattern: list[str] = typer.Option([], "--log-pattern", help="Extra regex to count in the logs (repeatable)."),
    gate: list[str] = typer.Option([], "--gate", help="CI gate, e.g. 'fast_fail.count == 0' (repeatable; see README)."),
    repeat: int = typer.Option(1, "--repeat", help="Run the probe R times (each on its own sessions) and pool the figures."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a report bundle here: calls.jsonl, summary.json, junit.xml, report.md."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write one JSON record per call as it ends, then the summary; '-' for stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the summary line."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where gateway output goes (default: a new dir in the ocprobe cache)."),
) -> None:
    output = make_output(json_path, quiet)
    cfg = ConcurrentConfig(
        calls=calls, session_key=session_key, message=message, wait=wait.value, timeout=timeout,
        floor_ms=floor_ms, settle=settle, concurrency=concurrency, sessions=sessions, rate=rate, duration=duration,
    )
    spec = TargetSpec(
        target=target, token_env=token_env, token_file=token_file, allow_insecure=allow_insecure,
        embedded=EmbeddedOptions(profile=profile.value, teardown_ms=teardown_ms, latency_ms=latency_ms,
                                 jitter_ms=jitter_ms, drop_queued=drop_queued, queue_mode=queue_mode.value),
    )
    outcome = execute(output, lambda: asyncio.run(run_probe(
        spec, cfg, log_paths=log, patterns=log_patterns(log_pattern), gates=gate, repeat=repeat,
        run_dir=run_dir, observer=output,
    )), finish=report_writer(output, report))
    raise typer.Exit(outcome.exit_code)

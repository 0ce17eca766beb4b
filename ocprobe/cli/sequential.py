"""``ocprobe sequential``: N chat turns one after another to one session."""

from __future__ import annotations

import asyncio
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ocprobe.cli.common import execute, make_output, report_writer
from ocprobe.engine import DEFAULT_MESSAGE, DEFAULT_SESSION_KEY, SequentialConfig
from ocprobe.errors import UsageError
from ocprobe.reference.gateway import DEFAULT_TEARDOWN_MS
from ocprobe.reference.provider import DEFAULT_LATENCY_MS
from ocprobe.runner import log_patterns, run_sequential_probe
from ocprobe.targets import DEFAULT_TOKEN_ENV, EMBEDDED, EmbeddedOptions, OpenClawOptions, TargetSpec, transport_for_url


class WaitMode(str, Enum):
    final = "final"
    agent_wait = "agent.wait"


class Profile(str, Enum):
    healthy = "healthy"
    reply_run_race = "reply-run-race"


class TransportName(str, Enum):
    ws = "ws"
    relay = "relay"
    openai = "openai"


class QueueMode(str, Enum):
    steer = "steer"
    collect = "collect"


def sequential(
    calls: int = typer.Option(10, "-n", "--calls", help="Number of calls."),
    session_key: str = typer.Option(DEFAULT_SESSION_KEY, "--session-key", help="Session every call goes to."),
    message: str = typer.Option(DEFAULT_MESSAGE, "--message", help="Message template; {i} is the call number, {nonce} the token the reply must carry."),
    gap: float = typer.Option(0.0, "--gap", help="Seconds to wait after each reply before the next call."),
    wait: WaitMode = typer.Option(WaitMode.final, "--wait", help="What ends a call: the final chat event, or agent.wait after it."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds a call may take before it is a timeout."),
    target: str = typer.Option(EMBEDDED, "--target", help="'embedded' (reference gateway and provider started here), ws://HOST:PORT, or http(s)://HOST:PORT/PATH (a relay; an OpenAI endpoint when PATH ends with /v1 or /v1/chat/completions)."),
    transport: Optional[TransportName] = typer.Option(None, "--transport", help="How to talk to the gateway: ws (OpenClaw WebSocket), relay (HTTP POST of a JSON body) or openai (POST /v1/chat/completions). Default: from the target URL; ws for embedded."),
    relay_body: Optional[str] = typer.Option(None, "--relay-body", help='Relay: JSON body template with {session_key}, {message}, {idempotency_key} (default {"sessionKey": {session_key}, "message": {message}}).'),
    reply_path: Optional[str] = typer.Option(None, "--reply-path", help="Relay: dotted path to the reply text in the answer, e.g. reply, data.text, choices.0.message.content (default reply)."),
    openai_model: Optional[str] = typer.Option(None, "--openai-model", help="OpenAI transport: the model field (default openclaw)."),
    no_stream: bool = typer.Option(False, "--no-stream", help="OpenAI transport: ask for one JSON completion instead of an SSE stream."),
    profile: Profile = typer.Option(Profile.healthy, "--profile", help="Embedded gateway behaviour."),
    teardown_ms: float = typer.Option(DEFAULT_TEARDOWN_MS, "--teardown-ms", help="Embedded reply-run-race: how long the guard outlives the final."),
    latency_ms: Optional[float] = typer.Option(None, "--latency-ms", help=f"LLM latency of ocprobe's provider (the witness): default {DEFAULT_LATENCY_MS:g} ms embedded, 1000 ms for openclaw@VERSION."),
    jitter_ms: float = typer.Option(0.0, "--jitter-ms", help="Embedded provider: added uniform random latency."),
    drop_queued: bool = typer.Option(False, "--drop-queued", help="Embedded gateway drops queued turns instead of running them late."),
    queue_mode: QueueMode = typer.Option(QueueMode.steer, "--queue-mode", help="Embedded gateway follow-up queue: steer (one run per queued turn, 5.3) or collect (one run for all, 4.26)."),
    openclaw_config: Optional[Path] = typer.Option(None, "--openclaw-config", help="openclaw@VERSION: JSON5 config fragment (agents, queue mode, plugins) merged over the generated config."),
    keep_gateway: bool = typer.Option(False, "--keep-gateway", help="openclaw@VERSION: leave the gateway running after the probe (until Ctrl-C) and print its URL, token file and logs."),
    token_env: str = typer.Option(DEFAULT_TOKEN_ENV, "--token-env", help="Environment variable holding the gateway token."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="File holding the gateway token."),
    allow_insecure: bool = typer.Option(False, "--allow-insecure", help="Allow ws:// to a non-loopback host (token in clear text)."),
    floor_ms: Optional[float] = typer.Option(None, "--floor-ms", help="Latency floor for targets without witness; default: half the median real round trip."),
    settle: Optional[float] = typer.Option(None, "--settle", help="Quiet seconds that end the watch for late replies after the last call (default: max(2, 3 real round trips))."),
    log: list[str] = typer.Option([], "--log", help="Gateway log file or glob to watch (repeatable)."),
    log_pattern: list[str] = typer.Option([], "--log-pattern", help="Extra regex to count in the logs (repeatable)."),
    gate: list[str] = typer.Option([], "--gate", help="CI gate, e.g. 'fast_fail.count == 0', 'real.p95_ms < 3000', 'log[\"ReplyRunAlreadyActiveError\"] == 0' (repeatable; see README)."),
    repeat: int = typer.Option(1, "--repeat", help="Run the probe R times (each on its own session) and pool the figures."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a report bundle here: calls.jsonl, summary.json, junit.xml, report.md."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write one JSON record per call as it ends, then the summary; '-' for stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the summary line."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where gateway output goes (default: a new dir in the ocprobe cache)."),
) -> None:
    output = make_output(json_path, quiet)
    cfg = SequentialConfig(
        calls=calls, session_key=session_key, message=message, gap=gap, wait=wait.value,
        timeout=timeout, floor_ms=floor_ms, settle=settle,
    )
    spec = TargetSpec(
        target=target, token_env=token_env, token_file=token_file, allow_insecure=allow_insecure,
        embedded=EmbeddedOptions(profile=profile.value, teardown_ms=teardown_ms,
                                 latency_ms=DEFAULT_LATENCY_MS if latency_ms is None else latency_ms,
                                 jitter_ms=jitter_ms, drop_queued=drop_queued, queue_mode=queue_mode.value),
        openclaw=OpenClawOptions(config_fragment=openclaw_config, keep_gateway=keep_gateway,
                                 **({} if latency_ms is None else {"latency_ms": latency_ms})),
        transport=transport.value if transport else None, relay_body=relay_body, reply_path=reply_path,
        openai_model=openai_model, openai_stream=not no_stream,
    )

    def work():  # type: ignore[no-untyped-def]
        if wait is WaitMode.agent_wait and (transport or _implied_transport(target)) not in (None, TransportName.ws):
            raise UsageError("--wait agent.wait needs the ws transport (relay and openai have no agent.wait)")
        return asyncio.run(run_sequential_probe(
            spec, cfg, log_paths=log, patterns=log_patterns(log_pattern), gates=gate, repeat=repeat,
            run_dir=run_dir, observer=output,
        ))

    outcome = execute(output, work, finish=report_writer(output, report))
    raise typer.Exit(outcome.exit_code)


def _implied_transport(target: str) -> TransportName | None:
    if target.split("://", 1)[0] not in ("ws", "wss", "http", "https"):
        return None  # embedded, or a target validate_target refuses
    return TransportName(transport_for_url(target))

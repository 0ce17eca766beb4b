"""``ocprobe sequential``: N chat turns one after another to one session."""

from __future__ import annotations

import typer

from ocprobe.cli import options as o
from ocprobe.cli.common import execute, make_output, report_writer
from ocprobe.defaults import DEFAULT_MESSAGE, DEFAULT_SESSION_KEY, DEFAULT_TOKEN_ENV, EMBEDDED


def sequential(
    calls: int = typer.Option(10, "-n", "--calls", help="Number of calls."),
    gap: float = typer.Option(0.0, "--gap", help="Seconds to wait after each reply before the next call."),
    session_key: o.SessionKey = DEFAULT_SESSION_KEY,
    message: o.Message = DEFAULT_MESSAGE,
    wait: o.Wait = o.WaitMode.final,
    timeout: o.Timeout = 30.0,
    target: o.Target = EMBEDDED,
    transport: o.Transport = None,
    relay_body: o.RelayBodyTemplate = None,
    reply_path: o.ReplyPath = None,
    openai_model: o.OpenAIModel = None,
    no_stream: o.NoStream = False,
    profile: o.ProfileOption = o.Profile.healthy,
    teardown_ms: o.TeardownMs = None,
    protocol: o.ProtocolOption = None,
    latency_ms: o.LatencyMs = None,
    jitter_ms: o.JitterMs = 0.0,
    drop_queued: o.DropQueued = False,
    queue_mode: o.QueueModeOption = o.QueueMode.steer,
    fault: o.Fault = [],
    openclaw_config: o.OpenClawConfig = None,
    keep_gateway: o.KeepGateway = False,
    token_env: o.TokenEnv = DEFAULT_TOKEN_ENV,
    token_file: o.TokenFile = None,
    allow_insecure: o.AllowInsecure = False,
    floor_ms: o.FloorMs = None,
    settle: o.Settle = None,
    log: o.Log = [],
    log_pattern: o.LogPattern = [],
    gate: o.Gate = [],
    repeat: o.Repeat = 1,
    report: o.Report = None,
    json_path: o.JsonOut = None,
    quiet: o.Quiet = False,
    run_dir: o.RunDir = None,
) -> None:
    """Send N calls one after another to one session and classify each (exit 0 all real or gates pass,
    1 fail, 2 usage, connection or auth error, 3 inconclusive gate, 130 interrupted)."""
    import asyncio

    from ocprobe.engine import SequentialConfig
    from ocprobe.runner import log_patterns, run_probe

    output = make_output(json_path, quiet)
    cfg = SequentialConfig(calls=calls, session_key=session_key, message=message, gap=gap, wait=wait.value,
                           timeout=timeout, floor_ms=floor_ms, settle=settle)
    spec = o.target_spec(locals())
    outcome = execute(output, lambda: asyncio.run(run_probe(
        spec, cfg, log_paths=log, patterns=log_patterns(log_pattern), gates=gate, repeat=repeat,
        run_dir=run_dir, observer=output,
    )), finish=report_writer(output, report))
    raise typer.Exit(outcome.exit_code)

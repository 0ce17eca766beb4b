"""``ocprobe parity``: the same sequential probe over two transports of one gateway, call by call."""

from __future__ import annotations

import copy

import typer

from ocprobe.cli import options as o
from ocprobe.cli.common import execute, make_output
from ocprobe.defaults import DEFAULT_MESSAGE, DEFAULT_SESSION_KEY, DEFAULT_TOKEN_ENV, EMBEDDED
from ocprobe.errors import UsageError


def parity(
    transports: str = typer.Option("ws,relay", "--transports", help="Two transports of the embedded gateway, e.g. ws,relay or relay,openai."),
    target: list[str] = typer.Option([], "--target", help="Instead of the embedded gateway: two endpoints of one external gateway, e.g. --target ws://127.0.0.1:18789 --target http://127.0.0.1:18789/chat.send."),
    calls: int = typer.Option(10, "-n", "--calls", help="Calls over each transport."),
    gap: float = typer.Option(0.0, "--gap", help="Seconds to wait after each reply before the next call."),
    session_key: o.SessionKey = DEFAULT_SESSION_KEY,
    message: o.Message = DEFAULT_MESSAGE,
    timeout: o.Timeout = 30.0,
    profile: o.ProfileOption = o.Profile.healthy,
    teardown_ms: o.TeardownMs = None,
    protocol: o.ProtocolOption = None,
    latency_ms: o.LatencyMs = None,
    token_env: o.TokenEnv = DEFAULT_TOKEN_ENV,
    token_file: o.TokenFile = None,
    allow_insecure: o.AllowInsecure = False,
    log: o.Log = [],
    log_pattern: o.LogPattern = [],
    json_path: o.JsonOut = None,
    quiet: o.Quiet = False,
    run_dir: o.RunDir = None,
) -> None:
    """Exit codes: 0 both transports gave the same class to every call, 1 they differ, 2 usage, connection
    or auth error, 130 interrupted."""
    output = make_output(json_path, quiet)
    base = o.target_spec({**locals(), "target": EMBEDDED})

    def work() -> int:
        import asyncio

        from ocprobe.engine import SequentialConfig
        from ocprobe.parity import run_parity
        from ocprobe.runner import log_patterns

        specs = [copy.deepcopy(base), copy.deepcopy(base)]
        if target:
            if len(target) != 2:
                raise UsageError(f"--target: give two endpoints of one gateway, got {len(target)}")
            for spec, url in zip(specs, target):
                spec.target = url
        else:
            names = [t.strip() for t in transports.split(",")]
            if len(names) != 2:
                raise UsageError(f"--transports: give two, e.g. ws,relay (got {transports!r})")
            for spec, name in zip(specs, names):
                spec.transport = name
        cfg = SequentialConfig(calls=calls, session_key=session_key, message=message, gap=gap, timeout=timeout)
        result = asyncio.run(run_parity(specs, cfg, log_paths=log, patterns=log_patterns(log_pattern),
                                        run_dir=run_dir, observer=output))
        output.parity_finished(result)
        return result.exit_code

    raise typer.Exit(execute(output, work))

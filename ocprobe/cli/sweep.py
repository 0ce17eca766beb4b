"""``ocprobe sweep``: the sequential probe over gaps, teardowns or latencies, and where failures stop."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ocprobe.cli.common import execute, make_output
from ocprobe.cli import options as o
from ocprobe.defaults import DEFAULT_MESSAGE, DEFAULT_SESSION_KEY, DEFAULT_TOKEN_ENV, EMBEDDED
from ocprobe.errors import UsageError
from ocprobe.reference.defaults import DEFAULT_LATENCY_MS


def sweep(
    gaps: Optional[str] = typer.Option(None, "--gaps", help="Gaps to sweep, in seconds, e.g. 0,0.05,0.1,0.2,0.5,1."),
    teardowns_ms: Optional[str] = typer.Option(None, "--teardowns-ms", help="Embedded teardowns to sweep, in ms, e.g. 0,25,50,100."),
    latencies_ms: Optional[str] = typer.Option(None, "--latencies-ms", help="Embedded LLM latencies to sweep, in ms."),
    repeat: int = typer.Option(3, "--repeat", help="Probe runs per point (each on its own session)."),
    calls: int = typer.Option(10, "-n", "--calls", help="Sequential calls per run."),
    gap: float = typer.Option(0.0, "--gap", help="Gap (seconds) when sweeping teardowns or latencies."),
    profile: o.ProfileOption = o.Profile.reply_run_race,
    teardown_ms: o.TeardownMs = None,
    protocol: o.ProtocolOption = None,
    latency_ms: float = typer.Option(DEFAULT_LATENCY_MS, "--latency-ms", help="Embedded LLM latency when it is not swept."),
    queue_mode: o.QueueModeOption = o.QueueMode.steer,
    session_key: str = typer.Option(DEFAULT_SESSION_KEY, "--session-key", help="Base session key (each point and run gets its own)."),
    message: o.Message = DEFAULT_MESSAGE,
    wait: o.Wait = o.WaitMode.final,
    timeout: o.Timeout = 30.0,
    settle: Optional[float] = typer.Option(None, "--settle", help="Quiet seconds that end each run's watch for late replies."),
    target: str = typer.Option(EMBEDDED, "--target", help="'embedded' (a fresh reference stack per point) or ws://HOST:PORT (--gaps only)."),
    token_env: o.TokenEnv = DEFAULT_TOKEN_ENV,
    token_file: o.TokenFile = None,
    allow_insecure: o.AllowInsecure = False,
    log: o.Log = [],
    log_pattern: o.LogPattern = [],
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the failure rate per point with its interval: .svg, or .png (needs matplotlib)."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write one JSON record per point, then the summary; '-' for stdout."),
    quiet: o.Quiet = False,
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where gateway output goes (a sub-directory per point)."),
) -> None:
    """Exit codes: 0 no point failed, 1 some point failed, 2 usage, connection or auth error, 130 interrupted."""
    output = make_output(json_path, quiet)
    params = locals()

    def run() -> int:
        import asyncio

        from ocprobe.engine import SequentialConfig
        from ocprobe.runner import log_patterns
        from ocprobe.sweep import SweepConfig, check_plot_path, parse_values, run_sweep, write_plot

        given = [(name, text) for name, text in (("gap", gaps), ("teardown_ms", teardowns_ms), ("latency_ms", latencies_ms))
                 if text is not None]
        if len(given) != 1:
            raise UsageError("give exactly one of --gaps, --teardowns-ms, --latencies-ms")
        parameter, text = given[0]
        if plot is not None:
            check_plot_path(plot)
        cfg = SweepConfig(
            parameter=parameter, values=parse_values(text, parameter), repeat=repeat,
            probe=SequentialConfig(calls=calls, session_key=session_key, message=message, gap=gap, wait=wait.value,
                                   timeout=timeout, settle=settle),
        )
        spec = o.target_spec(params)
        result = asyncio.run(run_sweep(spec, cfg, log_paths=log, patterns=log_patterns(log_pattern), run_dir=run_dir,
                                       observer=output))
        if plot is not None:
            try:
                write_plot(result, plot)
            except OSError as exc:
                raise UsageError(f"cannot write --plot {plot}: {exc.strerror}") from None
            output.info(f"plot written to {plot}")
        return result.exit_code

    raise typer.Exit(execute(output, run))

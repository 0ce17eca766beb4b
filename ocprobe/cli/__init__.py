"""Command line: parses options, calls the core, renders through the output sink. Nothing else."""

from __future__ import annotations

import os
import signal
import sys
import threading

import typer

from ocprobe import __version__
from ocprobe.cli import bisect, compare, concurrent, gateway, matrix, openclaw, parity, scenarios, sequential, sweep

EXIT_CODES_HELP = (
    "Exit codes: 0 pass (every call real, or with --gate every gate passes), 1 fail, "
    "2 usage, connection or auth error, 3 inconclusive (a gate cannot be decided yet), 130 interrupted."
)

app = typer.Typer(
    name="ocprobe",
    help=f"Reproduce, measure and bisect regressions in LLM chat gateways (OpenClaw first). {EXIT_CODES_HELP}",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ocprobe {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """ocprobe: probes a chat gateway and gives every call an honest class."""


app.command("sequential", help=f"Send N chat turns one after another to one session. {EXIT_CODES_HELP}")(sequential.sequential)
app.command("concurrent", help=f"Send N chat turns in parallel: -c workers (or --rate arrivals per second) over --sessions K session keys. {EXIT_CODES_HELP}")(concurrent.concurrent)
app.command("sweep", help="Run the sequential probe over --gaps (or --teardowns-ms, --latencies-ms) with --repeat runs per point: failure rate with 95% Wilson intervals, the race window, a chart and --plot. Exit codes: 0 no point failed, 1 some point failed, 2 usage error, 130 interrupted.")(sweep.sweep)
app.command("compare", help="Compare results files or targets side by side with statistics (Fisher's exact test on failures, Mann-Whitney U on round trips).")(compare.compare)
app.command("run", help="Run a scenario file (TOML): target, transport, probe or steps, logs and gates kept together. --check only checks it.")(scenarios.run)
app.add_typer(scenarios.app, name="scenarios")
app.command("parity", help="Run one sequential probe over two transports of one gateway (default: the embedded one over ws and relay) and show where their outcome sequences differ.")(parity.parity)
app.command("bisect", help="Find the published OpenClaw version where a probe starts failing (or stops): endpoints verified first, each version decided with statistics over batches (-n calls each; with --gate a batch is one trial) or by --cmd's exit code, installs prefetched, resumable (--resume DIR). Exit codes: 0 found, 1 the endpoints do not verify, 2 usage error, 3 found up to skipped versions, 130 interrupted.")(bisect.bisect)
app.add_typer(matrix.app, name="matrix")
app.add_typer(gateway.app, name="gateway")
app.add_typer(openclaw.app, name="openclaw")


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM ends ocprobe like Ctrl-C: finally blocks stop the gateways it started and save results.
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # click's (typer vendors click): a bad option or value
        message = exc.format_message()
        if "\n" in message.strip():  # no command given: the message is the help itself
            typer.echo(message, err=True)
        else:  # one line, like every other refusal
            ctx = getattr(exc, "ctx", None)
            typer.echo(f"error: {message}" + (f" (see '{ctx.command_path} --help')" if ctx else ""), err=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        sys.exit(130)
    except Exception as exc:  # a bug must still end in one line, not a traceback (OCPROBE_DEBUG=1 shows it)
        if os.environ.get("OCPROBE_DEBUG"):
            raise
        typer.echo(f"error: internal error: {type(exc).__name__}: {exc} (set OCPROBE_DEBUG=1 for a traceback)", err=True)
        sys.exit(2)
    sys.exit(code or 0)


def entry() -> None:
    """The ``ocprobe`` command: ``main()``, then ``exit_now``: by then every file ocprobe wrote is closed (and
    fsync'ed) and every process it started is stopped, and the interpreter's teardown took ~70 ms."""
    try:
        main()
    except SystemExit as done:
        worker_running = any(t.is_alive() and not t.daemon for t in threading.enumerate()
                             if t is not threading.main_thread())
        if worker_running or not isinstance(done.code, (int, type(None))):
            raise  # a worker still finishing (an install) is joined by the interpreter's own exit
        from ocprobe.process import exit_now

        exit_now(done.code or 0)

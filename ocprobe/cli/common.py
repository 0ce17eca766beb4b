"""What every command shares: building the output sink and turning errors into one line and an exit code."""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

from ocprobe.errors import OcprobeError, UsageError
from ocprobe import __version__

if TYPE_CHECKING:
    from ocprobe.output.sink import Output

T = TypeVar("T")


def check_output_dir(directory: Path, option: str) -> None:
    """An output directory is checked before the first call: a run must not end with nowhere to write."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"cannot write {option} {directory}: it exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".ocprobe-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write {option} {directory}: {exc.strerror}") from None


def report_writer(output: Output, directory: Path | None) -> Callable[[], None] | None:
    """Writes the ``--report`` bundle from whatever the probe measured, even when it was cut short. The
    directory is checked now (exit 2 before anything runs); a write that still fails at the end is an error
    (exit 2), never a pass without its report."""
    if directory is None:
        return None
    try:
        check_output_dir(directory, "--report")
    except UsageError as exc:
        output.error(str(exc))
        output.close()
        raise typer.Exit(2) from None

    def write() -> None:
        from ocprobe.reports import ReportInput, write_report_bundle  # only commands with --report pay for it

        outcome = output.outcome
        if outcome is None or not outcome.runs:  # cut short before a run began: nothing to report
            return
        environment = {
            "ocprobe": __version__,
            "python": platform.python_version(),
            "os": platform.platform(),
            "gateway_version": outcome.target.gateway_version or "unknown",
            "node_version": outcome.target.node_version or "n/a",
            "protocol": str(outcome.target.protocol) if outcome.target.protocol is not None else "n/a",
        }
        command = ["ocprobe", *sys.argv[1:]]
        try:
            write_report_bundle(directory, ReportInput(runs=outcome.runs, gates=outcome.gates, command=command,
                                                       environment=environment), output.redact)
        except OSError as exc:
            raise UsageError(f"cannot write --report {directory}: {exc.strerror}") from None
        output.info(f"report written to {directory}")

    return write


def make_output(json_path: str | None, quiet: bool) -> Output:
    from ocprobe.output.sink import Mode, Output

    if json_path == "-":
        return Output(Mode.JSON)
    try:
        return Output(Mode.QUIET if quiet else Mode.HUMAN, json_path=Path(json_path) if json_path else None)
    except OSError as exc:
        Output().error(f"cannot write --json {json_path}: {exc.strerror}")
        raise typer.Exit(2) from None


def execute(output: Output, work: Callable[[], T], finish: Callable[[], None] | None = None) -> T:
    """Run the core; an OcprobeError becomes one line on stderr and exit 2, Ctrl-C exit 130.
    ``finish`` runs in every case (it writes what was measured, e.g. the report bundle)."""
    failed = True  # until work() returns: then a failing finish() decides the exit code
    try:
        result = work()
        failed = False
        return result
    except OcprobeError as exc:
        output.error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        saved = output.json_path
        output.error(f"interrupted; the records of finished calls are in {saved}" if saved else "interrupted")
        raise typer.Exit(130) from None
    finally:
        try:
            if finish is not None:
                finish()
        except OcprobeError as exc:
            output.error(str(exc))
            if not failed:  # the run itself ended well: its missing output fails it
                raise typer.Exit(exc.exit_code) from None
        finally:
            output.close()

"""What every command shares: building the output sink and turning errors into one line and an exit code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer

from ocprobe.errors import OcprobeError
from ocprobe.output.sink import Mode, Output

T = TypeVar("T")


def make_output(json_path: str | None, quiet: bool) -> Output:
    if json_path == "-":
        return Output(Mode.JSON)
    try:
        return Output(Mode.QUIET if quiet else Mode.HUMAN, json_path=Path(json_path) if json_path else None)
    except OSError as exc:
        Output().error(f"cannot write --json {json_path}: {exc.strerror}")
        raise typer.Exit(2) from None


def execute(output: Output, work: Callable[[], T]) -> T:
    """Run the core; an OcprobeError becomes one line on stderr and exit 2, Ctrl-C exit 130."""
    try:
        return work()
    except OcprobeError as exc:
        output.error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        output.error("interrupted: records of finished calls are saved")
        raise typer.Exit(130) from None
    finally:
        output.close()

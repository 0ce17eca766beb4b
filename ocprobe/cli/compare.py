"""``ocprobe compare``: results files, or targets probed here, side by side with statistics."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from ocprobe.cli import options as o
from ocprobe.cli.common import execute, make_output
from ocprobe.defaults import DEFAULT_TOKEN_ENV
from ocprobe.errors import UsageError
from ocprobe.reference.defaults import DEFAULT_LATENCY_MS

if TYPE_CHECKING:
    from ocprobe.compare import Sample
    from ocprobe.output.sink import Output


def compare(
    files: Optional[list[Path]] = typer.Argument(None, help="Results files written by --json (the first is the baseline)."),
    target: list[str] = typer.Option([], "--target", help="Probe this target here (repeatable): embedded:PROFILE or ws://HOST:PORT."),
    calls: int = typer.Option(20, "-n", "--calls", help="Calls per target."),
    gap: float = typer.Option(0.0, "--gap", help="Seconds after each reply before the next call."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds a call may take."),
    teardown_ms: o.TeardownMs = None,
    latency_ms: float = typer.Option(DEFAULT_LATENCY_MS, "--latency-ms", help="Embedded provider latency."),
    token_env: str = typer.Option(DEFAULT_TOKEN_ENV, "--token-env", help="Environment variable holding the gateway token."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="File holding the gateway token."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Also write the comparison as Markdown."),
    json_out: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
) -> None:
    """Exit codes: 0 no candidate differs for the worse, 1 a candidate regressed, 2 usage error, 3 undecided."""
    output = make_output("-" if json_out else None, False)

    def run() -> int:
        import asyncio

        from ocprobe.compare import compare_all, compare_markdown, exit_code, load_sample, sample_from_outcome
        from ocprobe.engine import SequentialConfig
        from ocprobe.output.sink import Mode, Output
        from ocprobe.runner import log_patterns, run_probe
        from ocprobe.targets import EmbeddedOptions, TargetSpec

        samples = [load_sample(path) for path in files or []]
        if len(samples) + len(target) < 2:
            raise UsageError("compare needs at least two results files or --target options")
        base = TargetSpec(token_env=token_env, token_file=token_file,
                          embedded=EmbeddedOptions(teardown_ms=teardown_ms, latency_ms=latency_ms))
        progress = Output(Mode.QUIET, stdout=sys.stderr)
        for label in target:
            spec = copy.deepcopy(base)
            spec.target = label
            cfg = SequentialConfig(calls=calls, gap=gap, timeout=timeout)
            outcome = asyncio.run(run_probe(spec, cfg, log_paths=[], patterns=log_patterns([]),
                                            run_dir=None, observer=progress))
            samples.append(sample_from_outcome(label, outcome))
        comparisons = compare_all(samples)
        if markdown is not None:
            try:
                markdown.write_text(compare_markdown(samples, comparisons), encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"cannot write --markdown {markdown}: {exc.strerror}") from None
        _render(output, samples, comparisons)
        return exit_code(comparisons)

    raise typer.Exit(execute(output, run))


def _render(output: Output, samples: list[Sample], comparisons: list) -> None:  # type: ignore[type-arg]
    from rich.table import Table

    from ocprobe.compare import comparison_json, pair_line, sample_rows
    from ocprobe.output.sink import Mode

    if output.mode is Mode.JSON:
        output.data(comparison_json(samples, comparisons), "")
        return
    table = Table(title="ocprobe compare (first column: baseline)", title_justify="left")
    table.add_column("")
    for sample in samples:
        table.add_column(sample.label, justify="right")
    for name, values in sample_rows(samples):
        table.add_row(name, *values)
    output.console.print(table)
    for comparison in comparisons:
        output.console.print(pair_line(comparison))

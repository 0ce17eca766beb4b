"""``ocprobe matrix``: the same probes over published OpenClaw releases, a table per release; cells that ran
apart (one CI job per release) merge into one table."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ocprobe.cli import options as o
from ocprobe.cli.common import check_output_dir, execute, make_output
from ocprobe.defaults import DEFAULT_MESSAGE, DEFAULT_TOKEN_ENV, MATRIX_TITLE
from ocprobe.errors import UsageError

app = typer.Typer(help="Probe a list or range of published OpenClaw releases, one cell per release; merge cells "
                       "that ran apart.", no_args_is_help=True)

MATRIX_EXIT = "Exit codes: 0 every release passed every probe, 1 some release failed or could not be probed, " \
              "2 usage error, 130 interrupted."


@app.command("run", help=f"Install, launch and probe each release in turn (installs prefetched). {MATRIX_EXIT}")
def run(
    versions: Optional[str] = typer.Option(None, "--versions", help="Releases, comma-separated: versions or dist-tags (e.g. 2026.5.3,2026.9.6,latest)."),
    version_range: Optional[str] = typer.Option(None, "--range", help="Every published release from OLDEST to NEWEST, both included (e.g. 2026.5.7..2026.5.12)."),
    sample: int = typer.Option(0, "--sample", help="With --range: only this many releases, evenly spaced, both ends included (0: all)."),
    prerelease: bool = typer.Option(False, "--prerelease", help="With --range: take the prereleases (betas) too."),
    probe: list[str] = typer.Option([], "--probe", metavar="MODE:KEY=VALUE,...", help="A probe run on every release, in order, each on fresh sessions (repeatable): sequential:n=10,gap=0 (keys n, gap, timeout) or concurrent:n=12,c=3,sessions=1 (keys n, c, sessions, timeout). Default: sequential:n=10,gap=0."),
    message: o.Message = DEFAULT_MESSAGE,
    timeout: o.Timeout = 30.0,
    settle: o.Settle = None,
    latency_ms: Optional[float] = typer.Option(None, "--latency-ms", help="LLM latency of ocprobe's provider (default 1000 ms)."),
    openclaw_config: o.OpenClawConfig = None,
    log_pattern: o.LogPattern = [],
    report: Optional[Path] = typer.Option(None, "--report", help="Write cells/VERSION.json (each as its release ends), matrix.json and matrix.md here."),
    json_path: o.JsonOut = None,
    quiet: o.Quiet = False,
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where the gateways' output goes (a sub-directory per release)."),
) -> None:
    output = make_output(json_path, quiet)

    def work() -> int:
        import asyncio

        from ocprobe.matrix import (
            DEFAULT_PROBES, exit_code, parse_probe, run_matrix, select_versions, write_cell, write_summary,
        )
        from ocprobe.openclaw.installs import InstallManager, Stage
        from ocprobe.runner import log_patterns
        from ocprobe.targets import run_dir_for

        if not 0 <= sample <= 1000:
            raise UsageError(f"--sample must be between 0 and 1000, got {sample}")
        if sample and not version_range:
            raise UsageError("--sample takes a --range to sample from")
        plans = [parse_probe(text, message=message, timeout=timeout, settle=settle) for text in (probe or DEFAULT_PROBES)]
        spec = o.target_spec({"target": "openclaw@latest", "token_env": DEFAULT_TOKEN_ENV, "token_file": None,
                              "allow_insecure": False, "latency_ms": latency_ms, "openclaw_config": openclaw_config})
        patterns = log_patterns(log_pattern)
        if report is not None:
            check_output_dir(report, "--report")
        manager = InstallManager()
        published, tags = manager.available()
        chosen = select_versions(published, tags, versions=versions, version_range=version_range, sample=sample,
                                 prerelease=prerelease)
        directory = run_dir_for(run_dir, "matrix")
        output.info(f"matrix over {len(chosen)} release(s): {', '.join(chosen)}; probes: "
                    f"{'; '.join(p.text for p in plans)}; gateway output in {directory}")

        def install(version: str, info: object) -> object:
            def progress(v: str, stage: Stage, detail: str) -> None:
                if stage is not Stage.CACHED:
                    output.info(f"install {v}: {stage.value}{f' ({detail})' if detail else ''}")

            return manager.install(version, progress)

        view = _MatrixView(output)
        cells = asyncio.run(run_matrix(chosen, plans, spec, patterns, directory, view, install,
                                       on_cell=(lambda cell: write_cell(report, cell)) if report else (lambda _: None)))
        if report is not None:
            write_summary(report, cells)
        output.matrix_finished(cells, report)
        return exit_code(cells)

    raise typer.Exit(execute(output, work))


@app.command("merge", help="Merge matrix cells (report dirs of 'matrix run', or cell files) into one table; "
                           "one cell per release, the newest file winning. Exit codes: 0 every release passed, 1 not, 2 usage error.")
def merge(
    inputs: list[Path] = typer.Argument(..., help="Report dirs of 'ocprobe matrix run --report' or cell files."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write matrix.json and matrix.md (with every cell under cells/) here."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write the Markdown table to this file."),
    title: str = typer.Option(MATRIX_TITLE, "--title", help="Title of the Markdown table."),
    json_path: o.JsonOut = None,
    quiet: o.Quiet = False,
) -> None:
    output = make_output(json_path, quiet)

    def work() -> int:
        from ocprobe.matrix import exit_code, markdown as render_markdown, read_cells, write_cell, write_summary, write_text

        cells = read_cells(inputs)
        for cell in cells:
            output.cell_finished(cell)
        if report is not None:
            check_output_dir(report, "--report")
            for cell in cells:
                write_cell(report, cell)
            write_summary(report, cells, title)
        if markdown is not None:
            write_text(markdown, render_markdown(cells, title), "--markdown")
        output.matrix_finished(cells, report)
        return exit_code(cells)

    raise typer.Exit(execute(output, work))


class _MatrixView:
    """The matrix's progress through the output sink."""

    def __init__(self, output) -> None:  # type: ignore[no-untyped-def]
        self.output = output

    def info(self, message: str) -> None:
        self.output.info(message)

    def call_finished(self, record) -> None:  # type: ignore[no-untyped-def]
        self.output.call_progress(record, indent="    ")

    def cell_finished(self, cell) -> None:  # type: ignore[no-untyped-def]
        self.output.cell_finished(cell)

    def secrets(self, values) -> None:  # type: ignore[no-untyped-def]
        for value in values:
            self.output.redact.add(value)

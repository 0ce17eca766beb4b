"""``ocprobe openclaw install|list|remove``: real OpenClaw versions from npm in ocprobe's cache."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from ocprobe.cli.common import execute, make_output
from ocprobe.errors import UsageError

if TYPE_CHECKING:  # the install machinery and rich's progress are imported by the commands that use them
    from rich.progress import Progress

    from ocprobe.models import TargetInfo
    from ocprobe.openclaw.installs import Install, InstallManager, Stage
    from ocprobe.output.sink import Output

MB = 1e6
GB = 1e9

app = typer.Typer(help="Real OpenClaw versions installed from npm into ocprobe's cache "
                       "($OCPROBE_CACHE, default ~/.cache/ocprobe).", no_args_is_help=True)


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def _node_source(manager: InstallManager, install: Install) -> str:
    """'cache' for a Node fetched from npm, 'system' for the machine's own."""
    return "cache" if install.node_bin.is_relative_to(manager.root) else "system"


def _node(manager: InstallManager, install: Install) -> str:
    return f"{install.node_version} ({_node_source(manager, install)})"


def _install_json(manager: InstallManager, install: Install) -> dict[str, Any]:
    return {"version": install.version, "prefix": str(install.prefix), "size_bytes": install.size_bytes,
            "node_version": install.node_version, "node_bin": str(install.node_bin),
            "node_source": _node_source(manager, install),
            "installed_at": install.installed_at, "last_used_at": install.last_used_at}


def _emit(output: Output, records: Sequence[dict[str, Any]], table: Table) -> None:
    """JSON lines in --json mode, else the table."""
    from ocprobe.output.sink import Mode

    if output.mode is Mode.JSON:
        for record in records:
            output.data(record, "")
    else:
        output.console.print(table)


class _Tracker:
    """Times each version from its first progress event to its last (the CLI reports install time),
    and drives the live display when there is one. Called from the install threads."""

    def __init__(self, display: Progress | None) -> None:
        self._display = display
        self._lock = threading.Lock()
        self._tasks: dict[str, Any] = {}
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.outcome: dict[str, Stage] = {}

    def __call__(self, version: str, stage: Stage, detail: str) -> None:
        from ocprobe.openclaw.installs import Stage

        now = time.monotonic()
        with self._lock:
            self.started.setdefault(version, now)
            if stage.finished:
                self.ended[version], self.outcome[version] = now, stage
            if self._display is None:
                return
            if version not in self._tasks:
                self._tasks[version] = self._display.add_task("", total=1, version=version)
            label = f"{stage.value} {detail}" if stage is Stage.NODE else stage.value
            self._display.update(self._tasks[version], description=label, completed=int(stage.finished))

    def seconds(self, version: str) -> float:
        return self.ended.get(version, 0.0) - self.started.get(version, 0.0)


@contextmanager
def _tracking(output: Output) -> Iterator[_Tracker]:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ocprobe.output.sink import Mode

    if output.mode is not Mode.HUMAN:
        yield _Tracker(None)
        return
    display = Progress(SpinnerColumn(), TextColumn("{task.fields[version]:<16}"), TextColumn("{task.description}"),
                       TimeElapsedColumn(), console=output.err_console, transient=True)
    with display:
        yield _Tracker(display)


JSON_OPTION = typer.Option(False, "--json", help="JSON lines on stdout instead of tables.")


@app.command("install")
def install(
    versions: list[str] = typer.Argument(..., help="Versions or dist-tags, e.g. 2026.5.3 2026.4.26 latest."),
    parallel: int = typer.Option(2, "--parallel", help="How many versions install at once."),
    cache_max_gb: Optional[float] = typer.Option(
        None, "--cache-max-gb", help="Then evict least recently used installs until the cache holds at most "
                                     "this many GB (10^9 bytes); the versions just installed stay."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Install versions, each into its own prefix (with a Node its engines.node accepts). Exit 2 if any failed."""
    output = make_output("-" if json_out else None, False)

    def run() -> int:
        from ocprobe.openclaw.installs import Install, InstallError, InstallManager, Stage

        if parallel < 1:
            raise UsageError("--parallel must be at least 1")
        if cache_max_gb is not None and cache_max_gb <= 0:
            raise UsageError("--cache-max-gb must be more than 0")
        manager = InstallManager()
        with _tracking(output) as tracker:
            results = manager.install_many(versions, max_parallel=parallel, on_progress=tracker)
        table = Table(title=f"openclaw installs in {manager.openclaw_root}", title_justify="left")
        for name, justify in (("version", "left"), ("result", "left"), ("time", "right"), ("size", "right"),
                              ("node", "left")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        records = []
        for version, result in results.items():
            seconds = tracker.seconds(version)
            if isinstance(result, InstallError):
                records.append({"record": "install", "version": version, "result": "failed", "seconds": seconds,
                                "error": str(result)})
                table.add_row(version, Text("failed", style="bold red"), f"{seconds:.1f} s", "", "")
                continue
            outcome = "cached" if tracker.outcome.get(version) is Stage.CACHED else "installed"
            records.append({"record": "install", "result": outcome, "seconds": seconds,
                            **_install_json(manager, result)})
            table.add_row(version, Text("installed", style="green") if outcome == "installed" else "already installed",
                          f"{seconds:.1f} s", f"{result.size_bytes / MB:.0f} MB", _node(manager, result))
        _emit(output, records, table)
        failed = [r for r in results.values() if isinstance(r, InstallError)]
        for error in failed:
            output.error(str(error))
        if cache_max_gb is not None:
            _evict(output, manager, cache_max_gb,
                   keep=[v for v, r in results.items() if isinstance(r, Install)])
        return 2 if failed else 0

    raise typer.Exit(execute(output, run))


def _evict(output: Output, manager: InstallManager, max_gb: float, keep: list[str]) -> None:
    for install in manager.evict_to(int(max_gb * GB), keep=keep):
        output.data({"record": "evicted", **_install_json(manager, install)},
                    f"evicted openclaw {install.version} ({install.size_bytes / MB:.0f} MB, "
                    f"last used {_when(install.last_used_at)})")
    total = manager.total_bytes()
    if total > max_gb * GB:
        output.warn(f"the cache still holds {total / GB:.2f} GB: the rest is in use or was just installed")


@app.command("list")
def list_installs(
    available: bool = typer.Option(False, "--available", help="Also list the versions published on npm, with dist-tags."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Installed versions (size, Node, last use); with --available the registry's versions too."""
    output = make_output("-" if json_out else None, False)

    def run() -> None:
        from ocprobe.openclaw.installs import InstallManager

        manager = InstallManager()
        installs = manager.installed()
        table = Table(title=f"openclaw installs in {manager.openclaw_root}", title_justify="left")
        for name, justify in (("version", "left"), ("size", "right"), ("node", "left"), ("installed", "left"),
                              ("last used", "left")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for i in installs:
            table.add_row(i.version, f"{i.size_bytes / MB:.0f} MB", _node(manager, i), _when(i.installed_at),
                          _when(i.last_used_at))
        _emit(output, [{"record": "installed", **_install_json(manager, i)} for i in installs], table)
        output.info(f"{len(installs)} installed; cache {manager.total_bytes() / GB:.2f} GB "
                    f"(fetched Node runtimes {manager.nodes.total_bytes() / MB:.0f} MB)")
        if not available:
            return
        versions, tags = manager.available()
        tags_of: dict[str, list[str]] = {}
        for tag, version in tags.items():
            tags_of.setdefault(version, []).append(tag)
        present = {i.version for i in installs}
        published = Table(title="openclaw on npm (oldest first)", title_justify="left")
        for name in ("version", "dist-tags", "installed"):
            published.add_column(name)
        for version in versions:
            published.add_row(version, ", ".join(tags_of.get(version, [])), "✔" if version in present else "")
        _emit(output, [{"record": "available", "version": v, "dist_tags": tags_of.get(v, []), "installed": v in present}
                       for v in versions], published)

    execute(output, run)


@app.command("releases")
def releases(
    version: Optional[str] = typer.Argument(None, help="A version: what ocprobe knows of it (default: the whole table)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """What differs between releases, as ocprobe launches them: each change with the first release that has
    it and where it was read (ocprobe/openclaw/releases.py); with a VERSION, that release's traits."""
    output = make_output("-" if json_out else None, False)

    def run() -> None:
        from dataclasses import asdict

        from ocprobe.openclaw.releases import table_rows, traits
        from ocprobe.openclaw.semver import is_version

        if version is not None:
            if not is_version(version):
                raise UsageError(f"{version!r} is not an openclaw version (e.g. 2026.5.3)")
            known = asdict(traits(version.strip()))
            table = Table(title=f"openclaw {version.strip()} as ocprobe launches it", title_justify="left")
            table.add_column("trait")
            table.add_column("value", overflow="fold")
            for name, value in known.items():
                table.add_row(name, ", ".join(value) if isinstance(value, (list, tuple)) else str(value))
            _emit(output, [{"record": "traits", "version": version.strip(), **known}], table)
            return
        rows = table_rows()
        table = Table(title="what differs between openclaw releases (oldest first)", title_justify="left")
        for name in ("since", "trait", "value", "evidence"):
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(row["since"], row["trait"], row["value"], row["evidence"])
        _emit(output, [{"record": "change", **row} for row in rows], table)

    execute(output, run)


@app.command("remove")
def remove(
    versions: Optional[list[str]] = typer.Argument(None, help="Installed versions to remove."),
    all_: bool = typer.Option(False, "--all", help="Remove every install and every fetched Node."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Remove installed versions (exit 2 if one is in use by another process)."""
    output = make_output("-" if json_out else None, False)

    def run() -> int:
        from ocprobe.openclaw.installs import InstallBusy, InstallManager

        if bool(versions) == all_:
            raise UsageError("give the versions to remove, or --all (not both)")
        manager = InstallManager()
        busy: list[str] = []
        if all_:
            removed, busy = manager.remove_all()
        else:
            wanted = list(dict.fromkeys(versions or []))
            missing = [v for v in wanted if manager.get(v) is None]
            if missing:  # refuse before removing anything
                raise UsageError(f"not installed: {', '.join(missing)}")
            removed = []
            for version in wanted:
                try:
                    removed.append(manager.remove(version))
                except InstallBusy:
                    busy.append(version)
        for install in removed:
            output.data({"record": "removed", **_install_json(manager, install)},
                        f"removed openclaw {install.version} ({install.size_bytes / MB:.0f} MB)")
        for version in busy:
            output.error(f"openclaw {version} is in use or being installed by another process: not removed")
        return 2 if busy else 0

    raise typer.Exit(execute(output, run))


@app.command("up")
def up(
    version: str = typer.Argument(..., help="Version or dist-tag (installed first if needed)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="State, config and logs go here (default: a new dir in the cache)."),
    openclaw_config: Optional[Path] = typer.Option(None, "--openclaw-config", help="JSON5 config fragment merged over the generated config."),
    latency_ms: float = typer.Option(1000.0, "--latency-ms", help="Latency of ocprobe's provider, the gateway's LLM."),
    json_out: bool = typer.Option(False, "--json", help="Print the ready line as JSON."),
) -> None:
    """Launch a real gateway, isolated, with ocprobe's provider as its LLM; runs until Ctrl-C."""
    output = make_output("-" if json_out else None, False)

    def ready(info: TargetInfo) -> None:
        extra = info.extra
        record = {"event": "ready", "version": info.gateway_version, "node_version": info.node_version, **extra}
        human = (
            f"openclaw {info.gateway_version} (node {info.node_version}) ready\n"
            f"  websocket  {extra['url']}\n"
            f"  token      in {extra['token_file']}\n"
            f"  logs       {extra['log_file']}, {extra['run_dir']}/gateway.stderr.log, gateway.stdout.log\n"
            f"  provider   ocprobe witness, {latency_ms:g} ms per reply\n"
            "Ctrl-C stops it."
        )
        output.data(record, human)

    def run() -> None:
        import asyncio

        from ocprobe.defaults import OPENCLAW_PREFIX
        from ocprobe.openclaw.target import serve_up
        from ocprobe.targets import OpenClawOptions, run_dir_for

        directory = run_dir_for(run_dir, f"up-{version}")
        options = OpenClawOptions(config_fragment=openclaw_config, latency_ms=latency_ms)
        asyncio.run(serve_up(f"{OPENCLAW_PREFIX}{version}", directory, options, output.info, ready))

    execute(output, run)

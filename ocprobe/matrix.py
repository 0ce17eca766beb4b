"""A compatibility matrix: the same probes over a list or range of published OpenClaw releases.

Each release is one **cell**: installed (prefetched in the background, as bisect does), launched once,
probed by every probe in turn on fresh session keys, stopped. A cell is a JSON document on its own, so a
CI matrix can run one cell per job (``ocprobe matrix run --versions V --report DIR``) and merge the cells
afterwards (``ocprobe matrix merge``): the distributed engine is the CI's.

The core never prints: progress goes to an observer, results are returned and written by the caller.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from ocprobe.defaults import DEFAULT_SESSION_KEY, MATRIX_TITLE, OPENCLAW_PREFIX
from ocprobe.engine import ConcurrentConfig, ProbeConfig, ProbeEngine, SequentialConfig
from ocprobe.errors import OcprobeError, UsageError
from ocprobe.logwatch import LogWatcher
from ocprobe.models import CallRecord, ProbeResult
from ocprobe.openclaw.semver import Version, is_version, sort_versions
from ocprobe.runner import LIMITS, validate_config
from ocprobe.targets import TargetSpec, open_target, validate_target

CELL_SCHEMA_VERSION = 1
CELL_RECORD = "matrix-cell"
# Cell statuses: every probe ran and passed; some probe failed; the release could not be installed or
# launched (the reason says why, in one line).
PASS, FAIL, BROKEN = "pass", "fail", "broken"
DEFAULT_PROBES = ("sequential:n=10,gap=0",)
MAX_VERSIONS = 200
MAX_PROBES = 20
# Read a cell file no larger than this: a cell is a few KB.
MAX_CELL_BYTES = 4 * 1024 * 1024

_PROBE = re.compile(r"(sequential|concurrent)(?::(.*))?")
# Probe keys: the short names of the probe commands' options.
_KEYS: dict[str, dict[str, tuple[str, type]]] = {
    "sequential": {"n": ("calls", int), "gap": ("gap", float), "timeout": ("timeout", float)},
    "concurrent": {"n": ("calls", int), "c": ("concurrency", int), "sessions": ("sessions", int),
                   "timeout": ("timeout", float)},
}


@dataclass(frozen=True)
class ProbePlan:
    """One probe of every cell, written ``MODE:KEY=VALUE,...`` (e.g. ``concurrent:n=12,c=3,sessions=1``)."""

    text: str
    config: ProbeConfig


def parse_probe(text: str, *, message: str, timeout: float, settle: float | None) -> ProbePlan:
    """A ``--probe`` spec; UsageError naming what is wrong. ``timeout`` and ``settle``: the defaults."""
    match = _PROBE.fullmatch(text.strip())
    if not match:
        raise UsageError(f"--probe {text!r}: write MODE:KEY=VALUE,... with MODE sequential or concurrent "
                         f"(e.g. sequential:n=10,gap=0 or concurrent:n=12,c=3,sessions=1)")
    mode, rest = match.group(1), match.group(2) or ""
    values: dict[str, Any] = {"timeout": timeout}
    given: list[str] = []
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, raw = (part.strip() for part in item.partition("="))
        known = _KEYS[mode]
        if key not in known:
            raise UsageError(f"--probe {text!r}: unknown key {key!r} for {mode} (use {', '.join(known)})")
        if not sep or not raw:
            raise UsageError(f"--probe {text!r}: {key} needs a value ({key}=VALUE)")
        name, kind = known[key]
        try:
            values[name] = kind(raw)
        except ValueError:
            wanted = "a whole number" if kind is int else "a number"
            raise UsageError(f"--probe {text!r}: {key} must be {wanted}, got {raw!r}") from None
        LIMITS[name].check(values[name], f"--probe {text!r}: {key}")
        given.append(key)
    cls = SequentialConfig if mode == "sequential" else ConcurrentConfig
    config = cls(message=message, settle=settle, **values)
    validate_config(config)
    settings = ",".join(f"{k}={_num(values[n])}" for k, (n, _) in _KEYS[mode].items() if k in given)
    return ProbePlan(text=f"{mode}:{settings}" if settings else mode, config=config)


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def select_versions(published: Sequence[str], tags: dict[str, str], *, versions: str | None,
                    version_range: str | None, sample: int, prerelease: bool) -> list[str]:
    """The releases of a matrix, oldest first: ``versions`` (comma-separated versions or dist-tags) and/or a
    range ``A..B`` (both ends included; every release between, or ``sample`` of them evenly spaced)."""
    published = sort_versions(v for v in published if is_version(v))
    chosen: list[str] = []
    for spec in filter(None, (v.strip() for v in (versions or "").split(","))):
        version = tags.get(spec, spec)
        if version not in published:
            raise UsageError(f"--versions: {spec!r} is not a published openclaw version (nor a dist-tag)")
        chosen.append(version)
    if version_range:
        low_text, sep, high_text = version_range.partition("..")
        if not sep:
            raise UsageError(f"--range {version_range!r}: write OLDEST..NEWEST, e.g. 2026.5.7..2026.5.12")
        ends = []
        for end in (low_text.strip(), high_text.strip()):
            resolved = tags.get(end, end)
            if not is_version(resolved):
                raise UsageError(f"--range {version_range!r}: {end!r} is not a version (nor a dist-tag)")
            ends.append(Version.parse(resolved))
        low, high = sorted(ends)
        inside = [v for v in published if low <= Version.parse(v) <= high
                  and (prerelease or not Version.parse(v).prerelease)]
        if not inside:
            raise UsageError(f"--range {version_range!r} holds no published version"
                             f"{'' if prerelease else ' (prereleases left out; --prerelease takes them)'}")
        chosen.extend(evenly_spaced(inside, sample) if sample else inside)
    if not chosen:
        raise UsageError("name the releases: --versions A,B,... and/or --range OLDEST..NEWEST")
    unique = sort_versions(dict.fromkeys(chosen))
    if len(unique) > MAX_VERSIONS:
        raise UsageError(f"{len(unique)} releases selected, more than {MAX_VERSIONS}: use --sample N")
    return unique


def evenly_spaced(items: Sequence[str], count: int) -> list[str]:
    """``count`` items spread evenly from the first to the last, both included."""
    if count >= len(items):
        return list(items)
    if count == 1:
        return [items[-1]]
    step = (len(items) - 1) / (count - 1)
    return list(dict.fromkeys(items[round(i * step)] for i in range(count)))


@dataclass
class ProbeOutcomeCell:
    """One probe's figures in a cell."""

    probe: str
    verdict: str  # pass | fail
    calls: int
    counts: dict[str, int]
    strip: str
    pattern: str
    fates: dict[str, int]
    log_counts: dict[str, int]
    median_ms: dict[str, float]  # per class
    elapsed_s: float


@dataclass
class Cell:
    version: str
    status: str  # pass | fail | broken
    reason: str = ""  # why broken (one line), else empty
    install_s: float | None = None  # how long the install took (when ocprobe installed it)
    registry_refresh_s: float | None = None
    ready_s: float | None = None  # gateway process start -> /readyz ready
    protocol: int | None = None
    gateway_version: str | None = None
    node_version: str | None = None
    probes: list[ProbeOutcomeCell] = field(default_factory=list)
    elapsed_s: float = 0.0
    run_dir: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"record": CELL_RECORD, "schema_version": CELL_SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: Any, source: str) -> Cell:
        if not isinstance(data, dict) or data.get("record") != CELL_RECORD:
            raise UsageError(f"{source}: not a matrix cell (written by 'ocprobe matrix run --report')")
        if data.get("schema_version") != CELL_SCHEMA_VERSION:
            raise UsageError(f"{source}: matrix cell schema {data.get('schema_version')!r}, this ocprobe reads "
                             f"{CELL_SCHEMA_VERSION}")
        try:
            probes = [ProbeOutcomeCell(**p) for p in data.get("probes", [])]
            fields_ = {k: v for k, v in data.items() if k not in ("record", "schema_version", "probes")}
            cell = cls(probes=probes, **fields_)
        except TypeError as exc:
            raise UsageError(f"{source}: malformed matrix cell: {exc}") from None
        canonical = isinstance(cell.version, str) and is_version(cell.version) and str(Version.parse(cell.version)) == cell.version
        if not canonical or cell.status not in (PASS, FAIL, BROKEN):
            raise UsageError(f"{source}: malformed matrix cell (version or status)")
        return cell


class MatrixObserver(Protocol):
    def info(self, message: str) -> None: ...

    def call_finished(self, record: CallRecord) -> None: ...

    def cell_finished(self, cell: Cell) -> None: ...

    def secrets(self, values: Sequence[str]) -> None: ...


Installer = Callable[[str, Callable[[str], None]], object]


class _Calls:
    """The engine's observer: calls are passed on, runs are reported per cell."""

    def __init__(self, on_call: Callable[[CallRecord], None]) -> None:
        self.call_finished = on_call

    def run_finished(self, result: ProbeResult) -> None:
        pass


def _outcome(plan: ProbePlan, result: ProbeResult, elapsed: float) -> ProbeOutcomeCell:
    s = result.summary
    return ProbeOutcomeCell(
        probe=plan.text, verdict=PASS if s.all_real else FAIL, calls=s.calls, counts=dict(s.counts),
        strip=s.strip, pattern=s.pattern, fates=dict(s.fates), log_counts=dict(s.log_counts),
        median_ms={name: round(stats.median_ms, 1) for name, stats in s.latency.items()}, elapsed_s=round(elapsed, 1))


async def run_cell(version: str, plans: Sequence[ProbePlan], base: TargetSpec, patterns: Sequence[str],
                   run_dir: Path, observer: MatrixObserver) -> Cell:
    """Launch ``version`` once and run every probe on it; a release that cannot be installed or launched
    is a BROKEN cell with its reason, not an error of the matrix."""
    started = time.monotonic()
    cell = Cell(version=version, status=BROKEN, run_dir=str(run_dir))
    spec = copy.deepcopy(base)
    spec.target = f"{OPENCLAW_PREFIX}{version}"
    token = validate_target(spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    logs = LogWatcher(patterns, ())
    await logs.start()
    try:
        async with open_target(spec, token, logs, run_dir, on_progress=observer.info) as opened:
            observer.secrets(opened.secrets)
            info = opened.info
            cell.protocol, cell.gateway_version, cell.node_version = info.protocol, info.gateway_version, info.node_version
            cell.install_s = info.extra.get("install_s")
            cell.registry_refresh_s = info.extra.get("registry_refresh_s")
            cell.ready_s = info.extra.get("ready_s")
            for number, plan in enumerate(plans, 1):
                # Fresh sessions and keys: turns one probe left queued must not land in the next.
                cfg = replace(plan.config, session_key=f"{DEFAULT_SESSION_KEY}-m{number}-{secrets.token_hex(2)}",
                              probe_id=secrets.token_hex(3))
                observer.info(f"openclaw {version}: probe {number}/{len(plans)} {plan.text}")
                engine = ProbeEngine(opened.transport, info, witness=opened.witness, logs=logs,
                                     observer=_Calls(observer.call_finished))
                probe_started = time.monotonic()
                result = await engine.run(cfg)
                cell.probes.append(_outcome(plan, result, time.monotonic() - probe_started))
        cell.status = PASS if all(p.verdict == PASS for p in cell.probes) else FAIL
    except UsageError:
        raise  # the user's input, not the release: the whole matrix stops
    except OcprobeError as exc:
        cell.reason = " ".join(str(exc).split())
    finally:
        await logs.stop()
        cell.elapsed_s = round(time.monotonic() - started, 1)
    return cell


async def run_matrix(versions: Sequence[str], plans: Sequence[ProbePlan], base: TargetSpec, patterns: Sequence[str],
                     run_dir: Path, observer: MatrixObserver, install: Installer | None,
                     on_cell: Callable[[Cell], None] = lambda _: None) -> list[Cell]:
    """Every cell in turn, the next installs prefetched while the current one is probed. ``on_cell`` gets
    each cell as it ends (to save it at once: a matrix cut short keeps the cells it finished)."""
    from ocprobe.bisect.run import Prefetcher  # the same background installer as bisect

    cells: list[Cell] = []
    prefetcher = Prefetcher(install, observer.info) if install is not None else None
    try:
        if prefetcher is not None:
            prefetcher.want(versions)
        for version in versions:
            if prefetcher is not None:
                try:
                    await prefetcher.ready(version)
                except OcprobeError as exc:
                    cell = Cell(version=version, status=BROKEN, reason=" ".join(str(exc).split()))
                    cells.append(cell)
                    on_cell(cell)
                    observer.cell_finished(cell)
                    continue
            cell = await run_cell(version, plans, base, patterns, run_dir / version, observer)
            cells.append(cell)
            on_cell(cell)
            observer.cell_finished(cell)
    finally:
        if prefetcher is not None:
            prefetcher.close()
    return cells


def exit_code(cells: Sequence[Cell]) -> int:
    """0 every cell passed, 1 some cell failed or could not run (or there was none: nothing passed)."""
    return 0 if cells and all(c.status == PASS for c in cells) else 1


# -- cells on disk ---------------------------------------------------------------------------------------

CELL_DIR = "cells"


def write_cell(directory: Path, cell: Cell) -> Path:
    """``DIR/cells/VERSION.json``, written whole or not at all."""
    path = directory / CELL_DIR / f"{cell.version}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(cell.to_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_cells(paths: Sequence[Path]) -> list[Cell]:
    """Cells from files and report dirs (their ``cells/*.json``); one per version, the latest run winning;
    oldest release first."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            # A report dir holds its cells under cells/; a plain dir of cell files is read whole.
            found = sorted((path / CELL_DIR).glob("*.json")) if (path / CELL_DIR).is_dir() else sorted(path.glob("*.json"))
            found = [f for f in found if f.name != MATRIX_JSON]
            files.extend(found)
            if not found:
                raise UsageError(f"{path}: no matrix cells in it (expected {CELL_DIR}/VERSION.json)")
        else:
            files.append(path)
    by_version: dict[str, tuple[float, Cell]] = {}
    for file in files:
        try:
            if file.stat().st_size > MAX_CELL_BYTES:
                raise UsageError(f"{file}: {file.stat().st_size} bytes, too large for a matrix cell")
            data = json.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"cannot read {file}: {exc.strerror}") from None
        except (ValueError, RecursionError):
            raise UsageError(f"{file}: not JSON") from None
        cell = Cell.from_json(data, str(file))
        mtime = file.stat().st_mtime
        if cell.version not in by_version or by_version[cell.version][0] <= mtime:
            by_version[cell.version] = (mtime, cell)
    return [by_version[v][1] for v in sort_versions(by_version)]


MATRIX_JSON = "matrix.json"
MATRIX_MD = "matrix.md"


def matrix_json(cells: Sequence[Cell]) -> dict[str, Any]:
    return {"record": "matrix", "schema_version": CELL_SCHEMA_VERSION, "cells": [c.to_json() for c in cells],
            "exit_code": exit_code(cells)}


def write_text(path: Path, text: str, what: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {what} {path}: {exc.strerror}") from None


def write_summary(directory: Path, cells: Sequence[Cell], title: str = MATRIX_TITLE) -> None:
    """``matrix.json`` and ``matrix.md`` of a report dir (its cells are written as each release ends)."""
    write_text(directory / MATRIX_JSON, json.dumps(matrix_json(cells), indent=1, ensure_ascii=False) + "\n", "--report")
    write_text(directory / MATRIX_MD, markdown(cells, title), "--report")


def _secs(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} s"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items() if n) or "none"


def _logs(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items() if n) or "0"


def table_rows(cells: Sequence[Cell]) -> list[dict[str, str]]:
    """One row per cell and probe: the matrix as the table and Markdown show it."""
    rows = []
    for cell in cells:
        base = {"version": cell.version, "install": _secs(cell.install_s), "ready": _secs(cell.ready_s),
                "protocol": "" if cell.protocol is None else str(cell.protocol),
                "node": cell.node_version or "", "status": cell.status}
        if not cell.probes:
            rows.append({**base, "probe": "", "classes": "", "pattern": "", "fates": "", "log": "",
                         "verdict": cell.reason or cell.status})
            continue
        for probe in cell.probes:
            real_ms = probe.median_ms.get("real")
            rows.append({**base, "probe": probe.probe, "classes": _counts(probe.counts),
                         "pattern": f"{probe.pattern} {probe.strip}",
                         "real ms": "" if real_ms is None else f"{real_ms:.0f}",
                         "fates": _counts(probe.fates), "log": _logs(probe.log_counts), "verdict": probe.verdict})
    return rows


COLUMNS = ("version", "install", "ready", "protocol", "node", "probe", "classes", "real ms", "pattern", "fates",
           "log", "verdict")
#: What the terminal shows of them (the Markdown and JSON have every column).
TERMINAL_COLUMNS = ("version", "ready", "protocol", "probe", "classes", "pattern", "fates", "log", "verdict")


def markdown(cells: Sequence[Cell], title: str = MATRIX_TITLE) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in table_rows(cells):
        lines.append("| " + " | ".join(_md(row.get(col, "")) for col in COLUMNS) + " |")
    broken = [c for c in cells if c.status == BROKEN]
    if broken:
        lines += ["", "Releases that could not be probed:", ""]
        lines += [f"- {c.version}: {_md(c.reason)}" for c in broken]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")

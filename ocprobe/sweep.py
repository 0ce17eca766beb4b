"""``ocprobe sweep``: the sequential probe over a list of values of one parameter, and where it stops failing.

For each value (a ``--gap``, or the embedded gateway's teardown or LLM latency) the probe runs
``repeat`` times (fresh sessions, a fresh embedded stack per point); each point reports its failure
rate with a 95% Wilson interval. Along the gaps, the largest gap that still fails and the smallest
clean gap above it bracket the race window.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol
from html import escape  # valid XML too, and lighter to import than xml.sax.saxutils (urllib)

from ocprobe.classify import percentile
from ocprobe.engine import SequentialConfig
from ocprobe.errors import UsageError
from ocprobe.models import CallClass, CallRecord, ProbeResult, TargetInfo
from ocprobe.runner import LIMITS, ProbeOutcome, run_probe, validate_config
from ocprobe.stats import wilson_interval
from ocprobe.targets import EMBEDDED, TargetSpec, validate_target

# parameter -> (option, label, unit multiplier to ms, side of the boundary where calls fail)
PARAMETERS: dict[str, tuple[str, str, float, str]] = {
    "gap": ("--gaps", "gap", 1000.0, "low"),  # given in seconds, like --gap
    "teardown_ms": ("--teardowns-ms", "teardown", 1.0, "high"),
    "latency_ms": ("--latencies-ms", "LLM latency", 1.0, "high"),
}
MAX_POINTS = 100
# The range of each swept value, in its own unit: the gap's as --gap, the embedded gateway's as its options.
POINT_RANGES: dict[str, tuple[float, float]] = {"gap": (0, 3600), "teardown_ms": (0, 600_000), "latency_ms": (0, 600_000)}
PLOT_SUFFIXES = (".svg", ".png")


@dataclass
class SweepConfig:
    parameter: str  # a key of PARAMETERS
    values: list[float]  # in the option's unit (seconds for gaps, ms otherwise)
    probe: SequentialConfig = field(default_factory=SequentialConfig)  # every other probe setting
    repeat: int = 3


@dataclass
class SweepPoint:
    parameter: str
    value: float  # in the option's unit
    value_ms: float
    runs: int
    calls: int
    failures: int  # calls that were not real
    failure_rate: float
    wilson_low: float
    wilson_high: float
    counts: dict[str, int]
    log_counts: dict[str, int]
    log_lines: int  # distinct log lines matched (a drain failure matches both default patterns)
    strips: list[str]  # one per run
    real_median_ms: float | None
    real_p95_ms: float | None
    interrupted: bool = False

    @property
    def failed(self) -> bool:
        return self.failures > 0

    def to_json(self) -> dict[str, Any]:
        return {"record": "point", **vars(self)}


@dataclass(frozen=True)
class Boundary:
    """Where the calls stop failing along the swept values.

    Gaps (failures at small gaps): ``failing_ms`` is the largest gap that still fails, ``clean_ms`` the
    smallest gap above it without a failure; the race window lies between them. Teardown or latency
    (failures at large values): ``failing_ms`` is the smallest value that fails, ``clean_ms`` the
    largest clean value below it. ``estimate_ms`` is the middle of the bracket, when both ends exist.
    """

    parameter: str
    failing_ms: float | None
    clean_ms: float | None

    @property
    def estimate_ms(self) -> float | None:
        if self.failing_ms is None or self.clean_ms is None:
            return None
        return round((self.failing_ms + self.clean_ms) / 2, 3)

    def to_json(self) -> dict[str, Any]:
        if self.parameter == "gap":
            return {"largest_failing_ms": self.failing_ms, "smallest_clean_above_ms": self.clean_ms,
                    "estimate_ms": self.estimate_ms}
        return {"smallest_failing_ms": self.failing_ms, "largest_clean_below_ms": self.clean_ms,
                "estimate_ms": self.estimate_ms}

    def describe(self) -> str:
        label = PARAMETERS[self.parameter][1]
        if self.failing_ms is None:
            return f"no failure at any {label}"
        if self.parameter == "gap":
            if self.clean_ms is None:
                return f"race window: fails up to the largest gap ({_ms(self.failing_ms)}): it is wider than that"
            return (f"race window: largest failing gap {_ms(self.failing_ms)}, smallest clean gap above "
                    f"{_ms(self.clean_ms)}: about {_ms(self.estimate_ms)}")
        if self.clean_ms is None:
            return f"threshold: fails from the smallest {label} ({_ms(self.failing_ms)})"
        return (f"threshold: smallest failing {label} {_ms(self.failing_ms)}, largest clean {label} below "
                f"{_ms(self.clean_ms)}: about {_ms(self.estimate_ms)}")


@dataclass
class SweepResult:
    parameter: str
    points: list[SweepPoint]
    boundary: Boundary
    target: TargetInfo | None
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        return 1 if any(p.failed for p in self.points) else 0

    def to_json(self) -> dict[str, Any]:
        key = "window" if self.parameter == "gap" else "threshold"
        return {
            "record": "summary",
            "kind": "sweep",
            "parameter": self.parameter,
            "points": len(self.points),
            "failing_points": [p.value for p in self.points if p.failed],
            key: self.boundary.to_json(),
            "interrupted": self.interrupted,
            "exit_code": self.exit_code,
        }


class SweepObserver(Protocol):
    def point_started(self, parameter: str, value: float, number: int, total: int) -> None: ...

    def point_finished(self, point: SweepPoint) -> None: ...

    def sweep_finished(self, result: SweepResult) -> None: ...


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:g} ms"


# -- the figures ---------------------------------------------------------------------------------

def parse_values(text: str, parameter: str) -> list[float]:
    """``0,0.05,0.1`` (the option of ``parameter``) -> sorted distinct floats; a bad list is a usage error."""
    option = PARAMETERS[parameter][0]
    values: list[float] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            values.append(float(part))
        except ValueError:
            raise UsageError(f"bad {option} value {part!r}: not a number") from None
    return check_values(values, parameter, option)


def check_values(values: Sequence[float], parameter: str, where: str) -> list[float]:
    """The points of a sweep, checked once for the command line and scenario files alike (``where`` names
    the option or FILE:LINE: KEY): finite, in the parameter's range, at most MAX_POINTS."""
    low, high = POINT_RANGES[parameter]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not low <= value <= high:
            raise UsageError(f"{where}: value {value!r} must be a finite number from {low:g} to {high:g}")
    distinct = sorted(set(float(v) for v in values))
    if not distinct:
        raise UsageError(f"{where} needs at least one value")
    if len(distinct) > MAX_POINTS:
        raise UsageError(f"{where} has {len(distinct)} values; at most {MAX_POINTS}")
    return distinct


def point_from_runs(parameter: str, value: float, runs: Sequence[ProbeResult], log_counts: dict[str, int]) -> SweepPoint:
    records: list[CallRecord] = [r for run in runs for r in run.records]
    calls = len(records)
    failures = sum(1 for r in records if not r.passed)
    low, high = wilson_interval(failures, calls)
    counts = {c.value: 0 for c in CallClass}
    for record in records:
        counts[record.cls.value] += 1
    real = [r.latency_ms for r in records if r.passed]
    lines = {(m.source, m.at, m.line) for run in runs for m in run.log_matches}
    return SweepPoint(
        parameter=parameter, value=value, value_ms=round(value * PARAMETERS[parameter][2], 6), runs=len(runs),
        calls=calls, failures=failures, failure_rate=round(failures / calls, 6) if calls else 0.0,
        wilson_low=round(low, 6), wilson_high=round(high, 6), counts=counts, log_counts=dict(log_counts),
        log_lines=len(lines), strips=[run.summary.strip for run in runs],
        real_median_ms=round(percentile(real, 50), 3) if real else None,
        real_p95_ms=round(percentile(real, 95), 3) if real else None,
        interrupted=any(run.summary.interrupted for run in runs),
    )


def estimate_boundary(parameter: str, points: Sequence[SweepPoint]) -> Boundary:
    """The bracket of values where failures stop (see ``Boundary``); points with no call are ignored."""
    measured = [p for p in points if p.calls]
    failing = [p.value_ms for p in measured if p.failed]
    clean = [p.value_ms for p in measured if not p.failed]
    if not failing:
        return Boundary(parameter, None, None)
    if PARAMETERS[parameter][3] == "low":
        edge = max(failing)
        beyond = [v for v in clean if v > edge]
        return Boundary(parameter, edge, min(beyond) if beyond else None)
    edge = min(failing)
    below = [v for v in clean if v < edge]
    return Boundary(parameter, edge, max(below) if below else None)


# -- running -------------------------------------------------------------------------------------

class _PointObserver:
    """The probes of one point report here, silently: the sweep reports per point, not per call."""

    def __init__(self) -> None:
        self.target: TargetInfo | None = None
        self.outcome: ProbeOutcome | None = None

    def probe_started(self, target: TargetInfo, calls: int, secrets: Sequence[str]) -> None:
        self.target = target

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def call_finished(self, record: CallRecord) -> None:
        pass

    def run_finished(self, result: ProbeResult) -> None:
        pass

    def probe_finished(self, outcome: ProbeOutcome) -> None:
        self.outcome = outcome


def _point_setup(spec: TargetSpec, cfg: SweepConfig, number: int, value: float) -> tuple[TargetSpec, SequentialConfig]:
    point_spec = copy.deepcopy(spec)
    # Every point on its own sessions, nonces and idempotency keys: leftovers of one must not touch the next.
    probe = replace(cfg.probe, probe_id=secrets.token_hex(3),
                    session_key=f"{cfg.probe.session_key}-p{number}" if len(cfg.values) > 1 else cfg.probe.session_key)
    if cfg.parameter == "gap":
        probe.gap = value
    elif cfg.parameter == "teardown_ms":
        point_spec.embedded.teardown_ms = value
    else:
        point_spec.embedded.latency_ms = value
    return point_spec, probe


def validate_sweep(spec: TargetSpec, cfg: SweepConfig) -> None:
    """Every point's options, before the first one runs."""
    if cfg.parameter not in PARAMETERS:
        raise UsageError(f"unknown sweep parameter {cfg.parameter!r}")
    if not cfg.values:
        raise UsageError(f"{PARAMETERS[cfg.parameter][0]} needs at least one value")
    LIMITS["repeat"].check(cfg.repeat)
    if cfg.parameter != "gap" and spec.target != EMBEDDED and not spec.target.startswith(f"{EMBEDDED}:"):
        raise UsageError(f"{PARAMETERS[cfg.parameter][0]} sets the embedded gateway: it needs --target embedded")
    for number, value in enumerate(cfg.values, 1):
        point_spec, probe = _point_setup(spec, cfg, number, value)
        validate_config(probe)
        validate_target(point_spec)


async def run_sweep(
    spec: TargetSpec,
    cfg: SweepConfig,
    *,
    log_paths: Sequence[str],
    patterns: Sequence[str],
    run_dir: Path | None,
    observer: SweepObserver,
) -> SweepResult:
    """Run every point in order; cut short, the points measured so far are still reported."""
    validate_sweep(spec, cfg)
    points: list[SweepPoint] = []
    target: TargetInfo | None = None
    total = len(cfg.values)
    try:
        for number, value in enumerate(cfg.values, 1):
            point_spec, probe = _point_setup(spec, cfg, number, value)
            observer.point_started(cfg.parameter, value, number, total)
            inner = _PointObserver()
            try:
                outcome = await run_probe(
                    point_spec, probe, log_paths=log_paths, patterns=patterns, repeat=cfg.repeat,
                    run_dir=run_dir / f"point-{number}" if run_dir is not None else None, observer=inner,
                )
            except BaseException:
                if inner.outcome is not None and inner.outcome.runs:  # the runs of the point cut short
                    points.append(point_from_runs(cfg.parameter, value, inner.outcome.runs, inner.outcome.pooled.log_counts))
                    observer.point_finished(points[-1])
                target = target or inner.target
                raise
            target = target or outcome.target
            points.append(point_from_runs(cfg.parameter, value, outcome.runs, outcome.pooled.log_counts))
            observer.point_finished(points[-1])
    except BaseException:
        observer.sweep_finished(SweepResult(cfg.parameter, points, estimate_boundary(cfg.parameter, points), target,
                                            interrupted=True))
        raise
    result = SweepResult(cfg.parameter, points, estimate_boundary(cfg.parameter, points), target)
    observer.sweep_finished(result)
    return result


# -- the plot ------------------------------------------------------------------------------------

def check_plot_path(path: Path) -> None:
    """Refuse a plot that cannot be written before the sweep runs."""
    suffix = path.suffix.lower()
    if suffix not in PLOT_SUFFIXES:
        raise UsageError(f"--plot {path}: use a .svg or .png file name")
    if suffix == ".png" and importlib.util.find_spec("matplotlib") is None:
        raise UsageError(f"--plot {path}: a PNG needs matplotlib, which is not installed (pip install matplotlib), "
                         "or write an SVG instead: --plot {}".format(path.with_suffix(".svg")))
    if path.is_dir():
        raise UsageError(f"--plot {path} is a directory")


def write_plot(result: SweepResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        _write_png(result, path)
    else:
        path.write_text(svg_chart(result), encoding="utf-8")


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9 and len(ticks) < 50:
        ticks.append(round(value, 10))
        value += step
    return ticks


def svg_chart(result: SweepResult, width: int = 640, height: int = 400) -> str:
    """Failure rate (%) against the swept value (ms) with 95% Wilson error bars: a small, valid SVG."""
    left, right, top, bottom = 64, 24, 40, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [p.value_ms for p in result.points] or [0.0]
    x_ticks = nice_ticks(min(xs), max(xs))
    x_lo, x_hi = x_ticks[0], max(x_ticks[-1], x_ticks[0] + 1e-9)

    def px(v: float) -> float:
        return round(left + (v - x_lo) / (x_hi - x_lo) * plot_w, 2)

    def py(rate: float) -> float:
        return round(top + (1.0 - rate) * plot_h, 2)

    label = PARAMETERS[result.parameter][1]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="14">'
        f'{escape(f"ocprobe sweep: failure rate per {label} (95% Wilson interval)")}</text>',
    ]
    for rate in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = py(rate)
        out.append(f'<line x1="{left}" y1="{y}" x2="{left + plot_w}" y2="{y}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{rate * 100:g}</text>')
    for tick in x_ticks:
        x = px(tick)
        out.append(f'<line x1="{x}" y1="{top + plot_h}" x2="{x}" y2="{top + plot_h + 5}" stroke="black"/>')
        out.append(f'<text x="{x}" y="{top + plot_h + 18}" text-anchor="middle">{tick:g}</text>')
    out.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="black"/>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 14}" text-anchor="middle">{escape(label)} (ms)</text>')
    out.append(f'<text x="16" y="{top + plot_h / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {top + plot_h / 2})">failure rate (%)</text>')
    estimate = result.boundary.estimate_ms
    if estimate is not None:
        x = px(estimate)
        out.append(f'<line x1="{x}" y1="{top}" x2="{x}" y2="{top + plot_h}" stroke="#c33" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{x + 4}" y="{top + 12}" fill="#c33">{escape(f"~{estimate:g} ms")}</text>')
    measured = [p for p in result.points if p.calls]
    if len(measured) > 1:
        path = " ".join(f"{px(p.value_ms)},{py(p.failure_rate)}" for p in measured)
        out.append(f'<polyline points="{path}" fill="none" stroke="#36c" stroke-width="1.5"/>')
    for p in measured:
        x, y_lo, y_hi = px(p.value_ms), py(p.wilson_low), py(p.wilson_high)
        out.append(f'<line x1="{x}" y1="{y_lo}" x2="{x}" y2="{y_hi}" stroke="#333"/>')
        for y in (y_lo, y_hi):
            out.append(f'<line x1="{x - 4}" y1="{y}" x2="{x + 4}" y2="{y}" stroke="#333"/>')
        colour = "#c33" if p.failed else "#393"
        tip = f"{label} {p.value_ms:g} ms: {p.failures}/{p.calls} failed, 95% CI {p.wilson_low:.0%}-{p.wilson_high:.0%}"
        out.append(f'<circle cx="{x}" cy="{py(p.failure_rate)}" r="4" fill="{colour}"><title>{escape(tip)}</title></circle>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _write_png(result: SweepResult, path: Path) -> None:  # pragma: no cover - needs matplotlib
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [p for p in result.points if p.calls]
    xs = [p.value_ms for p in measured]
    ys = [p.failure_rate * 100 for p in measured]
    errors = [[(p.failure_rate - p.wilson_low) * 100 for p in measured], [(p.wilson_high - p.failure_rate) * 100 for p in measured]]
    label = PARAMETERS[result.parameter][1]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    try:
        ax.errorbar(xs, ys, yerr=errors, fmt="o-", capsize=4)
        if result.boundary.estimate_ms is not None:
            ax.axvline(result.boundary.estimate_ms, color="#c33", linestyle="--", label=f"~{result.boundary.estimate_ms:g} ms")
            ax.legend()
        ax.set_ylim(-2, 102)
        ax.set_xlabel(f"{label} (ms)")
        ax.set_ylabel("failure rate (%)")
        ax.set_title(f"ocprobe sweep: failure rate per {label} (95% Wilson interval)")
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)

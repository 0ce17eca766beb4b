"""Sweep figures: values, Wilson intervals per point, the race window, the SVG plot, the per-point setup."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from ocprobe.engine import SequentialConfig, summarize
from ocprobe.errors import UsageError
from ocprobe.models import CallClass, CallRecord, Evidence, LogMatch, ProbeResult, TargetInfo
from ocprobe.runner import ProbeOutcome
from ocprobe.stats import wilson_interval
from ocprobe.sweep import (
    Boundary,
    SweepConfig,
    SweepPoint,
    SweepResult,
    check_plot_path,
    estimate_boundary,
    nice_ticks,
    parse_values,
    point_from_runs,
    run_sweep,
    svg_chart,
    validate_sweep,
    write_plot,
)
from ocprobe.targets import EmbeddedOptions, TargetSpec

SVG = "{http://www.w3.org/2000/svg}"


def point(value_ms: float, failures: int, calls: int = 10, parameter: str = "gap") -> SweepPoint:
    low, high = wilson_interval(failures, calls)
    return SweepPoint(parameter=parameter, value=value_ms / (1000 if parameter == "gap" else 1), value_ms=value_ms,
                      runs=1, calls=calls, failures=failures, failure_rate=failures / calls if calls else 0.0,
                      wilson_low=low, wilson_high=high, counts={}, log_counts={}, log_lines=0, strips=[],
                      real_median_ms=None, real_p95_ms=None)


def test_parse_values_sorts_and_dedupes() -> None:
    assert parse_values("0.5, 0,0.1,0.1,", "gap") == [0.0, 0.1, 0.5]
    for bad, message in (("0,x", "not a number"), ("-1", "from 0 to 3600"), ("nan", "finite"), ("1e12", "from 0 to 3600"),
                         (",", "at least one value")):
        with pytest.raises(UsageError, match=message):
            parse_values(bad, "gap")
    with pytest.raises(UsageError, match="at most 100"):
        parse_values(",".join(str(i) for i in range(101)), "gap")
    with pytest.raises(UsageError, match="--teardowns-ms: value 700000.0 must be a finite number from 0 to 600000"):
        parse_values("700000", "teardown_ms")


def _records(passed: list[bool], run: int = 1) -> list[CallRecord]:
    return [CallRecord(index=i, session_key="k", run_id=f"r{i}", nonce=f"n{i}", started_at=float(i), ended_at=i + 0.5,
                       latency_ms=100.0 + i, cls=CallClass.REAL if ok else CallClass.FAST_FAIL, evidence=Evidence.WITNESS,
                       llm_reached=ok, reply="", state="final", run=run)
            for i, ok in enumerate(passed, 1)]


def _run(passed: list[bool], log_lines: int = 0) -> ProbeResult:
    records = _records(passed)
    matches = [LogMatch(pattern=p, line=f"drain failed {n}", source="stderr", at=float(n))
               for n in range(log_lines) for p in ("a", "b")]  # every line matches both patterns
    return ProbeResult(target=TargetInfo("embedded"), records=records, log_matches=matches,
                       summary=summarize(records, {"a": log_lines, "b": log_lines}, None, interrupted=False))


def test_point_from_runs_pools_calls_with_a_wilson_interval() -> None:
    runs = [_run([True, False, True, False], log_lines=2), _run([True, True, True, True])]
    p = point_from_runs("gap", 0.05, runs, {"a": 2, "b": 2})
    assert (p.value_ms, p.runs, p.calls, p.failures, p.failure_rate) == (50.0, 2, 8, 2, 0.25)
    low, high = wilson_interval(2, 8)
    assert (p.wilson_low, p.wilson_high) == (round(low, 6), round(high, 6))
    assert p.counts["fast_fail"] == 2 and p.counts["real"] == 6
    assert p.log_lines == 2 and p.log_counts == {"a": 2, "b": 2}
    assert p.strips == ["✔✗✔✗", "✔✔✔✔"] and p.failed
    assert p.to_json()["record"] == "point"


@pytest.mark.parametrize(
    ("points", "failing", "clean", "estimate"),
    [
        ([point(0, 5), point(50, 3), point(100, 0), point(200, 0)], 50, 100, 75),
        ([point(0, 5), point(300, 0)], 0, 300, 150),
        ([point(0, 0), point(100, 0)], None, None, None),  # no failure anywhere
        ([point(0, 5), point(100, 2)], 100, None, None),  # fails at every gap: the window is wider
        ([point(0, 5), point(50, 0), point(100, 1), point(200, 0)], 100, 200, 150),  # a stray failure counts
        ([point(0, 5), point(50, 0, calls=0)], 0, None, None),  # a point without calls is no evidence
    ],
)
def test_race_window_along_gaps(points: list[SweepPoint], failing: float | None, clean: float | None,
                                estimate: float | None) -> None:
    boundary = estimate_boundary("gap", points)
    assert (boundary.failing_ms, boundary.clean_ms, boundary.estimate_ms) == (failing, clean, estimate)
    assert set(boundary.to_json()) == {"largest_failing_ms", "smallest_clean_above_ms", "estimate_ms"}


def test_threshold_along_teardowns() -> None:
    points = [point(0, 0, parameter="teardown_ms"), point(25, 0, parameter="teardown_ms"),
              point(100, 4, parameter="teardown_ms"), point(200, 5, parameter="teardown_ms")]
    boundary = estimate_boundary("teardown_ms", points)
    assert (boundary.failing_ms, boundary.clean_ms, boundary.estimate_ms) == (100, 25, 62.5)
    assert boundary.to_json() == {"smallest_failing_ms": 100, "largest_clean_below_ms": 25, "estimate_ms": 62.5}
    assert "threshold" in boundary.describe()


def test_describe_and_exit_code() -> None:
    assert "no failure" in Boundary("gap", None, None).describe()
    assert "about 75 ms" in Boundary("gap", 50, 100).describe()
    assert "wider" in Boundary("gap", 100, None).describe()
    failing = SweepResult("gap", [point(0, 3), point(300, 0)], Boundary("gap", 0, 300), None)
    clean = SweepResult("gap", [point(300, 0)], Boundary("gap", None, None), None)
    assert failing.exit_code == 1 and clean.exit_code == 0
    summary = failing.to_json()
    assert summary["record"] == "summary" and summary["window"]["estimate_ms"] == 150 and summary["failing_points"] == [0.0]


def test_nice_ticks() -> None:
    assert nice_ticks(0, 1000) == [0, 200, 400, 600, 800, 1000]
    assert nice_ticks(0, 300) == [0, 100, 200, 300]
    assert nice_ticks(50, 50)[0] <= 50 <= nice_ticks(50, 50)[-1]
    ticks = nice_ticks(0, 0.3)
    assert ticks[0] == 0 and ticks[-1] >= 0.3 and len(ticks) <= 8


@pytest.mark.parametrize("parameter", ["gap", "teardown_ms", "latency_ms"])
def test_svg_is_valid_with_a_point_and_error_bar_per_value(parameter: str) -> None:
    points = [point(v, f, parameter=parameter) for v, f in ((0, 5), (50, 3), (100, 0), (1000, 0))]
    result = SweepResult(parameter, points, estimate_boundary(parameter, points), TargetInfo("embedded"))
    root = ET.fromstring(svg_chart(result))
    assert root.tag == f"{SVG}svg"
    circles = root.findall(f"{SVG}circle")
    assert len(circles) == 4
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert any("(ms)" in t for t in texts) and "failure rate (%)" in texts
    width, height = float(root.get("width", 0)), float(root.get("height", 0))
    for circle in circles:
        assert 0 <= float(circle.get("cx", -1)) <= width and 0 <= float(circle.get("cy", -1)) <= height
    # Higher failure rate, higher on the page (smaller y); the clean points sit on the zero line.
    ys = [float(c.get("cy", 0)) for c in circles]
    assert ys[0] < ys[1] < ys[2] == ys[3]
    assert len(root.findall(f"{SVG}polyline")) == 1
    assert len(root.findall(f"{SVG}line")) >= 4 * 3  # error bar and two caps per point


def test_svg_of_one_point_written_into_a_new_directory(tmp_path: Path) -> None:
    result = SweepResult("gap", [point(0, 10)], Boundary("gap", 0, None), None)
    path = tmp_path / "sub" / "plot.svg"
    write_plot(result, path)
    root = ET.parse(path).getroot()
    assert len(root.findall(f"{SVG}circle")) == 1 and not root.findall(f"{SVG}polyline")


def test_plot_path_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check_plot_path(tmp_path / "a.svg")
    with pytest.raises(UsageError, match=r"\.svg or \.png"):
        check_plot_path(tmp_path / "a.pdf")
    (tmp_path / "d.svg").mkdir()
    with pytest.raises(UsageError, match="directory"):
        check_plot_path(tmp_path / "d.svg")
    import ocprobe.sweep as sweep_module

    monkeypatch.setattr(sweep_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match=r"matplotlib.*--plot .*a\.svg"):
        check_plot_path(tmp_path / "a.png")


def test_validation_before_anything_runs() -> None:
    spec = TargetSpec()
    with pytest.raises(UsageError, match="--gap must be between"):
        validate_sweep(spec, SweepConfig("gap", [0.0, 4000.0]))
    with pytest.raises(UsageError, match="--teardown-ms must be between"):
        validate_sweep(spec, SweepConfig("teardown_ms", [0.0, 700_000.0]))
    with pytest.raises(UsageError, match="needs --target embedded"):
        validate_sweep(TargetSpec(target="ws://127.0.0.1:1"), SweepConfig("latency_ms", [10.0]))
    with pytest.raises(UsageError, match="--repeat"):
        validate_sweep(spec, SweepConfig("gap", [0.0], repeat=0))


class _Observer:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def point_started(self, parameter: str, value: float, number: int, total: int) -> None:
        self.events.append(("start", value, number, total))

    def point_finished(self, p: SweepPoint) -> None:
        self.events.append(("point", p.value, p.failures))

    def sweep_finished(self, result: SweepResult) -> None:
        self.events.append(("done", result.interrupted))


@pytest.mark.parametrize(("parameter", "values"), [("gap", [0.0, 0.2]), ("teardown_ms", [10.0, 90.0]), ("latency_ms", [5.0, 7.0])])
def test_each_point_gets_its_value_its_own_sessions_and_the_repeats(
    monkeypatch: pytest.MonkeyPatch, parameter: str, values: list[float]
) -> None:
    seen: list[tuple[TargetSpec, SequentialConfig, int]] = []

    async def fake_run_probe(spec: TargetSpec, cfg: SequentialConfig, **kwargs: Any) -> ProbeOutcome:
        seen.append((spec, cfg, kwargs["repeat"]))
        passed = [True, False] if (cfg.gap == 0.0 if parameter == "gap" else spec.embedded.teardown_ms > 50) else [True, True]
        run = _run(passed)
        return ProbeOutcome(target=run.target, runs=[run], pooled=run.summary, gates=[], gate_status=None, exit_code=0)

    monkeypatch.setattr("ocprobe.sweep.run_probe", fake_run_probe)
    observer = _Observer()
    spec = TargetSpec(embedded=EmbeddedOptions(teardown_ms=50.0, latency_ms=250.0))
    cfg = SweepConfig(parameter, values, probe=SequentialConfig(calls=2, session_key="k", gap=0.1), repeat=4)
    result = asyncio.run(run_sweep(spec, cfg, log_paths=[], patterns=[], run_dir=None, observer=observer))
    assert [s.target for s, _, _ in seen] == ["embedded", "embedded"] and all(r == 4 for _, _, r in seen)
    assert [c.session_key for _, c, _ in seen] == ["k-p1", "k-p2"]
    assert len({c.probe_id for _, c, _ in seen}) == 2
    swept = {"gap": [c.gap for _, c, _ in seen], "teardown_ms": [s.embedded.teardown_ms for s, _, _ in seen],
             "latency_ms": [s.embedded.latency_ms for s, _, _ in seen]}
    assert swept[parameter] == values
    assert spec.embedded.teardown_ms == 50.0 and cfg.probe.gap == 0.1  # the template is untouched
    assert [e[0] for e in observer.events] == ["start", "point", "start", "point", "done"]
    assert [p.value for p in result.points] == values

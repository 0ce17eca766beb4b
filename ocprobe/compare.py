"""Compare probe results of two or more gateways (or versions) with statistics, not eyeballs.

Failures (calls that were not ``real``) decide the verdict with Fisher's exact test; real round
trips are compared with a Mann-Whitney U test and reported beside it. The first sample is the
baseline: a pair is DIFFERENT (regressed or improved), SAME, or UNKNOWN when the calls are too few
to tell, with the number of calls per side that would decide if the observed rates held.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ocprobe.classify import percentile
from ocprobe.errors import UsageError
from ocprobe.models import RESULTS_SCHEMA_VERSION, CallClass
from ocprobe.runner import ProbeOutcome
from ocprobe.stats import MannWhitney, fisher_exact_two_sided, mann_whitney_u, wilson_interval

ALPHA = 0.05
# A sample must be able to tell a gateway that fails every other call (the #77485 shape) from one that
# never fails before a non-significant difference may be called SAME.
DETECTABLE_FAIL_RATE = 0.5
# Beyond this many times the calls made, a difference at the observed rates is too small to matter.
SAME_FACTOR = 4
MAX_CALLS_SEARCH = 100_000


@dataclass
class Sample:
    label: str
    classes: list[str]
    real_latencies_ms: list[float]
    log_counts: dict[str, int] = field(default_factory=dict)
    gateway_version: str | None = None

    @property
    def calls(self) -> int:
        return len(self.classes)

    @property
    def failures(self) -> int:
        return sum(1 for c in self.classes if c != CallClass.REAL.value)

    @property
    def fail_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0

    def counts(self) -> dict[str, int]:
        return {c.value: self.classes.count(c.value) for c in CallClass}

    def fail_interval(self) -> tuple[float, float]:
        return wilson_interval(self.failures, self.calls)

    def real_median_ms(self) -> float | None:
        return statistics.median(self.real_latencies_ms) if self.real_latencies_ms else None

    def real_p95_ms(self) -> float | None:
        return percentile(self.real_latencies_ms, 95) if self.real_latencies_ms else None


@dataclass
class PairComparison:
    baseline: Sample
    candidate: Sample
    fisher_p: float
    latency: MannWhitney | None
    verdict: str  # SAME | DIFFERENT | UNKNOWN
    direction: str | None  # regressed | improved (DIFFERENT only)
    calls_to_decide: int | None  # per side (UNKNOWN only); None when no number of calls would
    reason: str


def sample_from_outcome(label: str, outcome: ProbeOutcome) -> Sample:
    records = [r for run in outcome.runs for r in run.records]
    return Sample(
        label=label,
        classes=[r.cls.value for r in records],
        real_latencies_ms=[r.latency_ms for r in records if r.cls is CallClass.REAL],
        log_counts=dict(outcome.pooled.log_counts),
        gateway_version=outcome.target.gateway_version,
    )


# Bounds of a results file read by compare: a record line of a --json file is a few hundred bytes (a call
# keeps at most 4 KiB of reply); a file is read line by line, keeping two fields per call.
MAX_RECORD_LINE = 4 * 2**20
MAX_CALLS = 10_000_000


def load_sample(path: Path) -> Sample:
    """A sample from a ``--json`` results file (or a report bundle's ``calls.jsonl``), read as a stream: a
    file of any size is checked line by line, in memory of the order of its calls (a class and a latency
    each). A file of another schema version, cut short or not ocprobe's is refused with the line that shows it."""
    classes: list[str] = []
    real_ms: list[float] = []
    summary: dict | None = None
    started = False
    try:
        with path.open("rb") as f:
            for number, raw in enumerate(iter(lambda: f.readline(MAX_RECORD_LINE + 1), b""), 1):
                if len(raw) > MAX_RECORD_LINE:
                    raise UsageError(f"{path}:{number}: a line over {MAX_RECORD_LINE // 2**20} MiB: not an ocprobe results file")
                kind, record = _record(path, number, raw, f if number == 1 else None)
                if kind is None:
                    continue
                started = started or kind == "start"
                if kind == "call":
                    if len(classes) >= MAX_CALLS:
                        raise UsageError(f"{path}: more than {MAX_CALLS} calls")
                    classes.append(sys.intern(record["class"]))
                    if record["class"] == CallClass.REAL.value:
                        real_ms.append(float(record["latency_ms"]))
                elif kind == "summary":
                    summary = record
    except OSError as exc:
        raise UsageError(f"cannot read results file {path}: {exc.strerror or exc}") from None
    if not classes:
        raise UsageError(f"{path}: no call records: not an ocprobe results file")
    if started and summary is None:  # a --json file always ends with its summary, even when cut short
        raise UsageError(f"{path}: truncated: {len(classes)} call record(s) but no summary record")
    # What the summary adds is optional: a field of the wrong type is left out, not trusted.
    target = (summary or {}).get("target")
    version = target.get("gateway_version") if isinstance(target, dict) else None
    log_counts = (summary or {}).get("log_counts")
    return Sample(
        label=path.name,
        classes=classes,
        real_latencies_ms=real_ms,
        log_counts={str(k): v for k, v in log_counts.items() if isinstance(v, int) and not isinstance(v, bool)}
        if isinstance(log_counts, dict) else {},
        gateway_version=version if isinstance(version, str) else None,
    )


def _record(path: Path, number: int, raw: bytes, whole: BinaryIO | None) -> tuple[str | None, dict]:
    """The kind and content of one line; (None, {}) for a blank one. ``whole``: the file, for the first
    line, to tell a report's summary.json (one JSON document over many lines) from a results file."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"cannot read results file {path}: line {number} is not UTF-8 text") from None
    if not line.strip():
        return None, {}
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        if whole is not None and _is_report_summary(raw, whole):
            raise UsageError(f"{path} is a report's summary.json: compare reads the --json results file "
                             "or the report's calls.jsonl") from None
        raise UsageError(f"{path}:{number}: not JSON: is this an ocprobe results file (or is it truncated)?") from None
    kind = record.get("record") if isinstance(record, dict) else None
    version = record.get("schema_version", RESULTS_SCHEMA_VERSION) if isinstance(record, dict) else RESULTS_SCHEMA_VERSION
    if version != RESULTS_SCHEMA_VERSION:
        raise UsageError(f"{path}:{number}: written with results schema version {version!r}; this ocprobe "
                         f"reads version {RESULTS_SCHEMA_VERSION}")
    if kind == "call":
        latency = record.get("latency_ms")
        # NaN or Infinity (Python's json reads them) would poison the statistics and then be written as
        # invalid JSON; a bool is an int to Python but no latency.
        cls = record.get("class")
        if not isinstance(cls, str) or cls not in CLASS_NAMES or isinstance(latency, bool) \
                or not isinstance(latency, (int, float)) or not math.isfinite(latency) or latency < 0:
            raise UsageError(f"{path}:{number}: a call record without a valid class and latency_ms "
                             f"(a finite number of milliseconds)")
    elif not isinstance(kind, str) or kind not in ("start", "run", "settle", "summary"):
        raise UsageError(f"{path}:{number}: not an ocprobe record (no known 'record' field)")
    return kind, record


MAX_SUMMARY_BYTES = 16 * 2**20
CLASS_NAMES = frozenset(c.value for c in CallClass)


def _is_report_summary(first: bytes, rest: BinaryIO) -> bool:
    try:
        document = json.loads(first + rest.read(MAX_SUMMARY_BYTES))
    except (ValueError, RecursionError):
        return False
    return isinstance(document, dict) and "schema_version" in document and "pooled" in document


def _significant(fail_a: int, n_a: int, fail_b: int, n_b: int) -> bool:
    return fisher_exact_two_sided(fail_a, n_a - fail_a, fail_b, n_b - fail_b) < ALPHA


def calls_to_decide(rate_a: float, rate_b: float, limit: int = MAX_CALLS_SEARCH) -> int | None:
    """The fewest calls per side at which these failure rates would differ significantly."""
    if rate_a == rate_b:
        return None
    n = 2
    while n <= limit:
        if _significant(round(rate_a * n), n, round(rate_b * n), n):
            # Rounding can make a smaller n pass by luck; step back while it still decides.
            while n > 2 and _significant(round(rate_a * (n - 1)), n - 1, round(rate_b * (n - 1)), n - 1):
                n -= 1
            return n
        n = n * 2 if n < 64 else n + max(1, n // 8)
    return None


def compare_pair(baseline: Sample, candidate: Sample) -> PairComparison:
    a, b = baseline, candidate
    p = fisher_exact_two_sided(a.failures, a.calls - a.failures, b.failures, b.calls - b.failures)
    latency = mann_whitney_u(b.real_latencies_ms, a.real_latencies_ms) if a.real_latencies_ms and b.real_latencies_ms else None
    n = min(a.calls, b.calls)
    if p < ALPHA:
        direction = "regressed" if b.fail_rate > a.fail_rate else "improved"
        return PairComparison(a, b, p, latency, "DIFFERENT", direction, None,
                              f"failures {a.failures}/{a.calls} vs {b.failures}/{b.calls}, Fisher p = {p:.2g}")
    needed = calls_to_decide(a.fail_rate, b.fail_rate)
    if needed is not None and needed <= SAME_FACTOR * n:
        return PairComparison(a, b, p, latency, "UNKNOWN", None, needed,
                              f"p = {p:.2g} with {n} calls; {needed} calls each would decide if these rates hold")
    # No difference worth the name at these rates; but could these samples have seen one?
    floor = calls_to_decide(0.0, DETECTABLE_FAIL_RATE)
    if floor is not None and n < floor:
        return PairComparison(a, b, p, latency, "UNKNOWN", None, floor,
                              f"only {n} calls: {floor} calls each are needed to tell 0% from {DETECTABLE_FAIL_RATE:.0%} failures")
    return PairComparison(a, b, p, latency, "SAME", None, None,
                          f"failures {a.failures}/{a.calls} vs {b.failures}/{b.calls}, Fisher p = {p:.2g}")


def compare_all(samples: Sequence[Sample]) -> list[PairComparison]:
    """Each sample against the first (the baseline)."""
    if len(samples) < 2:
        raise UsageError("compare needs at least two results files or targets")
    return [compare_pair(samples[0], s) for s in samples[1:]]


def exit_code(comparisons: Sequence[PairComparison]) -> int:
    """1 when a candidate regressed, else 3 when a pair is undecided, else 0."""
    if any(c.direction == "regressed" for c in comparisons):
        return 1
    return 3 if any(c.verdict == "UNKNOWN" for c in comparisons) else 0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def sample_rows(samples: Sequence[Sample]) -> list[tuple[str, list[str]]]:
    """Row name and one cell per sample: the side-by-side table, shared by the terminal and Markdown."""
    patterns = sorted({p for s in samples for p in s.log_counts})
    rows: list[tuple[str, list[str]]] = [
        ("gateway", [s.gateway_version or "?" for s in samples]),
        ("calls", [str(s.calls) for s in samples]),
    ]
    for cls in CallClass:
        rows.append((cls.value, [str(s.counts()[cls.value]) for s in samples]))
    rows.append(("fail rate [95% CI]", [
        f"{s.fail_rate:.0%} [{s.fail_interval()[0]:.0%}, {s.fail_interval()[1]:.0%}]" for s in samples
    ]))
    rows.append(("real median ms", [_ms(s.real_median_ms()) for s in samples]))
    rows.append(("real p95 ms", [_ms(s.real_p95_ms()) for s in samples]))
    for pattern in patterns:
        rows.append((f"log {pattern}", [str(s.log_counts.get(pattern, 0)) for s in samples]))
    return rows


def pair_line(c: PairComparison) -> str:
    verdict = f"{c.verdict} ({c.direction})" if c.direction else c.verdict
    line = f"{c.baseline.label} -> {c.candidate.label}: {verdict}: {c.reason}"
    if c.latency is not None:
        line += (f"; real latency Mann-Whitney p = {c.latency.p_two_sided:.2g}, "
                 f"P(candidate slower) = {c.latency.effect_size:.2f}")
    return line


def compare_markdown(samples: Sequence[Sample], comparisons: Sequence[PairComparison]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["# ocprobe compare", "", "| | " + " | ".join(cell(s.label) for s in samples) + " |",
             "|---|" + "---|" * len(samples)]
    lines += [f"| {cell(name)} | " + " | ".join(cell(v) for v in values) + " |" for name, values in sample_rows(samples)]
    lines += ["", "## Verdicts", ""]
    lines += [f"- {cell(pair_line(c))}" for c in comparisons]
    lines += ["", f"Fisher's exact test on failures (alpha {ALPHA}); Mann-Whitney U on real round trips. "
              f"The first column is the baseline."]
    return "\n".join(lines) + "\n"


def comparison_json(samples: Sequence[Sample], comparisons: Sequence[PairComparison]) -> dict:
    return {
        "record": "compare",
        "samples": [
            {"label": s.label, "gateway_version": s.gateway_version, "calls": s.calls, "counts": s.counts(),
             "fail_rate": s.fail_rate, "fail_rate_95": list(s.fail_interval()), "real_median_ms": s.real_median_ms(),
             "real_p95_ms": s.real_p95_ms(), "log_counts": s.log_counts}
            for s in samples
        ],
        "pairs": [
            {"baseline": c.baseline.label, "candidate": c.candidate.label, "verdict": c.verdict,
             "direction": c.direction, "fisher_p": c.fisher_p, "calls_to_decide": c.calls_to_decide,
             "latency_p": c.latency.p_two_sided if c.latency else None,
             "latency_effect_size": c.latency.effect_size if c.latency else None, "reason": c.reason}
            for c in comparisons
        ],
        "exit_code": exit_code(comparisons),
    }

"""The ``--report DIR`` bundle: per-call JSON lines, ``summary.json``, ``junit.xml`` and ``report.md``.

The four files describe one probe command (every ``--repeat`` run, pooled, with its gates). Secrets are
removed from the inputs before any of them is rendered, because escaping (XML entities, Markdown
backslashes) would otherwise hide a token from a redaction of the finished text.
"""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path
from typing import Any, NamedTuple

from rich.text import Text

from ocprobe import __version__
from ocprobe.engine import pooled_summary
from ocprobe.gates import GateResult, overall_status
from ocprobe.models import CallRecord, ProbeResult, ProbeSummary
from ocprobe.output.sink import Redactor, gate_json, render_table, target_json, verdict_line
from ocprobe.runner import EXIT_INTERRUPTED, ProbeOutcome, exit_code

__all__ = [
    "SCHEMA_VERSION",
    "ReportInput",
    "load_schema",
    "pooled_summary",
    "summary_document",
    "write_report_bundle",
]

SCHEMA_VERSION = 1
SCHEMA_RESOURCE = "summary.schema.json"
MAX_LOG_LINES = 200  # report.md stays readable; every match is still in calls.jsonl
REPLY_EXCERPT = 200  # characters of a failed call's reply in junit.xml


@dataclass
class ReportInput:
    runs: list[ProbeResult]  # one per repeat, in order (at least one)
    gates: list[GateResult]  # evaluated on the pooled summary
    command: list[str]  # argv that reproduces the probe, already redacted by the caller
    environment: dict[str, str]  # ocprobe, python, os, gateway_version, node_version, ...


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) that ``summary.json`` follows."""
    return json.loads(files("ocprobe.schemas").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _outcome(report: ReportInput) -> ProbeOutcome:
    if not report.runs:
        raise ValueError("a report needs at least one run")
    pooled = pooled_summary(report.runs)
    gate_status = overall_status(report.gates) if report.gates else None
    code = EXIT_INTERRUPTED if pooled.interrupted else exit_code(pooled, gate_status)
    return ProbeOutcome(target=report.runs[0].target, runs=report.runs, pooled=pooled, gates=report.gates,
                        gate_status=gate_status, exit_code=code)


def _summary_json(summary: ProbeSummary) -> dict[str, Any]:
    data = summary.to_json()
    del data["record"]  # the --json stream's record type; the schema places summaries by key
    return data


def summary_document(report: ReportInput) -> dict[str, Any]:
    outcome = _outcome(report)
    return {
        "schema_version": SCHEMA_VERSION,
        "ocprobe": __version__,
        "created_at": _iso(datetime.now(timezone.utc).timestamp()),
        "target": target_json(outcome.target),
        "environment": dict(report.environment),
        "command": list(report.command),
        "pooled": _summary_json(outcome.pooled),
        "runs": [
            {
                "run": n,
                "target": target_json(result.target),
                "summary": _summary_json(result.summary),
                "unattributed_finals": [asdict(event) for event in result.unattributed_finals],
            }
            for n, result in enumerate(report.runs, 1)
        ],
        "gates": [gate_json(result) for result in report.gates],
        "gate_status": outcome.gate_status,
        "exit_code_hint": outcome.exit_code,
    }


def write_report_bundle(directory: Path, report: ReportInput, redact: Redactor) -> dict[str, Path]:
    """Write the bundle into ``directory`` (created if needed); returns file name -> path."""
    report = redact(report)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / name for name in ("calls.jsonl", "summary.json", "junit.xml", "report.md")}
    paths["calls.jsonl"].write_text(
        "".join(json.dumps(_call_json(n, record), ensure_ascii=False) + "\n"
                for n, result in enumerate(report.runs, 1) for record in result.records),
        encoding="utf-8",
    )
    paths["summary.json"].write_text(json.dumps(summary_document(report), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tree = ET.ElementTree(junit_xml(report))
    ET.indent(tree)
    tree.write(paths["junit.xml"], encoding="utf-8", xml_declaration=True)
    paths["report.md"].write_text(report_markdown(report), encoding="utf-8")
    return paths


def _call_json(run: int, record: CallRecord) -> dict[str, Any]:
    data = record.to_json()
    data["run"] = run  # the run's position in the report, as junit.xml and report.md number it
    return data


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _describe_fate(record: CallRecord) -> str:
    if record.fate is None:
        return "none"
    if record.late is None:
        return record.fate.value
    return f"{record.fate.value} +{record.late.at - record.ended_at:.1f}s via {record.late.via}"


# Gateway logs carry ANSI escapes: XML 1.0 forbids them (a parser would reject the whole file), and in
# report.md they would drive the terminal of whoever cats it.
_UNPRINTABLE = re.compile("[^\t\n\r\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _printable(text: str) -> str:
    return _UNPRINTABLE.sub("\ufffd", text)


# -- junit.xml ------------------------------------------------------------------------------------


def _element(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {k: _printable(v) for k, v in attrs.items()})
    if text is not None:
        element.text = _printable(text)
    return element


class _Case(NamedTuple):
    name: str
    classname: str
    seconds: float
    outcome: str | None = None  # None (passed), "failure" or "skipped"
    message: str = ""
    kind: str = ""  # a failure's type attribute
    details: str = ""


def _suite(root: ET.Element, name: str, cases: Sequence[_Case]) -> None:
    suite = _element(
        root, "testsuite", name=name, tests=str(len(cases)),
        failures=str(sum(1 for case in cases if case.outcome == "failure")), errors="0",
        skipped=str(sum(1 for case in cases if case.outcome == "skipped")),
        time=f"{sum(case.seconds for case in cases):.3f}",
    )
    for case in cases:
        element = _element(suite, "testcase", name=case.name, classname=case.classname, time=f"{case.seconds:.3f}")
        if case.outcome is not None:
            _element(element, case.outcome, case.details, message=case.message, **({"type": case.kind} if case.kind else {}))


def _actual(result: GateResult) -> str:
    return "no value" if result.actual is None else f"{result.actual:g}"


def _gate_case(result: GateResult) -> _Case:
    gate = result.gate
    case = _Case(gate.text, "ocprobe.gates", 0.0)
    if result.status == "pass":
        return case
    message = f"{result.status}: actual {_actual(result)}, expected {gate.metric} {gate.op} {gate.value:g}"
    if result.status == "fail":
        return case._replace(outcome="failure", message=message, kind="gate", details=message)
    return case._replace(outcome="skipped", message=message)


def _call_case(record: CallRecord, classname: str) -> _Case:
    case = _Case(f"call {record.index}", classname, record.latency_ms / 1000)
    if record.passed:
        return case
    fate = _describe_fate(record)
    reply = record.reply if len(record.reply) <= REPLY_EXCERPT else record.reply[: REPLY_EXCERPT - 1] + "…"
    details = [
        f"class: {record.cls.value}",
        f"evidence: {record.evidence.value}",
        f"llm reached: {'unknown' if record.llm_reached is None else 'yes' if record.llm_reached else 'no'}",
        f"state: {record.state}",
        f"fate: {fate}",
        f"reply: {reply!r}",
        *([f"error: {record.error}"] if record.error else []),
        *(f"log: {_iso(m.at)} [{m.source}] {m.line}" for m in record.log_matches),
    ]
    return case._replace(
        outcome="failure",
        message=f"{record.cls.value} after {record.latency_ms:.0f} ms (evidence {record.evidence.value}, fate {fate})",
        kind=record.cls.value,
        details="\n".join(details),
    )


def junit_xml(report: ReportInput) -> ET.Element:
    """One suite for the gates (when there are any) and one per run, a test case per call."""
    root = ET.Element("testsuites", name="ocprobe")
    if report.gates:
        _suite(root, "ocprobe gates", [_gate_case(result) for result in report.gates])
    for n, result in enumerate(report.runs, 1):
        # Readers split a classname at its dots into package and class: keep the target in one piece.
        classname = "ocprobe." + re.sub(r"[^A-Za-z0-9_-]+", "_", result.target.target).strip("_")
        _suite(root, f"ocprobe calls run {n}", [_call_case(record, classname) for record in result.records])
    for total in ("tests", "failures", "errors", "skipped"):
        root.set(total, str(sum(int(suite.get(total, "0")) for suite in root)))
    root.set("time", f"{sum(float(suite.get('time', '0')) for suite in root):.3f}")
    return root


# -- report.md ------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")


def _md(text: str) -> str:
    """Literal text for a Markdown table cell: one line, inline syntax (and ``|``) escaped."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md(cell) for cell in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _fenced(lines: Sequence[str], info: str = "") -> list[str]:
    """A code block whose fence is longer than any backtick run inside, so the content cannot end it."""
    longest = max((len(run) for line in lines for run in re.findall("`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + info, *lines, fence, ""]


def _calls_table(result: ProbeResult) -> list[str]:
    """The terminal's call table (``render_table``) as Markdown, so both show the same cells."""
    table = render_table(result)
    columns = [[cell.plain if isinstance(cell, Text) else str(cell) for cell in column.cells] for column in table.columns]
    return _md_table([str(column.header) for column in table.columns], list(zip(*columns)))


def report_markdown(report: ReportInput) -> str:
    outcome = _outcome(report)
    pooled, many = outcome.pooled, len(report.runs) > 1
    lines = [f"# ocprobe: {verdict_line(outcome)}", ""]

    lines += ["## Environment", ""]
    target = {k: "yes" if v is True else "no" if v is False else str(v)
              for k, v in target_json(outcome.target).items() if v is not None}
    lines += _md_table(["name", "value"], list(({"ocprobe": __version__} | target | report.environment).items()))

    lines += ["## Reproduce", "", *_fenced([shlex.join(report.command)], "sh")]

    lines += ["## Results", "", f"{pooled.calls} calls" + (f" pooled over {len(report.runs)} runs" if many else "") + ".", ""]
    lines += _md_table(
        ["class", "calls", "median ms", "p95 ms"],
        [[name, str(count), f"{pooled.latency[name].median_ms:.0f}", f"{pooled.latency[name].p95_ms:.0f}"]
         for name, count in pooled.counts.items() if count],
    )
    fates = ", ".join(f"{name} {n}" for name, n in pooled.fates.items() if n)
    if fates:
        lines += [f"Fates: {_md(fates)}", ""]
    if pooled.log_counts:
        lines += _md_table(["log pattern", "matches"], [[pattern, str(n)] for pattern, n in pooled.log_counts.items()])
    if pooled.interrupted:
        lines += ["**Interrupted**: the figures cover the calls finished so far.", ""]
    for n, result in enumerate(report.runs, 1):
        lines.append(f"{f'- run {n}:' if many else 'Sequence:'} `{result.summary.strip}` ({result.summary.pattern})")
    lines.append("")

    lines += ["## Calls", ""]
    for n, result in enumerate(report.runs, 1):
        lines += ([f"### Run {n}", ""] if many else []) + _calls_table(result)

    lines += ["## Log lines", ""]
    # A line matched by several patterns is one line of the log.
    seen = {(n, m.source, m.at, m.line): m.call for n, r in enumerate(report.runs, 1) for m in r.log_matches}
    log = []
    for (n, source, at, line), call in seen.items():
        owner = "before call 1" if call is None else f"call {call}"
        log.append(f"{_iso(at)}  {f'run {n} ' if many else ''}{owner}  [{source}]  {line}")
    if log:
        more = [f"... {len(log) - MAX_LOG_LINES} more"] if len(log) > MAX_LOG_LINES else []
        lines += _fenced(log[:MAX_LOG_LINES] + more)
    else:
        lines += ["No log line matched.", ""]

    lines += ["## Gates", ""]
    if report.gates:
        lines += _md_table(
            ["gate", "actual", "status"],
            [[r.gate.text, _actual(r), r.status] for r in report.gates],
        )
    else:
        lines += ["No gates.", ""]
    return _printable("\n".join(lines))

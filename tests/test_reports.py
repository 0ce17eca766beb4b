"""The --report bundle: schema-valid summary.json, parseable junit.xml, renderable report.md, no secrets."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import pytest
from junitparser import Failure, JUnitXml, Skipped
from markdown_it import MarkdownIt

from ocprobe.engine import attach_log_matches, summarize
from ocprobe.gates import parse_gate, probe_metrics
from ocprobe.models import CallClass, CallRecord, Evidence, Fate, LateReply, LogMatch, ProbeResult, TargetInfo
from ocprobe.output.sink import Redactor
from ocprobe.reports import (
    SCHEMA_VERSION,
    ReportInput,
    load_schema,
    pooled_summary,
    summary_document,
    write_report_bundle,
)

# Characters that XML and Markdown escape, so a redaction of the finished files alone would miss it.
TOKEN = "sk_live&<TOKEN>_0123456789"
T0 = 1_780_000_000.0
PATTERN = "ReplyRunAlreadyActiveError"


def make_run(run: int, *, floor: float | None = 150.0, interrupted: bool = False, extra_log_lines: int = 0) -> ProbeResult:
    """Four calls, real and fast_fail alternating; call 2 leaks the token in its reply and a log line."""
    start = T0 + 100 * run
    records = []
    for index in range(1, 5):
        real = index % 2 == 1
        at = start + index
        records.append(
            CallRecord(
                index=index, session_key="agent:test:main", run_id=f"ocprobe-x-{index}", nonce=f"ok-{index}-x",
                started_at=at, ended_at=at + 0.3, latency_ms=(250.0 if real else 20.0) + run + index,
                cls=CallClass.REAL if real else CallClass.FAST_FAIL, evidence=Evidence.WITNESS, llm_reached=real,
                reply=f"ok-{index}-x" if real else ("a|b " + TOKEN if index == 2 else ""), state="final",
                fate=None if real else Fate.RAN_LATE, late=None if real else LateReply(at=at + 1.5, via="witness"),
                run=run,
            )
        )
    line = f"followup queue drain failed: {PATTERN} (auth {TOKEN})\x1b[0m"
    matches = [LogMatch(pattern=PATTERN, line=line, source="stderr", at=start + 2.5)]
    matches += [LogMatch(pattern=PATTERN, line=f"{PATTERN} #{i}", source="gw.log", at=start + 4.1 + i / 1000) for i in range(extra_log_lines)]
    attach_log_matches(records, matches)
    summary = summarize(records, {PATTERN: len(matches)}, floor, interrupted=interrupted)
    target = TargetInfo(target="ws://127.0.0.1:18789", gateway_version="2026.5.3", node_version="v22.1.0", witness=True)
    return ProbeResult(target=target, records=records, summary=summary, log_matches=matches)


def make_report(runs: list[ProbeResult]) -> ReportInput:
    pooled = pooled_summary(runs)
    gates = [parse_gate(text).evaluate(probe_metrics(pooled))
             for text in ("calls >= 1", "real.rate >= 0.95", "wrong.median_ms < 100")]  # pass, fail, inconclusive
    return ReportInput(
        runs=runs, gates=gates, command=["ocprobe", "sequential", "-n", "4", "--target", "ws://127.0.0.1:18789"],
        environment={"ocprobe": "0.1.0", "python": "3.11.9", "os": "Linux 6.8", "node_version": "v22.1.0",
                     "gateway_version": "2026.5.3", "gateway_token": TOKEN},
    )


@pytest.fixture
def bundle(tmp_path: Path) -> dict[str, Path]:
    return write_report_bundle(tmp_path / "report", make_report([make_run(1), make_run(2)]), Redactor([TOKEN]))


def test_bundle_holds_four_files_and_no_token(bundle: dict[str, Path]) -> None:
    assert sorted(bundle) == ["calls.jsonl", "junit.xml", "report.md", "summary.json"]
    for path in bundle.values():
        text = path.read_text(encoding="utf-8")
        assert TOKEN not in text, path.name
        assert "sk_live" not in text and "0123456789" not in text, path.name  # not even escaped pieces of it
    assert "***" in bundle["report.md"].read_text(encoding="utf-8")


def test_calls_jsonl_has_every_call_of_every_run(bundle: dict[str, Path]) -> None:
    lines = [json.loads(line) for line in bundle["calls.jsonl"].read_text(encoding="utf-8").splitlines()]
    assert [(c["run"], c["index"]) for c in lines] == [(run, i) for run in (1, 2) for i in range(1, 5)]
    call2 = lines[1]
    assert call2["class"] == "fast_fail" and call2["fate"] == "ran_late" and call2["late"]["via"] == "witness"
    assert call2["reply"] == "a|b ***"
    assert [m["line"] for m in call2["log_matches"]] == [f"followup queue drain failed: {PATTERN} (auth ***)\x1b[0m"]


def test_summary_json_validates_against_the_packaged_schema(bundle: dict[str, Path]) -> None:
    document = json.loads(bundle["summary.json"].read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(load_schema())
    jsonschema.Draft202012Validator(load_schema()).validate(document)
    assert document["schema_version"] == SCHEMA_VERSION == load_schema()["properties"]["schema_version"]["const"]
    assert document["pooled"]["calls"] == 8 and [r["summary"]["calls"] for r in document["runs"]] == [4, 4]
    assert [g["status"] for g in document["gates"]] == ["pass", "fail", "inconclusive"]
    assert document["gate_status"] == "fail" and document["exit_code_hint"] == 1
    assert document["target"]["gateway_version"] == "2026.5.3"


def test_summary_document_without_gates_or_failures() -> None:
    run = make_run(1)
    for record in run.records:
        record.cls, record.fate, record.late = CallClass.REAL, None, None
    document = summary_document(ReportInput(runs=[run], gates=[], command=["ocprobe"], environment={}))
    jsonschema.Draft202012Validator(load_schema()).validate(document)
    assert document["gates"] == [] and document["gate_status"] is None and document["exit_code_hint"] == 0


def test_pooled_summary_over_two_runs() -> None:
    first, second = make_run(1), make_run(2, interrupted=True, extra_log_lines=2)
    pooled = pooled_summary([first, second])
    assert pooled.calls == 8
    assert pooled.counts["real"] == 4 and pooled.counts["fast_fail"] == 4
    assert pooled.latency["real"].count == 4 and pooled.latency["real"].median_ms == pytest.approx(253.5)
    assert pooled.log_counts == {PATTERN: 1 + 3}
    assert pooled.fates["ran_late"] == 4
    assert pooled.floor_ms == 150.0 and pooled.interrupted
    assert pooled_summary([first, make_run(2, floor=None)]).floor_ms is None  # floors differ: no single floor
    assert summary_document(make_report([first, second]))["exit_code_hint"] == 130


def test_junit_xml_has_a_case_per_gate_and_per_call(bundle: dict[str, Path]) -> None:
    xml = JUnitXml.fromfile(str(bundle["junit.xml"]))
    suites = {suite.name: suite for suite in xml}
    assert list(suites) == ["ocprobe gates", "ocprobe calls run 1", "ocprobe calls run 2"]
    assert (xml.tests, xml.failures, xml.skipped, xml.errors) == (3 + 8, 1 + 4, 1, 0)

    gates = suites["ocprobe gates"]
    assert (gates.tests, gates.failures, gates.skipped) == (3, 1, 1)
    results = {case.name: case.result for case in gates}
    assert results["calls >= 1"] == []
    assert isinstance(results["real.rate >= 0.95"][0], Failure)
    assert "actual 0.5, expected real.rate >= 0.95" in results["real.rate >= 0.95"][0].message
    assert isinstance(results["wrong.median_ms < 100"][0], Skipped)

    run1 = suites["ocprobe calls run 1"]
    assert (run1.tests, run1.failures, run1.skipped) == (4, 2, 0)
    cases = list(run1)
    assert [case.name for case in cases] == ["call 1", "call 2", "call 3", "call 4"]
    assert {case.classname for case in cases} == {"ocprobe.ws_127_0_0_1_18789"}
    assert cases[0].time == pytest.approx(0.252) and cases[0].result == []
    assert run1.time == pytest.approx(sum(case.time for case in cases))
    failure = cases[1].result[0]
    assert isinstance(failure, Failure) and failure.type == "fast_fail" and failure.message.startswith("fast_fail")
    assert "fate: ran_late +1.2s via witness" in failure.text and "reply: 'a|b ***'" in failure.text
    assert PATTERN in failure.text  # the log line the call owns, its ANSI escape made XML-safe


def test_report_md_renders(bundle: dict[str, Path]) -> None:
    text = bundle["report.md"].read_text(encoding="utf-8")
    assert text.startswith("# ocprobe: FAIL: 4/8 real, pattern alternating, gates 1/3 pass")
    assert "```sh\nocprobe sequential -n 4 --target ws://127.0.0.1:18789\n```" in text
    html = MarkdownIt("commonmark").enable("table").render(text)
    assert html.count("<table>") == 6  # environment, classes, log patterns, run 1, run 2, gates
    assert "<code>✔✗✔✗</code> (alternating)" in html
    assert "<h3>Run 1</h3>" in html and "<h3>Run 2</h3>" in html
    assert "<td>a|b ***</td>" in html  # the pipe stays in its cell
    assert "<td>2026.5.3</td>" in html and "<td>real.rate &gt;= 0.95</td>" in html
    stamp = datetime.fromtimestamp(T0 + 102.5, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.500Z")
    assert f"{stamp}  run 1 call 2  [stderr]  followup queue drain failed: {PATTERN} (auth ***)" in text


def test_report_md_of_one_run_caps_the_log_lines(tmp_path: Path) -> None:
    paths = write_report_bundle(tmp_path, make_report([make_run(1, extra_log_lines=250)]), Redactor([TOKEN]))
    text = paths["report.md"].read_text(encoding="utf-8")
    assert "### Run" not in text and "Sequence: `✔✗✔✗` (alternating)" in text
    assert "... 51 more" in text  # 251 lines, 200 shown
    assert "  call 4  [gw.log]  ReplyRunAlreadyActiveError #198\n... 51 more" in text
    assert "<table>" in MarkdownIt("commonmark").enable("table").render(text)

"""The one output sink: human tables, JSON lines and quiet mode, plus the ``--json`` results file.

Every string it writes goes through ``redact`` so a token that reached a reply or a log line is never
shown or stored.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ocprobe.engine import LATE_START_MS, ConcurrencyStats, ConcurrentCallRecord, ConcurrentResult, ScriptCallRecord
from ocprobe.classify import sequence_strip
from ocprobe.errors import UsageError
from ocprobe.gates import GateResult
from ocprobe.matrix import Cell
from ocprobe.models import RESULTS_SCHEMA_VERSION, CallClass, CallRecord, LogMatch, ProbeResult, ProbeSummary, TargetInfo
from ocprobe.parity import ParityResult
from ocprobe.runner import ProbeOutcome
from ocprobe.secret import Redactor
from ocprobe.untrusted import for_terminal
from ocprobe.sweep import PARAMETERS, SweepPoint, SweepResult

CLASS_STYLE = {
    CallClass.REAL: "green",
    CallClass.FAST_FAIL: "bold red",
    CallClass.EMPTY: "red",
    CallClass.ERROR: "bold red",
    CallClass.TIMEOUT: "yellow",
    CallClass.WRONG: "magenta",
}
MAX_SESSION_LINES = 50  # per-session strips shown in the terminal; JSON has them all
BAR_WIDTH = 20  # characters of a sweep chart bar at a 100% failure rate


class Mode(str, Enum):
    HUMAN = "human"
    JSON = "json"  # JSON lines on stdout, nothing else there
    QUIET = "quiet"  # the summary line only


class JsonLinesFile:
    """Appends one JSON object per line. Each line is flushed to the OS as it is written, so Ctrl-C or a
    crash of ocprobe loses no finished call; the file is forced to disk (fsync) once, at close: per line
    it cost more than a call to the reference gateway does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # errors="replace": nothing from outside reaches here unscrubbed, but a record must never be lost to
        # an encoding error.
        self._file: IO[str] = path.open("w", encoding="utf-8", errors="replace")
        self.failed = False

    def write(self, record: dict[str, Any]) -> None:
        """Raises UsageError when the file cannot take the record (a full disk): the run stops, one line says
        why, rather than measuring on with nowhere to keep the results."""
        if self.failed:
            return  # already said; the records of the teardown go nowhere either
        try:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._file.flush()
        except OSError as exc:
            self.failed = True
            raise UsageError(f"cannot write --json {self.path}: {exc.strerror}") from None

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            self._file.flush()
            if stat.S_ISREG(os.fstat(self._file.fileno()).st_mode):  # /dev/null or a pipe cannot be fsync'ed
                os.fsync(self._file.fileno())
        except OSError:
            self.failed = True  # said by the write that failed, or the run's error line says enough
        finally:
            try:
                self._file.close()
            except OSError:
                pass


def _silence(stream: IO[str]) -> None:
    """The reader of ``stream`` went away: what is still written goes nowhere, without an error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no file descriptor behind it (a test's StringIO)
        pass


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # Rich's default exits 1, the code that says a call failed. A reader that stopped reading
        # (ocprobe ... | head -1) ends the output only: the run finishes, its files are written and its exit
        # code is its verdict's.
        self.quiet = True
        _silence(self.file)


class Output:
    def __init__(
        self,
        mode: Mode = Mode.HUMAN,
        *,
        json_path: Path | None = None,
        redactor: Redactor | None = None,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
    ) -> None:
        self.mode = mode
        self.redact = redactor or Redactor()
        self._stdout = stdout or sys.stdout
        # No markup and no emoji codes: text from outside ('[/INST]' in a reply, '[/]' in a version) is shown
        # as it is, never parsed (it crashed the run, or silently showed something else).
        self.console = _Console(file=self._stdout, highlight=False, soft_wrap=True, markup=False, emoji=False)
        self.err_console = _Console(file=stderr or sys.stderr, highlight=False, soft_wrap=True, markup=False, emoji=False)
        self.json_path = json_path  # the --json results file, if any (named when a probe is interrupted)
        self._stdout_gone = False  # the reader of stdout went away
        self._json_file = JsonLinesFile(json_path) if json_path else None
        self.outcome: ProbeOutcome | None = None  # the last finished probe, for the report bundle

    # -- generic messages -------------------------------------------------------------------
    def shown(self, text: str) -> str:
        """Text as a person sees it: secrets replaced, control characters escaped."""
        return for_terminal(self.redact(text))

    def error(self, message: str) -> None:
        self.err_console.print(Text(f"error: {self.shown(message)}", style="bold red"))

    def warn(self, message: str) -> None:
        self.err_console.print(Text(f"warning: {self.shown(message)}", style="yellow"))

    def info(self, message: str) -> None:
        """Progress and context for a person: stderr, so stdout stays the result."""
        if self.mode is Mode.HUMAN:
            self.err_console.print(Text(self.shown(message), style="dim"))

    def data(self, record: dict[str, Any], human: str) -> None:
        """A fact that is both machine- and person-readable (e.g. ``gateway serve`` URLs)."""
        if self.mode is Mode.JSON:
            self._emit_json(record)
        elif self.mode is Mode.HUMAN:
            self.console.print(Text(self.shown(human)))

    def _emit_json(self, record: dict[str, Any]) -> None:
        if self._stdout_gone:
            return
        try:
            self._stdout.write(json.dumps(self.redact(record), ensure_ascii=False) + "\n")
            self._stdout.flush()
        except BrokenPipeError:  # as _Console.on_broken_pipe: the output ends, the run goes on
            self._stdout_gone = True
            _silence(self._stdout)

    def _record(self, record: dict[str, Any]) -> None:
        record = self.redact(record)
        if self._json_file:
            self._json_file.write(record)
        if self.mode is Mode.JSON:
            self._emit_json(record)

    # -- matrix -----------------------------------------------------------------------------
    def cell_finished(self, cell: Cell) -> None:
        """A release of a matrix is done: one line for a person, its record for JSON."""
        self._record(cell.to_json())
        if cell.status == "broken":
            self.info(f"openclaw {cell.version}: could not be probed: {cell.reason}")
        else:
            probes = "; ".join(f"{p.probe} {p.verdict} {p.strip}" for p in cell.probes)
            self.info(f"openclaw {cell.version}: {cell.status} (protocol {cell.protocol}, ready {cell.ready_s} s): {probes}")

    def matrix_finished(self, cells: Sequence[Cell], report_dir: Path | None) -> None:
        line = matrix_line(cells)
        if self.mode is Mode.HUMAN:
            self.console.print(render_matrix(cells, self.redact))
            if report_dir is not None:
                self.console.print(Text(f"report    {report_dir}", style="dim"))
        if self.mode is Mode.JSON:
            self._emit_json({"record": "matrix-summary", "line": line, "cells": len(cells)})
        else:
            self.console.print(Text(self.shown(line), style="bold"))

    # -- probe observer ---------------------------------------------------------------------
    def probe_started(self, target: TargetInfo, calls: int, secrets: Iterable[str] = ()) -> None:
        for secret in secrets:
            self.redact.add(secret)
        self._record({"record": "start", "schema_version": RESULTS_SCHEMA_VERSION, "target": target_json(target),
                      "calls": calls})
        self.info(f"probing {describe_target(target)}: {calls} calls")

    def call_finished(self, record: CallRecord) -> None:
        self._record(record.to_json())
        self.call_progress(record)

    def call_progress(self, record: CallRecord, indent: str = "  ") -> None:
        """A finished call as a progress line on stderr (for a person only; the record is written elsewhere)."""
        if self.mode is Mode.HUMAN:
            line = Text(f"{indent}call {record.index:>3}  {'✔' if record.ok else '✗'} ")
            line.append(f"{record.cls.value:<9}", style=CLASS_STYLE[record.cls])
            line.append(f" {record.latency_ms:8.0f} ms")
            if isinstance(record, ConcurrentCallRecord) and (record.start_delay_ms or 0) > LATE_START_MS:
                line.append(f"  (started {record.start_delay_ms:.0f} ms late)", style="yellow")
            if isinstance(record, ScriptCallRecord) and not record.met:
                line.append(f"  (step {record.step} expected {' or '.join(record.expect)})", style="yellow")
            self.err_console.print(line)

    def run_finished(self, result: ProbeResult) -> None:
        for record in result.records:
            if record.fate or record.log_matches:
                self._record(
                    {
                        "record": "settle",
                        "run": record.run,
                        "index": record.index,
                        "fate": record.fate.value if record.fate else None,
                        "late": asdict(record.late) if record.late else None,
                        "log_matches": [asdict(m) for m in record.log_matches],
                    }
                )
        run_summary = result.summary.to_json()
        run_summary.update(record="run", run=result.records[0].run if result.records else 1,
                           unattributed_finals=[asdict(e) for e in result.unattributed_finals])
        concurrency = result.concurrency if isinstance(result, ConcurrentResult) else None
        if concurrency is not None:
            run_summary["concurrency"] = concurrency.to_json()
        self._record(run_summary)
        if self.mode is Mode.HUMAN:
            self.console.print(render_table(self.redact(result)))  # before excerpts cut a secret short
            for line in render_summary(result.summary, result.log_matches, len(result.unattributed_finals)):
                self.console.print(self.redact_renderable(line))
            for line in render_concurrency(concurrency) if concurrency is not None else []:
                self.console.print(self.redact_renderable(line))

    def probe_finished(self, outcome: ProbeOutcome) -> None:
        self.outcome = outcome
        summary = outcome.pooled.to_json()
        summary.update(
            schema_version=RESULTS_SCHEMA_VERSION,
            target=target_json(outcome.target),
            runs=len(outcome.runs),
            gates=[gate_json(g) for g in outcome.gates],
            gate_status=outcome.gate_status,
            exit_code=outcome.exit_code,
        )
        if outcome.concurrency is not None:
            summary["concurrency"] = outcome.concurrency.to_json()
        if outcome.expectations is not None:
            summary["expectations"] = {"met": outcome.expectations[0], "judged": outcome.expectations[1]}
        self._record(summary)
        if self._json_file:
            self._json_file.close()
        if self.mode is Mode.HUMAN:
            if len(outcome.runs) > 1:
                self.console.print(Text(f"pooled over {len(outcome.runs)} runs", style="bold"))
                matches = [m for r in outcome.runs for m in r.log_matches]
                for line in render_summary(outcome.pooled, matches, 0)[1:]:
                    self.console.print(self.redact_renderable(line))
                if outcome.concurrency is not None:
                    self.console.print(render_concurrency(outcome.concurrency)[-1])
            for result in outcome.gates:
                self.console.print(render_gate(result))
        if self.mode is not Mode.JSON:
            line = verdict_line(outcome)
            style = {0: "bold green", 3: "bold yellow"}.get(outcome.exit_code, "bold red")
            self.console.print(Text(self.shown(line), style=style if self.mode is Mode.HUMAN else ""))

    # -- sweep observer ---------------------------------------------------------------------
    def point_started(self, parameter: str, value: float, number: int, total: int) -> None:
        self.info(f"point {number}/{total}: {describe_point(parameter, value)}")

    def point_finished(self, point: SweepPoint) -> None:
        self._record(point.to_json())
        self.info(f"  {point.failures}/{point.calls} failed ({point.failure_rate:.0%}, 95% CI "
                  f"{point.wilson_low:.0%}-{point.wilson_high:.0%}), {point.log_lines} log line(s)")

    def sweep_finished(self, result: SweepResult) -> None:
        summary = result.to_json()
        summary["target"] = sweep_target_json(result)
        self._record(summary)
        if self._json_file:
            self._json_file.close()
        if self.mode is Mode.HUMAN:
            self.console.print(self.redact_renderable(render_sweep_chart(result)))
            self.console.print(Text(self.shown(result.boundary.describe()), style="bold"))
            if result.interrupted:
                self.console.print(Text("sweep     interrupted: figures cover the points measured so far", style="yellow"))
        if self.mode is not Mode.JSON:
            style = "bold green" if result.exit_code == 0 else "bold red"
            self.console.print(Text(self.shown(sweep_verdict_line(result)), style=style if self.mode is Mode.HUMAN else ""))

    # -- parity ------------------------------------------------------------------------------
    def parity_finished(self, result: ParityResult) -> None:
        a, b = result.transports
        differences = result.differences
        self._record({"record": "parity", "transports": [a, b], "target": target_json(result.target),
                      "summaries": [r.summary.to_json() for r in result.runs],
                      "differences": [{"index": i, a: x, b: y} for i, x, y in differences],
                      "exit_code": result.exit_code})
        if self._json_file:
            self._json_file.close()
        if self.mode is Mode.HUMAN:
            for name, run in zip((a, b), result.runs):
                self.console.print(Text(f"{name:<8} {sequence_strip([r.passed for r in run.records])}  "
                                        f"({run.summary.pattern}, {run.summary.counts.get('real', 0)}/{run.summary.calls} real)"))
            if differences:
                table = Table(title=f"calls where {a} and {b} differ", title_justify="left")
                for column in ("call", a, b):
                    table.add_column(column)
                for index, x, y in differences:
                    table.add_row(str(index), Text(x, style=CLASS_STYLE[CallClass(x)]), Text(y, style=CLASS_STYLE[CallClass(y)]))
                self.console.print(table)
        if self.mode is not Mode.JSON:
            line = (f"SAME: {a} and {b} gave every one of {len(result.runs[0].records)} calls the same class" if not differences
                    else f"DIFFERENT: {len(differences)}/{len(result.runs[0].records)} calls differ between {a} and {b}")
            style = "bold green" if not differences else "bold red"
            self.console.print(Text(line, style=style if self.mode is Mode.HUMAN else ""))

    def redact_renderable(self, renderable: Any) -> Any:
        if isinstance(renderable, Text):
            return Text(self.shown(renderable.plain), style=renderable.style)
        return renderable

    def close(self) -> None:
        if self._json_file:
            self._json_file.close()


def target_json(target: TargetInfo) -> dict[str, Any]:
    return {
        "target": target.target,
        "gateway_version": target.gateway_version,
        "profile": target.profile,
        "witness": target.witness,
        "node_version": target.node_version,
        "protocol": target.protocol,
        **target.extra,
    }


def describe_target(target: TargetInfo) -> str:
    parts = [target.target]
    if target.gateway_version:
        parts.append(f"gateway {target.gateway_version}")
    if target.protocol is not None:
        parts.append(f"protocol {target.protocol}")
    if target.profile:
        parts.append(f"profile {target.profile}")
    if target.node_version:
        parts.append(f"node {target.node_version}")
    parts.append("witness on" if target.witness else "no witness: latency floor")
    return ", ".join(parts)


def _excerpt(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_table(result: ProbeResult) -> Table:
    """One row per call; a session column when the calls went to more than one session."""
    table = Table(title=for_terminal(f"ocprobe: {describe_target(result.target)}"), title_justify="left")
    sessions = len({r.session_key for r in result.records}) > 1
    for name, justify in (("call", "right"), *((("session", "left"),) if sessions else ()), ("ms", "right"),
                          ("class", "left"), ("LLM", "center"), ("evidence", "left"), ("reply", "left"),
                          ("fate", "left"), ("log", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in result.records:
        llm = {True: "yes", False: "no", None: "?"}[r.llm_reached]
        reply = _excerpt(r.reply) if r.reply else ("(empty)" if r.state == "final" else _excerpt(r.error or r.state))
        fate = ""
        if r.fate:
            fate = r.fate.value
            if r.late:
                fate += f" +{(r.late.at - r.ended_at):.1f}s"
        table.add_row(
            str(r.index),
            *((for_terminal(r.session_key),) if sessions else ()),
            f"{r.latency_ms:.0f}",
            Text(r.cls.value, style=CLASS_STYLE[r.cls]),
            llm,
            r.evidence.value,
            for_terminal(reply),
            fate,
            str(len(r.log_matches)) if r.log_matches else "",
        )
    return table


def render_summary(s: ProbeSummary, matches: Sequence[LogMatch], unattributed: int) -> list[Text]:
    lines = [Text(f"sequence  {s.strip}  ({s.pattern})", style="bold")]
    counts = ", ".join(f"{name} {n}" for name, n in s.counts.items() if n)
    lines.append(Text(f"classes   {counts or 'no calls'}"))
    for name, stats in s.latency.items():
        lines.append(Text(f"latency   {name}: median {stats.median_ms:.0f} ms, p95 {stats.p95_ms:.0f} ms (n={stats.count})"))
    fates = ", ".join(f"{name} {n}" for name, n in s.fates.items() if n)
    if fates:
        lines.append(Text(f"fates     {fates}"))
    if s.log_counts:
        logs = ", ".join(f"{name!r}: {n}" for name, n in s.log_counts.items())
        distinct = len({(m.source, m.at, m.line) for m in matches})
        lines.append(Text(f"log       {logs} ({distinct} line(s))"))
    if unattributed:
        lines.append(Text(f"late      {unattributed} final(s) under runs ocprobe did not start"))
    if s.interrupted:
        lines.append(Text("run       interrupted: figures cover the calls finished so far", style="yellow"))
    return lines


def render_concurrency(c: ConcurrencyStats) -> list[Text]:
    """Per-session strips (in call order), then the throughput line (always the last)."""
    lines = []
    width = max((len(key) for key in c.sessions), default=0)
    for n, (key, strip) in enumerate(c.sessions.items()):
        if n == MAX_SESSION_LINES:
            lines.append(Text(f"session   ... {len(c.sessions) - n} more (all in the JSON output)"))
            break
        lines.append(Text(f"session   {key:<{width}}  {strip.strip or '(no call)'}  ({strip.pattern}, {strip.real}/{strip.calls} real)"))
    if c.mode == "open":
        late = f", {c.late_starts} late start(s) (> {LATE_START_MS:g} ms" + (
            f", max {c.max_start_delay_ms:.0f} ms)" if c.max_start_delay_ms is not None else ")")
        how = f"open loop at {c.rate:g}/s, at most {c.concurrency} in flight{late}"
    else:
        how = f"closed loop, {c.concurrency} worker(s)"
    lines.append(Text(f"throughput {c.calls_per_s:.1f} calls/s, {c.real_per_s:.1f} real/s over {c.wall_s:.1f} s ({how})"))
    return lines


def describe_point(parameter: str, value: float) -> str:
    _, label, to_ms, _ = PARAMETERS[parameter]
    return f"{label} {value * to_ms:g} ms"


def sweep_target_json(result: SweepResult) -> dict[str, Any] | None:
    """The target of the sweep, without the embedded setting the sweep varied (it is per point)."""
    if result.target is None:
        return None
    data = target_json(result.target)
    data.pop({"teardown_ms": "teardown_ms", "latency_ms": "provider_latency_ms"}.get(result.parameter, ""), None)
    return data


def render_sweep_chart(result: SweepResult) -> Table:
    """A bar per point: its length is the failure rate; the 95% Wilson interval is given as text."""
    label = PARAMETERS[result.parameter][1]
    title = "ocprobe sweep" + (f": {describe_target(result.target)}" if result.target else "")
    table = Table(title=title, title_justify="left")
    # In a narrow terminal the sequence column gives way first: the figures keep their width.
    table.add_column(f"{label} ms", justify="right", no_wrap=True, min_width=len(label) + 3)
    table.add_column("failure rate", min_width=BAR_WIDTH, no_wrap=True)
    for name, width in (("rate", 4), ("95% CI", 9), ("failed", 7), ("log", 3)):
        table.add_column(name, justify="right", no_wrap=True, min_width=width)
    table.add_column("sequence", max_width=40)  # what rich shrinks (wraps) first; the JSON has it all
    for p in result.points:
        filled = round(p.failure_rate * BAR_WIDTH)
        bar = Text("█" * filled, style="red" if p.failed else "green")
        bar.append("·" * (BAR_WIDTH - filled), style="dim")
        strips = " ".join(p.strips)
        table.add_row(f"{p.value_ms:g}", bar, f"{p.failure_rate:.0%}", f"{p.wilson_low:.0%}-{p.wilson_high:.0%}",
                      f"{p.failures}/{p.calls}", str(p.log_lines) if p.log_lines else "", _excerpt(strips, 60))
    return table


def sweep_verdict_line(result: SweepResult) -> str:
    failing = [p for p in result.points if p.failed]
    label = PARAMETERS[result.parameter][1]
    verdict = "INTERRUPTED" if result.interrupted else ("FAIL" if failing else "PASS")
    line = f"{verdict}: {len(failing)}/{len(result.points)} point(s) failed"
    if failing:
        line += f" ({label} " + ", ".join(f"{p.value_ms:g}" for p in failing) + " ms)"
    if result.boundary.estimate_ms is not None:
        line += f", {'race window' if result.parameter == 'gap' else 'threshold'} ~{result.boundary.estimate_ms:g} ms"
    return line


def gate_json(result: GateResult) -> dict[str, Any]:
    gate = result.gate
    return {"gate": gate.text, "metric": gate.metric, "op": gate.op, "value": gate.value,
            "actual": result.actual, "status": result.status}


def render_gate(result: GateResult) -> Text:
    mark, style = {"pass": ("✔", "green"), "fail": ("✗", "bold red"), "inconclusive": ("?", "yellow")}[result.status]
    actual = "no value" if result.actual is None else f"{result.actual:g}"
    return Text(f"gate      {mark} {result.gate.text}  (actual {actual}: {result.status})", style=style)


def verdict_line(outcome: ProbeOutcome) -> str:
    s = outcome.pooled
    verdict = {0: "PASS", 1: "FAIL", 3: "INCONCLUSIVE", 130: "INTERRUPTED"}.get(outcome.exit_code, "FAIL")
    real = s.counts.get(CallClass.REAL.value, 0)
    line = f"{verdict}: {real}/{s.calls} real, pattern {s.pattern}"
    if outcome.gate_status is not None:
        passed = sum(1 for g in outcome.gates if g.status == "pass")
        line += f", gates {passed}/{len(outcome.gates)} pass"
    if outcome.expectations is not None:
        line += f", expectations {outcome.expectations[0]}/{outcome.expectations[1]} met"
    return line


def render_matrix(cells: Sequence[Cell], redact: Redactor) -> Table:
    """The matrix: a row per release and probe (a broken release: one row with its reason)."""
    from ocprobe.matrix import TERMINAL_COLUMNS as COLUMNS, table_rows

    table = Table(title="ocprobe matrix", title_justify="left")
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    styles = {"pass": "green", "fail": "bold red", "broken": "yellow"}
    for row in table_rows(cells):
        verdict = row.get("verdict", "")
        table.add_row(*(Text(for_terminal(redact(row.get(c, ""))), style=styles.get(verdict, "yellow") if c == "verdict" else "")
                        for c in COLUMNS))
    return table


def matrix_line(cells: Sequence[Cell]) -> str:
    counts = {status: sum(1 for c in cells if c.status == status) for status in ("pass", "fail", "broken")}
    verdict = "PASS" if counts["pass"] == len(cells) and cells else "FAIL"
    return (f"{verdict}: {len(cells)} release(s): {counts['pass']} pass, {counts['fail']} fail, "
            f"{counts['broken']} could not be probed")

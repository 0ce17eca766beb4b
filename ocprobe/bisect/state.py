"""What a bisect has measured, and its log: ``bisect.json`` in the run dir, rewritten whole and atomically
after every batch, so an interrupted bisect resumes from it without probing a decided version again."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ocprobe import __version__
from ocprobe.bisect.search import Batch, Counts
from ocprobe.errors import UsageError
from ocprobe.openclaw.semver import Version, is_version

FORMAT = "ocprobe-bisect/1"
LOG_NAME = "bisect.json"
REPORT_NAME = "report.md"
RUNNING, DONE, ABORTED, INTERRUPTED = "running", "done", "aborted", "interrupted"


@dataclass
class VersionRecord:
    version: str
    role: str  # good | bad (the endpoints, as given) | candidate
    step: int  # the order versions were first probed in, from 1
    verdict: str | None = None  # good | bad | unknown | skip; None while undecided
    evidence: str = ""
    batches: list[Batch] = field(default_factory=list)
    sessions: int = 0  # launches of the version (one per stretch of batches)
    seconds: float = 0.0  # wall time spent on it: install wait, launch, batches, teardown

    @property
    def counts(self) -> Counts:
        return Counts(sum(b.failed for b in self.batches), sum(b.trials for b in self.batches))

    @property
    def calls(self) -> int:
        return sum(b.calls for b in self.batches)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VersionRecord:
        return cls(**{**data, "batches": [Batch(**b) for b in data["batches"]]})


@dataclass
class BisectState:
    good: str
    bad: str
    versions: list[str]  # the range, in release order, endpoints included
    risk: float
    max_calls: int
    exact: bool  # one run decides (a user's command), no statistics
    command: str  # the command line that started the bisect: the report's "reproduce"
    settings: dict[str, Any]  # the options the CLI rebuilds the probe from on --resume
    records: list[VersionRecord] = field(default_factory=list)
    status: str = RUNNING
    message: str = ""  # why the bisect stopped, when it did not finish
    elapsed_s: float = 0.0  # wall time over every session of the bisect (a resume adds to it)
    result: dict[str, Any] | None = None

    def record(self, version: str) -> VersionRecord | None:
        return next((r for r in self.records if r.version == version), None)

    def add(self, version: str, role: str) -> VersionRecord:
        record = self.record(version)
        if record is None:
            record = VersionRecord(version, role, step=len(self.records) + 1)
            self.records.append(record)
        return record

    def verdicts(self) -> dict[str, str]:
        return {r.version: r.verdict for r in self.records if r.verdict is not None}

    @property
    def calls(self) -> int:
        return sum(r.calls for r in self.records)

    @property
    def level(self) -> float:
        """The significance each test after a batch is held to: the risk split (Bonferroni) over the looks
        a version can get, ``max_calls`` over the calls of a batch (the first one measured)."""
        per_batch = next((b.calls for r in self.records for b in r.batches if b.calls), self.max_calls)
        return self.risk / max(1, math.ceil(self.max_calls / per_batch))

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "ocprobe": __version__, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BisectState:
        fields = {k: v for k, v in data.items() if k not in ("format", "ocprobe")}
        return cls(**{**fields, "records": [VersionRecord.from_json(r) for r in data["records"]]})


def write_atomic(path: Path, text: str) -> None:
    """Write a file whole or not at all: a temporary file beside it, forced to disk, renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)


def save(state: BisectState, run_dir: Path) -> None:
    write_atomic(run_dir / LOG_NAME, json.dumps(state.to_json(), indent=1, ensure_ascii=False) + "\n")


MAX_LOG_BYTES = 64 * 1024 * 1024  # a bisect log is kilobytes; one larger is not one
VERDICTS = (None, "good", "bad", "unknown", "skip")
ROLES = ("good", "bad", "candidate")
STATUSES = (RUNNING, DONE, ABORTED, INTERRUPTED)


def load(run_dir: Path) -> BisectState:
    """The log of a bisect to resume. It is input like any file: every field is checked (a version names a
    directory to write in, a count decides a verdict), and any fault is one line, not an internal error."""
    path = run_dir / LOG_NAME
    try:
        if path.stat().st_size > MAX_LOG_BYTES:
            raise UsageError(f"--resume {run_dir}: {LOG_NAME} is larger than {MAX_LOG_BYTES} bytes")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--resume {run_dir}: no {LOG_NAME} there (is it the run dir of a bisect?)") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UsageError(f"--resume {run_dir}: cannot read {LOG_NAME}: {getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"--resume {run_dir}: {LOG_NAME} is not an {FORMAT} log")
    try:
        state = BisectState.from_json(data)
        problem = _problem(state)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        raise UsageError(f"--resume {run_dir}: {LOG_NAME} is damaged ({problem})")
    return state


def _version_ok(value: Any) -> bool:
    """A version exactly as npm publishes one: nothing else may become a directory name."""
    return isinstance(value, str) and is_version(value) and str(Version.parse(value)) == value


def _int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _problem(state: BisectState) -> str | None:
    """What is wrong with a loaded state, or None."""
    if not isinstance(state.versions, list) or len(state.versions) < 2 or not all(map(_version_ok, state.versions)):
        return "versions must be a list of at least two versions"
    if len(set(state.versions)) != len(state.versions):
        return "a version is listed twice"
    for name, value in (("good", state.good), ("bad", state.bad)):
        if not _version_ok(value) or value not in state.versions:
            return f"{name} is not one of the versions"
    if not (_number(state.risk) and 0 < state.risk < 0.5) or not (_int(state.max_calls, 1) and state.max_calls <= 100_000):
        return "risk or max_calls out of range"
    if not isinstance(state.exact, bool) or not isinstance(state.command, str) or not isinstance(state.message, str):
        return "exact, command or message of the wrong type"
    if state.status not in STATUSES or not _number(state.elapsed_s) or not isinstance(state.settings, dict):
        return "status, elapsed_s or settings of the wrong type"
    if state.result is not None and not isinstance(state.result, dict):
        return "result of the wrong type"
    seen: set[str] = set()
    for record in state.records:
        if not _version_ok(record.version) or record.version not in state.versions or record.version in seen:
            return f"a record names {record.version!r}, not one of the versions (or twice)"
        seen.add(record.version)
        if record.role not in ROLES or record.verdict not in VERDICTS or not _int(record.step, 1):
            return f"the record of {record.version} has a bad role, verdict or step"
        if not (_int(record.sessions) and _number(record.seconds) and isinstance(record.evidence, str)):
            return f"the record of {record.version} has bad figures"
        for batch in record.batches:
            if not (_int(batch.failed) and _int(batch.trials) and _int(batch.calls) and batch.failed <= batch.trials):
                return f"a batch of {record.version} has bad counts"
            if not isinstance(batch.note, str) or not (batch.skip is None or isinstance(batch.skip, str)) \
                    or not isinstance(batch.figures, dict):
                return f"a batch of {record.version} has fields of the wrong type"
    return None

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


def load(run_dir: Path) -> BisectState:
    path = run_dir / LOG_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--resume {run_dir}: no {LOG_NAME} there (is it the run dir of a bisect?)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"--resume {run_dir}: cannot read {LOG_NAME}: {getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"--resume {run_dir}: {LOG_NAME} is not an {FORMAT} log")
    try:
        return BisectState.from_json(data)
    except (KeyError, TypeError) as exc:
        raise UsageError(f"--resume {run_dir}: {LOG_NAME} is damaged ({exc})") from None

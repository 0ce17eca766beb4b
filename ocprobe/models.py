"""Typed records shared by the probe engine, the CLI, the output sinks and the reports.

Times named ``*_at`` are wall-clock epoch seconds (they are compared with log lines and with the
provider's witness record, which live in other processes); latencies are measured with a monotonic
clock and given in milliseconds.
"""

from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any, overload


# The layout of the --json records (start, call, settle, run, summary): bumped when a field is renamed,
# removed or changes meaning, so ``ocprobe compare`` refuses a file it would misread.
RESULTS_SCHEMA_VERSION = 1


class CallClass(str, Enum):
    REAL = "real"  # reply carries the nonce and the LLM was reached
    FAST_FAIL = "fast_fail"  # answered before any LLM call
    EMPTY = "empty"  # final with no text although the LLM was reached (or slower than the floor)
    ERROR = "error"  # error frame, error state, aborted run or broken connection
    TIMEOUT = "timeout"  # no final within the per-call timeout
    WRONG = "wrong"  # LLM reached but the reply lacks the nonce


class Evidence(str, Enum):
    """What decided a call's class, strongest first."""

    WITNESS = "witness"  # ocprobe's own provider saw (or did not see) the call's nonce
    NONCE = "nonce"  # the reply text carried the nonce
    LATENCY_FLOOR = "latency_floor"  # no witness: faster than the floor means no LLM round trip
    TRANSPORT = "transport"  # the gateway or the connection said so (error, timeout)


class Fate(str, Enum):
    """What became of the message of a call that was not ``real``."""

    RAN_LATE = "ran_late"  # the turn ran later, out of order
    LOST = "lost"  # the witness never saw it
    UNKNOWN = "unknown"  # no witness and no late reply: cannot tell


# slots: a long probe keeps one of each of these per call (10,000 calls: megabytes of instance dicts).
@dataclass(frozen=True, slots=True)
class WitnessRequest:
    """One request the reference provider received: the evidence that a turn reached the LLM."""

    seq: int
    at: float
    nonces: tuple[str, ...]
    model: str
    stream: bool


class WitnessLog(Sequence[WitnessRequest]):
    """The requests a provider received, in arrival order, only ever appended to.

    Kept by column and given out as ``WitnessRequest``s built on access: a long probe keeps one request per
    call, and as objects (the request, its ``at`` float, its ``seq`` int, a nonce string in a tuple, the
    model name decoded anew from every body) they cost ~300 bytes each; in columns, ~40.
    """

    def __init__(self) -> None:
        self._at = array("d")
        self._first_nonce = array("I")  # per request: the position of its first nonce in _nonce_ends
        self._nonce_ends = array("I")  # per nonce: where its UTF-8 text ends in _nonce_text
        self._nonce_text = bytearray()
        self._models: list[str] = []
        self._stream = bytearray()

    def append(self, at: float, nonces: tuple[str, ...], model: str, stream: bool) -> None:
        """Record the next request; its ``seq`` is its position, counted from 1."""
        self._at.append(at)
        self._first_nonce.append(len(self._nonce_ends))
        for nonce in nonces:
            self._nonce_text += nonce.encode()
            self._nonce_ends.append(len(self._nonce_text))
        self._models.append(sys.intern(model))  # interned: every request names the same few models
        self._stream.append(stream)

    def __len__(self) -> int:
        return len(self._at)

    @overload
    def __getitem__(self, index: int) -> WitnessRequest: ...

    @overload
    def __getitem__(self, index: slice) -> list[WitnessRequest]: ...

    def __getitem__(self, index: int | slice) -> WitnessRequest | list[WitnessRequest]:
        if isinstance(index, slice):
            return [self._request(i) for i in range(*index.indices(len(self)))]
        return self._request(range(len(self))[index])  # negative indices, and IndexError past the end

    def _request(self, i: int) -> WitnessRequest:
        first = self._first_nonce[i]
        last = self._first_nonce[i + 1] if i + 1 < len(self) else len(self._nonce_ends)
        nonces = tuple(self._nonce(n) for n in range(first, last))
        return WitnessRequest(seq=i + 1, at=self._at[i], nonces=nonces, model=self._models[i], stream=bool(self._stream[i]))

    def _nonce(self, n: int) -> str:
        start = self._nonce_ends[n - 1] if n else 0
        return self._nonce_text[start:self._nonce_ends[n]].decode()


@dataclass(slots=True)
class LogMatch:
    pattern: str  # the regex source that matched
    line: str
    source: str  # file path, or "stderr" / "stdout" of a process ocprobe started
    at: float
    call: int | None = None  # index of the call whose time window holds the match


# Characters of an outside text (a reply, a stray final) a record keeps: a gateway that answers megabytes per
# call, or floods stray finals, cannot hold the memory of a long probe. What is cut is said, and the nonces
# in it are kept (a late reply is recognised by its nonce wherever it stands).
KEPT_TEXT = 4096
_NONCE_LIKE = re.compile(r"ok-\d+-[0-9a-z]+")


def kept_text(text: str) -> str:
    if len(text) <= KEPT_TEXT:
        return text
    nonces = " ".join(dict.fromkeys(_NONCE_LIKE.findall(text, KEPT_TEXT - 64)))
    return (f"{text[:KEPT_TEXT]}… [{len(text) - KEPT_TEXT} more characters"
            + (f"; nonces in them: {nonces}" if nonces else "") + "]")


@dataclass(frozen=True, slots=True)
class ChatEvent:
    """A ``chat`` event the transport saw for a run it did not start (a queued turn running late)."""

    run_id: str
    session_key: str
    state: str
    text: str
    at: float


@dataclass(slots=True)
class ChatOutcome:
    """What a transport observed for one ``chat.send``; classification happens elsewhere."""

    run_id: str
    state: str  # final | error | aborted | timeout
    text: str = ""
    started_at: float = 0.0
    ended_at: float = 0.0
    latency_ms: float = 0.0
    ack_status: str | None = None  # the chat.send response: started | in_flight | ok
    error_code: str | None = None
    error_message: str | None = None
    error_kind: str | None = None


@dataclass(slots=True)
class LateReply:
    at: float
    via: str  # "witness" (the provider saw the nonce) or "final" (a final under another runId)
    run_id: str | None = None
    text: str = ""


@dataclass(slots=True)
class CallRecord:
    index: int
    session_key: str
    run_id: str
    nonce: str
    started_at: float
    ended_at: float
    latency_ms: float
    cls: CallClass
    evidence: Evidence
    llm_reached: bool | None  # None: no witness, cannot tell
    reply: str
    state: str
    error: str | None = None
    log_matches: tuple[LogMatch, ...] = ()  # a tuple: no empty list kept per call that has none
    fate: Fate | None = None
    late: LateReply | None = None
    run: int = 1  # which repeat of the probe (--repeat)

    @property
    def passed(self) -> bool:
        return self.cls is CallClass.REAL

    @property
    def ok(self) -> bool:
        """What a verdict counts as a good call: a real one (a scripted call: one its step expects)."""
        return self.passed

    def to_json(self) -> dict[str, Any]:
        # Field by field rather than asdict(), whose deep copies were the cost of a --json line per call.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["log_matches"] = [asdict(match) for match in self.log_matches]
        data["late"] = asdict(self.late) if self.late else None
        data["evidence"] = self.evidence.value
        data["fate"] = self.fate.value if self.fate else None
        data["record"] = "call"
        data["class"] = data.pop("cls").value
        return data


@dataclass
class LatencyStats:
    count: int
    median_ms: float
    p95_ms: float


@dataclass
class TargetInfo:
    """What the probe ran against; printed with every result."""

    target: str  # "embedded", "ws://...", ...
    gateway_version: str | None = None
    profile: str | None = None
    witness: bool = False
    node_version: str | None = None
    protocol: int | None = None  # the WebSocket protocol version negotiated
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProbeSummary:
    calls: int
    counts: dict[str, int]
    latency: dict[str, LatencyStats]
    log_counts: dict[str, int]
    strip: str
    pattern: str
    fates: dict[str, int]
    floor_ms: float | None
    interrupted: bool = False

    @property
    def all_real(self) -> bool:
        return self.calls > 0 and self.counts.get(CallClass.REAL.value, 0) == self.calls

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["record"] = "summary"
        return data


@dataclass
class ProbeResult:
    target: TargetInfo
    records: list[CallRecord]
    summary: ProbeSummary
    log_matches: list[LogMatch]
    unattributed_finals: list[ChatEvent] = field(default_factory=list)

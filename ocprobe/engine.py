"""The probe engine: sends calls through a transport, classifies them, watches what happens after.

It knows nothing of the terminal: it reports each finished call and the final result to an observer.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ocprobe.classify import calibrated_floor, classify, echoes, name_pattern, percentile, sequence_strip
from ocprobe.defaults import DEFAULT_MESSAGE, DEFAULT_SESSION_KEY
from ocprobe.logwatch import LogWatcher
from ocprobe.models import (
    CallClass,
    CallRecord,
    ChatEvent,
    Fate,
    LatencyStats,
    LateReply,
    LogMatch,
    ProbeResult,
    ProbeSummary,
    TargetInfo,
    WitnessRequest,
    kept_text,
)
from ocprobe.transports.base import Transport

WAIT_MODES = ("final", "agent.wait")
SETTLE_POLL = 0.05
SETTLE_MIN_QUIET = 2.0  # longer than the gateways' follow-up debounce (0.5-1 s) so a queued turn is seen
SETTLE_CAP = 60.0
MAX_FOREIGN = 20_000  # stray finals kept per run (each holds at most KEPT_TEXT characters of text)


class Witness(Protocol):
    """Which turns reached the LLM: ocprobe's own provider, in process or read over HTTP."""

    @property
    def requests(self) -> Sequence[WitnessRequest]: ...  # in arrival order, only ever appended to


class ProbeObserver(Protocol):
    def call_finished(self, record: CallRecord) -> None: ...

    def run_finished(self, result: ProbeResult) -> None: ...


@dataclass
class ProbeConfig:
    """What every probe mode shares: the calls, their message and how a call ends and is judged."""

    calls: int = 10
    session_key: str = DEFAULT_SESSION_KEY
    message: str = DEFAULT_MESSAGE
    wait: str = "final"
    timeout: float = 30.0
    floor_ms: float | None = None
    settle: float | None = None  # quiet time that ends the settle period; None: derived from real round trips
    probe_id: str = field(default_factory=lambda: secrets.token_hex(3))
    run: int = 1

    def nonce(self, index: int) -> str:
        return f"ok-{index}-{self.probe_id}"

    def idempotency_key(self, index: int) -> str:
        return f"ocprobe-{self.probe_id}-{index}"


@dataclass
class SequentialConfig(ProbeConfig):
    """One session, one call at a time, ``gap`` seconds after each reply."""

    gap: float = 0.0


@dataclass
class ConcurrentConfig(ProbeConfig):
    """Calls in parallel over ``sessions`` session keys.

    Closed loop (``rate`` None): ``concurrency`` workers take call numbers from one counter until
    ``calls`` or ``duration``. Open loop: a call starts every ``1 / rate`` seconds whatever the replies
    do (at most ``calls``, none after ``duration``); ``concurrency`` caps the calls in flight, and a call
    held back by the cap (or by a busy event loop) records how late it started.
    """

    concurrency: int = 4
    sessions: int = 1
    rate: float | None = None  # calls started per second (open loop); None: closed loop
    duration: float | None = None  # seconds after which no call starts; None: only ``calls`` bounds the run

    def session_keys(self) -> list[str]:
        """``K`` keys derived from the base key; one session is the base key itself."""
        if self.sessions == 1:
            return [self.session_key]
        return [f"{self.session_key}-s{k}" for k in range(1, self.sessions + 1)]

    def worker_sessions(self, worker: int) -> list[str]:
        """The sessions closed-loop worker ``worker`` (0-based) sends to, in turn.

        Worker ``w`` and session ``s`` are paired when ``w % m == s % m`` with ``m = min(K, c)``: with
        fewer sessions than workers each session is shared by its workers (``--sessions 1``: every
        worker on one session, the contention case); with at least as many sessions as workers no
        two workers ever share one, each worker cycling through its own sessions.
        """
        keys = self.session_keys()
        m = min(len(keys), self.concurrency)
        return [key for s, key in enumerate(keys) if s % m == worker % m]

    def arrival_session(self, index: int) -> str:
        """Open loop: call ``index`` (from 1) goes to the sessions in turn, busy or not."""
        keys = self.session_keys()
        return keys[(index - 1) % len(keys)]


@dataclass
class SendStep:
    """Send one chat turn (``count`` times) and judge it against ``expect``."""

    message: str  # template with {i} and {nonce}
    session_key: str | None = None  # None: the probe's session key
    expect: tuple[str, ...] = ("real",)  # classes that meet the expectation; empty: any class
    until: str = "final"  # what ends the call: final or agent.wait
    background: bool = False  # go on with the next step at once; a ``wait`` step (or the end) joins it
    count: int = 1


@dataclass
class SleepStep:
    seconds: float


@dataclass
class WaitStep:
    """Wait until every background send has ended."""


Step = SendStep | SleepStep | WaitStep


@dataclass
class ScriptConfig(ProbeConfig):
    """A scripted probe: ``steps`` run in order, ``iterations`` times. ``calls`` is derived from them."""

    steps: list[Step] = field(default_factory=list)
    iterations: int = 1

    def __post_init__(self) -> None:
        self.calls = self.iterations * sum(s.count for s in self.steps if isinstance(s, SendStep))


@dataclass(slots=True)
class ScriptCallRecord(CallRecord):
    """A call of a scripted probe: which step sent it and what it was expected to be."""

    step: int = 0  # 1-based position in the scenario's steps
    expect: list[str] = field(default_factory=list)  # empty: any class

    @property
    def met(self) -> bool:
        return not self.expect or self.cls.value in self.expect

    @property
    def ok(self) -> bool:
        return self.met


@dataclass(slots=True)
class ConcurrentCallRecord(CallRecord):
    """A call of a concurrent probe; in open loop, also how late it started against its schedule."""

    start_delay_ms: float | None = None  # open loop only: start time minus scheduled arrival time


# An open-loop call that starts later than this after its scheduled arrival is reported as a late start.
LATE_START_MS = 20.0


@dataclass
class SessionStrip:
    calls: int
    real: int
    strip: str
    pattern: str


@dataclass
class ConcurrencyStats:
    """Per-session sequence strips and throughput of a concurrent probe (or of several, pooled)."""

    concurrency: int
    mode: str  # "closed" (workers) or "open" (arrival rate)
    rate: float | None
    sessions: dict[str, SessionStrip]  # session key -> its calls in call order
    wall_s: float  # first call's start to last call's end (summed over pooled runs)
    calls_per_s: float
    real_per_s: float
    late_starts: int  # open loop: calls that started more than LATE_START_MS after their schedule
    max_start_delay_ms: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency, "mode": self.mode, "rate": self.rate,
            "sessions": {key: vars(strip) for key, strip in self.sessions.items()},
            "wall_s": self.wall_s, "calls_per_s": self.calls_per_s, "real_per_s": self.real_per_s,
            "late_starts": self.late_starts, "max_start_delay_ms": self.max_start_delay_ms,
        }


@dataclass
class ConcurrentResult(ProbeResult):
    concurrency: ConcurrencyStats | None = None


class ProbeEngine:
    def __init__(
        self,
        transport: Transport,
        target: TargetInfo,
        *,
        witness: Witness | None,
        logs: LogWatcher,
        observer: ProbeObserver,
    ) -> None:
        self.transport = transport
        self.target = target
        self.witness = witness
        # nonce -> when the witness saw it, indexed as it grows; a call's entry goes once its fate is settled
        self._witnessed: dict[str, list[float]] = {}
        self._witness_cursor = 0
        self.logs = logs
        self.observer = observer
        self.records: list[CallRecord] = []
        self._real: list[float] = []  # latencies of the real calls so far, appended as they end
        self._foreign: list[ChatEvent] = []
        self._log_offset = len(logs.matches)  # with --repeat, earlier runs' matches are theirs
        self._settle_cut = False  # the settle period hit its cap while late turns were still running
        self.result: ProbeResult | None = None  # set when the run ends, also when it is cut short

    async def run(self, cfg: ProbeConfig) -> ProbeResult:
        """Run the probe the config describes (sequential, concurrent or scripted)."""
        if isinstance(cfg, ConcurrentConfig):
            return await self.run_concurrent(cfg)
        if isinstance(cfg, SequentialConfig):
            return await self.run_sequential(cfg)
        if isinstance(cfg, ScriptConfig):
            return await self._run(cfg, lambda: self._drive_script(cfg))
        raise TypeError(f"no probe mode for {type(cfg).__name__}")

    async def run_sequential(self, cfg: SequentialConfig) -> ProbeResult:
        return await self._run(cfg, lambda: self._drive_sequential(cfg))

    async def run_concurrent(self, cfg: ConcurrentConfig) -> ProbeResult:
        drive = self._drive_closed_loop if cfg.rate is None else self._drive_open_loop
        return await self._run(cfg, lambda: drive(cfg))

    async def _run(self, cfg: ProbeConfig, drive: Callable[[], Awaitable[None]]) -> ProbeResult:
        """Send the calls, settle, report; on cancellation or a lost target, report what was measured,
        then re-raise."""
        try:
            await drive()
            await self._settle(cfg)
        except BaseException:
            self.result = await self._result(cfg, interrupted=True)
            self.observer.run_finished(self.result)
            raise
        self.result = await self._result(cfg, interrupted=False)
        self.observer.run_finished(self.result)
        return self.result

    def _finished(self, record: CallRecord) -> None:
        self.records.append(record)
        if record.cls is CallClass.REAL:
            self._real.append(record.latency_ms)
        if not _fate_open(record):
            # Only calls whose fate is open look for their nonce in the witness again (a late run).
            self._witnessed.pop(record.nonce, None)
        self.observer.call_finished(record)

    # -- the ways calls are sent -------------------------------------------------------------
    async def _drive_sequential(self, cfg: SequentialConfig) -> None:
        for index in range(1, cfg.calls + 1):
            self._finished(await self._call(cfg, index, cfg.session_key))
            if cfg.gap and index < cfg.calls:
                await asyncio.sleep(cfg.gap)

    async def _drive_script(self, cfg: ScriptConfig) -> None:
        index = 0
        background: list[asyncio.Task[None]] = []

        async def send(step: SendStep, number: int, call_index: int) -> None:
            self._finished(await self._call(
                cfg, call_index, step.session_key or cfg.session_key, message=step.message, wait=step.until,
                record_type=ScriptCallRecord, step=number, expect=list(step.expect),
            ))

        try:
            for _ in range(cfg.iterations):
                for number, step in enumerate(cfg.steps, 1):
                    if isinstance(step, SleepStep):
                        await asyncio.sleep(step.seconds)
                    elif isinstance(step, WaitStep):
                        await _all_or_none(background)
                        background.clear()
                    else:
                        for _ in range(step.count):
                            index += 1
                            if step.background:
                                background.append(asyncio.create_task(send(step, number, index)))
                            else:
                                await send(step, number, index)
            await _all_or_none(background)
        except BaseException:
            await _cancel(background)
            raise

    async def _drive_closed_loop(self, cfg: ConcurrentConfig) -> None:
        """``concurrency`` workers, each sending its next call as soon as its last one ended."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.duration if cfg.duration is not None else None
        counter = itertools.count(1)

        async def worker(w: int) -> None:
            sessions = cfg.worker_sessions(w)
            for turn in range(cfg.calls):  # a worker never sends more than every call
                if deadline is not None and loop.time() >= deadline:
                    return
                index = next(counter)
                if index > cfg.calls:
                    return
                self._finished(await self._call(cfg, index, sessions[turn % len(sessions)]))

        await _all_or_none([worker(w) for w in range(cfg.concurrency)])

    async def _drive_open_loop(self, cfg: ConcurrentConfig) -> None:
        """Arrivals every ``1 / rate`` seconds, however slow the replies; ``concurrency`` caps the calls in
        flight (a call held back by the cap starts late, and its record says by how much)."""
        assert cfg.rate is not None
        loop = asyncio.get_running_loop()
        start = loop.time()
        slots = asyncio.Semaphore(cfg.concurrency)
        tasks: list[asyncio.Task[None]] = []
        failed: list[BaseException] = []

        async def one(index: int, session_key: str, due: float) -> None:
            try:
                delay_ms = max(0.0, (loop.time() - due) * 1000.0)
                self._finished(await self._call(cfg, index, session_key, start_delay_ms=round(delay_ms, 3)))
            except Exception as exc:
                failed.append(exc)
                raise
            finally:
                slots.release()

        try:
            for index in range(1, cfg.calls + 1):
                due = start + (index - 1) / cfg.rate
                if cfg.duration is not None and due - start >= cfg.duration:
                    break
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                await slots.acquire()
                if cfg.duration is not None and loop.time() - start >= cfg.duration:
                    slots.release()  # held back by the cap past the end: this call never starts
                    break
                tasks.append(asyncio.create_task(one(index, cfg.arrival_session(index), due)))
                if failed:
                    break  # a lost target: stop launching, the gather below raises its error
        except BaseException:
            await _cancel(tasks)
            raise
        await _all_or_none(tasks)

    # -- one call ----------------------------------------------------------------------------
    async def _call(
        self, cfg: ProbeConfig, index: int, session_key: str, *, message: str | None = None, wait: str | None = None,
        record_type: type[CallRecord] | None = None, **extra: Any,
    ) -> CallRecord:
        """Send, wait and classify one call: the one code path of every probe mode. A scripted step brings
        its own ``message`` and ``wait``; ``extra`` are the fields of its mode's ``record_type``."""
        nonce, run_id = cfg.nonce(index), cfg.idempotency_key(index)
        template = cfg.message if message is None else message
        sent = template.format(i=index, nonce=nonce)
        outcome = await self.transport.send(session_key, sent, run_id, cfg.timeout)
        if (cfg.wait if wait is None else wait) == "agent.wait" and outcome.state == "final":
            await self.transport.wait_run(run_id, cfg.timeout)
        hits = None
        if self.witness is not None:
            hits = sum(1 for at in self._witness_times(nonce) if at <= outcome.ended_at)
        # The floor decides only without a witness and without the nonce in the reply: computed only then.
        floor = cfg.floor_ms
        if floor is None and hits is None and (nonce not in outcome.text or echoes(outcome.text, sent, nonce)):
            floor = calibrated_floor(self._real)
        verdict = classify(outcome, nonce, witness_hits=hits, floor_ms=floor, message=sent)
        error = outcome.error_message
        if verdict.echo:
            error = error or "the reply echoes the prompt: its nonce is no evidence of an LLM round trip"
        elif verdict.cls is CallClass.WRONG:
            error = error or self._foreign_nonce_note(outcome.text, cfg, index)
        self._take_foreign()
        if record_type is None:
            record_type = ConcurrentCallRecord if isinstance(cfg, ConcurrentConfig) else CallRecord
        return record_type(
            index=index,
            session_key=session_key,
            run_id=run_id,
            nonce=nonce,
            started_at=outcome.started_at,
            ended_at=outcome.ended_at,
            latency_ms=round(outcome.latency_ms, 3),
            cls=verdict.cls,
            evidence=verdict.evidence,
            llm_reached=verdict.llm_reached,
            # The reference LLM replies with the nonce alone: the record keeps one string, not two equal ones.
            reply=nonce if outcome.text == nonce else kept_text(outcome.text),
            state=outcome.state,
            error=error,
            run=cfg.run,
            **extra,
        )

    def _witness_times(self, nonce: str) -> list[float]:
        """When the witness saw ``nonce``. Requests are only appended, so each is indexed once: scanning
        the whole record per call made a long probe quadratic."""
        if self.witness is None:
            return []
        requests = self.witness.requests
        for request in requests[self._witness_cursor:]:
            for seen in request.nonces:
                self._witnessed.setdefault(seen, []).append(request.at)
        self._witness_cursor = len(requests)
        return self._witnessed.get(nonce, [])

    @staticmethod
    def _foreign_nonce_note(text: str, cfg: ProbeConfig, index: int) -> str | None:
        """A reply carrying another call's nonce is a reply delivered out of order."""
        for other in range(1, cfg.calls + 1):
            if other != index and cfg.nonce(other) in text:
                return f"reply carries the nonce of call {other} (out of order)"
        return None

    # -- after the last call ----------------------------------------------------------------
    def _pending(self) -> list[CallRecord]:
        return [r for r in self.records if _fate_open(r)]

    async def _settle(self, cfg: ProbeConfig) -> None:
        """Watch for queued turns running late until every open call is resolved or all is quiet."""
        if not self._pending():
            return
        real = self._real
        quiet = cfg.settle if cfg.settle is not None else max(SETTLE_MIN_QUIET, 3 * statistics.median(real) / 1000 if real else 0)
        start = last_activity = time.monotonic()
        seen = (len(self.witness.requests) if self.witness else 0, len(self._foreign))
        while True:
            await asyncio.sleep(SETTLE_POLL)
            self._take_foreign()
            now_seen = (len(self.witness.requests) if self.witness else 0, len(self._foreign))
            now = time.monotonic()
            if now_seen != seen:
                seen, last_activity = now_seen, now
            # Done early once every open call's late reply has arrived (the witness sees a queued turn
            # before its final); otherwise the quiet period decides.
            if all(any(r.nonce in e.text for e in self._foreign) for r in self._pending()):
                return
            if now - last_activity >= quiet:
                return
            if now - start >= max(quiet, min(SETTLE_CAP, 10 * quiet)):
                # Cut by the cap while turns still run (a long follow-up queue): an open call may yet
                # run, so its fate is unknown rather than lost.
                self._settle_cut = True
                return

    def _take_foreign(self) -> None:
        """Finals of runs this probe did not start (queued turns running late), kept up to MAX_FOREIGN: a
        gateway flooding stray finals cannot grow the probe without bound."""
        events = self.transport.take_foreign_events()
        self._foreign.extend(events[: max(0, MAX_FOREIGN - len(self._foreign))])

    def _late_reply(self, record: CallRecord) -> LateReply | None:
        witnessed = [
            at for at in self._witness_times(record.nonce) if at > record.ended_at
        ]
        # A final that came before the call was sent cannot be its late reply, whatever text it carries.
        finals = [e for e in self._foreign if record.nonce in e.text and e.at >= record.started_at]
        if not witnessed and not finals:
            return None
        final = finals[0] if finals else None
        via = "+".join(v for v, present in (("witness", witnessed), ("final", finals)) if present)
        return LateReply(
            at=min(witnessed) if witnessed else final.at,  # type: ignore[union-attr]
            via=via,
            run_id=final.run_id if final else None,
            text=final.text if final else "",
        )

    async def _result(self, cfg: ProbeConfig, *, interrupted: bool) -> ProbeResult:
        try:
            await self.logs.poll()
        except Exception:  # an unreadable log at the very end must not cost the measured calls
            pass
        self._take_foreign()
        self.records.sort(key=lambda r: r.index)  # concurrent calls end out of order; report them in call order
        for record in self._pending():
            record.late = self._late_reply(record)
            if record.late:
                record.fate = Fate.RAN_LATE
            else:
                record.fate = Fate.LOST if self.witness and not self._settle_cut else Fate.UNKNOWN
        matches = self.logs.matches[self._log_offset :]
        log_counts = dict.fromkeys(self.logs.counts(), 0)
        for match in matches:
            log_counts[match.pattern] += 1
        attach_log_matches(self.records, matches)
        attributed = {r.late.run_id for r in self.records if r.late and r.late.run_id}
        floor = cfg.floor_ms if cfg.floor_ms is not None else calibrated_floor(self._real)
        fields = dict(
            target=self.target,
            records=self.records,
            summary=summarize(self.records, log_counts, floor, interrupted=interrupted),
            log_matches=matches,
            unattributed_finals=[e for e in self._foreign if e.run_id not in attributed],
        )
        if isinstance(cfg, ConcurrentConfig):
            return ConcurrentResult(**fields, concurrency=concurrency_stats(self.records, cfg))  # type: ignore[arg-type]
        return ProbeResult(**fields)  # type: ignore[arg-type]


def _fate_open(record: CallRecord) -> bool:
    """A call whose message did not reach the LLM while it ran: what became of it is decided at the end."""
    return record.cls is not CallClass.REAL and record.llm_reached is not True


async def _cancel(tasks: Sequence[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _all_or_none(aws: Sequence[Awaitable[None]]) -> None:
    """Await every task; the first error (or a cancellation) cancels the others, then propagates."""
    tasks = [a if isinstance(a, asyncio.Task) else asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.gather(*tasks)
    finally:
        await _cancel([t for t in tasks if not t.done()])


def concurrency_stats(records: Sequence[CallRecord], cfg: ConcurrentConfig) -> ConcurrencyStats:
    """Strips per session (in call order) and throughput over the calls' wall time."""
    ordered = sorted(records, key=lambda r: r.index)
    sessions: dict[str, list[bool]] = {key: [] for key in cfg.session_keys()}
    for record in ordered:
        sessions.setdefault(record.session_key, []).append(record.passed)
    wall = max((r.ended_at for r in ordered), default=0.0) - min((r.started_at for r in ordered), default=0.0)
    delays = [r.start_delay_ms for r in ordered if isinstance(r, ConcurrentCallRecord) and r.start_delay_ms is not None]
    return ConcurrencyStats(
        concurrency=cfg.concurrency,
        mode="closed" if cfg.rate is None else "open",
        rate=cfg.rate,
        sessions={key: _session_strip(passed) for key, passed in sessions.items()},
        wall_s=round(max(wall, 0.0), 3),
        calls_per_s=_per_s(len(ordered), wall),
        real_per_s=_per_s(sum(r.passed for r in ordered), wall),
        late_starts=sum(1 for d in delays if d > LATE_START_MS),
        max_start_delay_ms=round(max(delays), 3) if delays else None,
    )


def pooled_concurrency(stats: Sequence[ConcurrencyStats]) -> ConcurrencyStats | None:
    """Several runs' figures as one: sessions side by side (each run has its own), throughput over the
    summed wall time."""
    if not stats:
        return None
    sessions = {key: strip for s in stats for key, strip in s.sessions.items()}
    wall = sum(s.wall_s for s in stats)
    calls = sum(strip.calls for strip in sessions.values())
    real = sum(strip.real for strip in sessions.values())
    delays = [s.max_start_delay_ms for s in stats if s.max_start_delay_ms is not None]
    return ConcurrencyStats(
        concurrency=stats[0].concurrency, mode=stats[0].mode, rate=stats[0].rate, sessions=sessions,
        wall_s=round(wall, 3), calls_per_s=_per_s(calls, wall), real_per_s=_per_s(real, wall),
        late_starts=sum(s.late_starts for s in stats), max_start_delay_ms=max(delays) if delays else None,
    )


def _session_strip(passed: Sequence[bool]) -> SessionStrip:
    return SessionStrip(calls=len(passed), real=sum(passed), strip=sequence_strip(passed), pattern=name_pattern(passed))


def _per_s(count: int, seconds: float) -> float:
    return round(count / seconds, 3) if seconds > 0 else 0.0


def attach_log_matches(records: Sequence[CallRecord], matches: Sequence[LogMatch]) -> None:
    """Give each log match to one call. The rule, which for calls that never overlap (sequential) is
    "the call whose window, from its start to the next call's start, holds it":

    1. A line that names session keys of the probe (a drain failure names its session) belongs to a
       call on one of those sessions; a line naming none may belong to any call.
    2. Among those calls, the ones in flight at the match's time (started, not yet ended) win, and of
       them the latest started: the newest send is what ran into the busy session.
    3. With none in flight, the latest call started before the match (the log line outlived it).
    4. A match before any such call started belongs to no call.
    """
    owned: dict[int, list[LogMatch]] = {}  # id of a record -> its matches, in order
    if matches:  # with none, spare sorting the calls and compiling a pattern per session key
        ordered = sorted(records, key=lambda r: (r.started_at, r.index))
        keys = {r.session_key for r in ordered}
        # A key must not continue with a name character: "main-s1" is not named by "main-s10".
        named = {key: re.compile(re.escape(key) + r"(?![\w-])", re.IGNORECASE) for key in keys} if len(keys) > 1 else {}
        for match in matches:
            sessions = {key for key, pattern in named.items() if pattern.search(match.line)}
            started = [r for r in ordered if r.started_at <= match.at and (not sessions or r.session_key in sessions)]
            in_flight = [r for r in started if r.ended_at >= match.at]
            owner = (in_flight or started or [None])[-1]
            match.call = owner.index if owner else None
            if owner is not None:
                owned.setdefault(id(owner), []).append(match)
    for record in records:
        record.log_matches = tuple(owned.get(id(record), ()))


def pooled_summary(results: Sequence[ProbeResult]) -> ProbeSummary:
    """One summary over every call of several runs of the same probe (``--repeat``)."""
    log_counts: dict[str, int] = {}
    for result in results:
        for pattern, count in result.summary.log_counts.items():
            log_counts[pattern] = log_counts.get(pattern, 0) + count
    floors = {r.summary.floor_ms for r in results}
    return summarize(
        [record for result in results for record in result.records],
        log_counts,
        floors.pop() if len(floors) == 1 else None,
        interrupted=any(r.summary.interrupted for r in results),
    )


def summarize(
    records: Sequence[CallRecord], log_counts: dict[str, int], floor_ms: float | None, *, interrupted: bool
) -> ProbeSummary:
    counts = {c.value: 0 for c in CallClass}
    by_class: dict[str, list[float]] = {}
    for record in records:
        counts[record.cls.value] += 1
        by_class.setdefault(record.cls.value, []).append(record.latency_ms)
    latency = {
        name: LatencyStats(count=len(values), median_ms=round(statistics.median(values), 3), p95_ms=round(percentile(values, 95), 3))
        for name, values in by_class.items()
    }
    fates = {f.value: 0 for f in Fate}
    for record in records:
        if record.fate:
            fates[record.fate.value] += 1
    passed = [r.passed for r in records]
    return ProbeSummary(
        calls=len(records),
        counts=counts,
        latency=latency,
        log_counts=dict(log_counts),
        strip=sequence_strip(passed),
        pattern=name_pattern(passed),
        fates=fates,
        floor_ms=round(floor_ms, 3) if floor_ms is not None else None,
        interrupted=interrupted,
    )

"""The probe engine with a fake gateway: concurrent modes, session assignment, log attribution."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import fields, replace
from typing import Any

import pytest

from ocprobe.engine import (
    LATE_START_MS,
    ConcurrentCallRecord,
    ConcurrentConfig,
    ConcurrentResult,
    ProbeEngine,
    ScriptCallRecord,
    SequentialConfig,
    attach_log_matches,
    concurrency_stats,
    pooled_concurrency,
)
from ocprobe.errors import TargetUnreachable, UsageError
from ocprobe.logwatch import LogWatcher
from ocprobe.models import (
    CallClass, CallRecord, ChatOutcome, Evidence, Fate, LogMatch, ProbeResult, TargetInfo, WitnessLog, WitnessRequest,
)
from ocprobe.runner import validate_config
from ocprobe.transports.base import Transport

NONCE = re.compile(r"ok-\S+")


class FakeGateway(Transport):
    """A reply-run guard per session: a send to a busy session gets an empty final without LLM call
    (and a drain-failure log line naming the session); otherwise the LLM is reached and answers.
    It is its own witness: ``requests`` lists the turns that reached the LLM."""

    def __init__(self, logs: LogWatcher, *, latency: float = 0.05, busy_ack: float = 0.06, fail_at: int | None = None) -> None:
        self.logs = logs
        self.latency = latency
        self.busy_ack = busy_ack
        self.fail_at = fail_at
        self.busy: set[str] = set()
        self.requests: list[WitnessRequest] = []
        self.sends = 0
        self.in_flight = 0
        self.max_in_flight = 0

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def send(self, session_key: str, message: str, idempotency_key: str, timeout: float) -> ChatOutcome:
        self.sends += 1
        if self.fail_at is not None and self.sends >= self.fail_at:
            raise TargetUnreachable("gateway went away")
        started_at, t0 = time.time(), time.perf_counter()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if session_key in self.busy:
                self.logs.feed_line("stderr", f"followup queue drain failed for {session_key}: ReplyRunAlreadyActiveError")
                await asyncio.sleep(self.busy_ack)
                text = ""
            else:
                self.busy.add(session_key)
                nonce = NONCE.search(message).group()  # type: ignore[union-attr]
                self.requests.append(WitnessRequest(len(self.requests) + 1, time.time(), (nonce,), "m", True))
                await asyncio.sleep(self.latency)
                self.busy.discard(session_key)
                text = nonce
        finally:
            self.in_flight -= 1
        return ChatOutcome(run_id=idempotency_key, state="final", text=text, started_at=started_at, ended_at=time.time(),
                           latency_ms=(time.perf_counter() - t0) * 1000)


class Observer:
    def __init__(self) -> None:
        self.finished: list[CallRecord] = []
        self.results: list[ProbeResult] = []

    def call_finished(self, record: CallRecord) -> None:
        self.finished.append(record)

    def run_finished(self, result: ProbeResult) -> None:
        self.results.append(result)


async def probe(cfg: Any, **gateway: Any) -> tuple[ProbeResult, FakeGateway, Observer]:
    logs = LogWatcher()
    await logs.start()
    try:
        fake = FakeGateway(logs, **gateway)
        observer = Observer()
        engine = ProbeEngine(fake, TargetInfo(target="fake", witness=True), witness=fake, logs=logs, observer=observer)
        result = await engine.run(cfg)
        return result, fake, observer
    finally:
        await logs.stop()


@pytest.mark.parametrize(("sessions", "workers"), [(1, 4), (2, 4), (3, 4), (4, 4), (6, 4), (9, 4), (20, 20)])
def test_worker_sessions_share_only_when_fewer_sessions_than_workers(sessions: int, workers: int) -> None:
    cfg = ConcurrentConfig(sessions=sessions, concurrency=workers)
    keys = cfg.session_keys()
    assigned = [cfg.worker_sessions(w) for w in range(workers)]
    assert all(assigned), "every worker has a session"
    assert {k for ks in assigned for k in ks} == set(keys), "every session is used"
    sharing = max(sum(key in ks for ks in assigned) for key in keys)
    assert sharing == (-(-workers // sessions) if sessions < workers else 1)


def test_session_keys() -> None:
    assert ConcurrentConfig(session_key="main", sessions=1).session_keys() == ["main"]
    assert ConcurrentConfig(session_key="main", sessions=3).session_keys() == ["main-s1", "main-s2", "main-s3"]
    cfg = ConcurrentConfig(session_key="main", sessions=3)
    assert [cfg.arrival_session(i) for i in range(1, 6)] == ["main-s1", "main-s2", "main-s3", "main-s1", "main-s2"]


def test_closed_loop_on_one_session_contends() -> None:
    cfg = ConcurrentConfig(calls=12, concurrency=4, sessions=1, settle=0)
    result, fake, observer = asyncio.run(probe(cfg))
    assert isinstance(result, ConcurrentResult) and result.concurrency is not None
    assert [r.index for r in result.records] == list(range(1, 13))  # call order, whatever order they ended in
    assert len(observer.finished) == 12 and fake.max_in_flight == 4
    classes = {r.cls for r in result.records}
    assert CallClass.REAL in classes and CallClass.FAST_FAIL in classes
    assert all(isinstance(r, ConcurrentCallRecord) and r.start_delay_ms is None for r in result.records)
    strips = result.concurrency.sessions
    assert list(strips) == [cfg.session_key] and strips[cfg.session_key].calls == 12
    assert strips[cfg.session_key].strip == result.summary.strip
    assert result.concurrency.calls_per_s > result.concurrency.real_per_s > 0
    # Every drain failure names the one session and happened while some call was in flight.
    assert result.summary.log_counts["followup queue drain failed"] > 0
    for match in result.log_matches:
        owner = next(r for r in result.records if r.index == match.call)
        assert owner.started_at <= match.at <= owner.ended_at


def test_closed_loop_with_a_session_per_worker_is_all_real() -> None:
    cfg = ConcurrentConfig(calls=16, concurrency=4, sessions=4)
    result, fake, _ = asyncio.run(probe(cfg))
    assert result.summary.all_real and result.summary.log_counts["followup queue drain failed"] == 0
    assert fake.max_in_flight == 4
    assert isinstance(result, ConcurrentResult) and result.concurrency is not None
    assert {k: s.calls for k, s in result.concurrency.sessions.items()} == {k: 4 for k in cfg.session_keys()}
    assert all(s.pattern == "all-pass" for s in result.concurrency.sessions.values())


def test_closed_loop_duration_stops_launching() -> None:
    cfg = ConcurrentConfig(calls=1000, concurrency=2, sessions=2, duration=0.2)
    t0 = time.monotonic()
    result, _, _ = asyncio.run(probe(cfg, latency=0.05))
    assert 2 <= len(result.records) < 20
    assert time.monotonic() - t0 < 2


def test_open_loop_starts_on_schedule() -> None:
    cfg = ConcurrentConfig(calls=10, concurrency=10, sessions=10, rate=50)
    result, _, _ = asyncio.run(probe(cfg, latency=0.05))
    starts = [r.started_at for r in result.records]
    assert result.summary.all_real
    assert 9 / 50 * 0.8 <= starts[-1] - starts[0] <= 9 / 50 + 0.15
    assert isinstance(result, ConcurrentResult) and result.concurrency is not None
    assert result.concurrency.mode == "open" and result.concurrency.late_starts == 0
    assert all(isinstance(r, ConcurrentCallRecord) and r.start_delay_ms is not None for r in result.records)


def test_open_loop_cap_delays_starts_and_says_so() -> None:
    cfg = ConcurrentConfig(calls=5, concurrency=1, sessions=1, rate=100)
    result, fake, _ = asyncio.run(probe(cfg, latency=0.05))
    assert fake.max_in_flight == 1 and result.summary.all_real
    assert isinstance(result, ConcurrentResult) and result.concurrency is not None
    assert result.concurrency.late_starts >= 3
    assert result.concurrency.max_start_delay_ms is not None and result.concurrency.max_start_delay_ms > LATE_START_MS


def test_open_loop_duration_bounds_arrivals() -> None:
    cfg = ConcurrentConfig(calls=1000, concurrency=50, sessions=50, rate=100, duration=0.1)
    result, _, _ = asyncio.run(probe(cfg, latency=0.02))
    assert 5 <= len(result.records) <= 11


@pytest.mark.parametrize("rate", [None, 200.0])
def test_a_lost_target_stops_every_call_and_keeps_the_finished_ones(rate: float | None) -> None:
    cfg = ConcurrentConfig(calls=50, concurrency=3, sessions=3, rate=rate)
    observer = Observer()

    async def go() -> ProbeEngine:
        logs = LogWatcher()
        fake = FakeGateway(logs, fail_at=7)
        engine = ProbeEngine(fake, TargetInfo(target="fake"), witness=fake, logs=logs, observer=observer)
        with pytest.raises(TargetUnreachable):
            await engine.run(cfg)
        return engine

    engine = asyncio.run(go())
    assert engine.result is not None and engine.result.summary.interrupted
    assert 1 <= len(engine.result.records) <= 6 and observer.results == [engine.result]


def test_sequential_goes_through_the_same_call_path() -> None:
    result, fake, _ = asyncio.run(probe(SequentialConfig(calls=3, gap=0.01)))
    assert result.summary.all_real and fake.max_in_flight == 1
    assert type(result) is ProbeResult and all(type(r) is CallRecord for r in result.records)


def _record(index: int, start: float, end: float, session: str = "main") -> CallRecord:
    return CallRecord(index=index, session_key=session, run_id=f"r{index}", nonce=f"n{index}", started_at=start,
                      ended_at=end, latency_ms=(end - start) * 1000, cls=CallClass.REAL, evidence=Evidence.WITNESS,
                      llm_reached=True, reply="", state="final")


def _match(at: float, line: str = "boom") -> LogMatch:
    return LogMatch(pattern="boom", line=line, source="stderr", at=at)


def test_log_attribution_sequential_window_rule() -> None:
    records = [_record(1, 10, 11), _record(2, 12, 13), _record(3, 14, 15)]
    matches = [_match(9), _match(10.5), _match(11.5), _match(13.5), _match(20)]
    attach_log_matches(records, matches)
    assert [m.call for m in matches] == [None, 1, 1, 2, 3]


def test_log_attribution_prefers_the_latest_call_in_flight() -> None:
    # 1: 10-20 (long), 2: 11-12, 3: 13-14; a match at 15 falls after 3 ended, while 1 is still in flight.
    records = [_record(1, 10, 20, "a"), _record(2, 11, 12, "b"), _record(3, 13, 14, "a")]
    matches = [_match(11.5), _match(15), _match(25)]
    attach_log_matches(records, matches)
    assert [m.call for m in matches] == [2, 1, 3]


def test_log_attribution_follows_the_session_a_line_names() -> None:
    records = [_record(1, 10, 20, "main-s1"), _record(2, 11, 21, "main-s10"), _record(3, 12, 13, "main-s2")]
    matches = [
        _match(12.5, "drain failed for main-s1: busy"),  # s1, not s10 (a prefix of it)
        _match(12.5, "drain failed for MAIN-S10: busy"),
        _match(12.5, "something else"),  # no session named: the latest started in flight
        _match(30, "drain failed for main-s2"),  # nothing in flight on s2: its latest call before
    ]
    attach_log_matches(records, matches)
    assert [m.call for m in matches] == [1, 2, 3, 3]
    assert [len(r.log_matches) for r in records] == [1, 1, 2]


def test_pooled_concurrency_sums_wall_time() -> None:
    cfg = ConcurrentConfig(calls=2, concurrency=2, sessions=2, session_key="k")
    run1 = [_record(1, 0, 1, "k-s1"), _record(2, 0, 2, "k-s2")]
    cfg2 = ConcurrentConfig(calls=2, concurrency=2, sessions=2, session_key="k-r2")
    run2 = [_record(1, 5, 7, "k-r2-s1"), _record(2, 5, 6, "k-r2-s2")]
    run2[1].cls = CallClass.FAST_FAIL
    pooled = pooled_concurrency([concurrency_stats(run1, cfg), concurrency_stats(run2, cfg2)])
    assert pooled is not None
    assert pooled.wall_s == 4 and pooled.calls_per_s == 1 and pooled.real_per_s == 0.75
    assert list(pooled.sessions) == ["k-s1", "k-s2", "k-r2-s1", "k-r2-s2"]
    assert pooled.sessions["k-r2-s2"].strip == "✗"
    assert pooled_concurrency([]) is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"concurrency": 0}, "-c must be between 1 and 1000"),
        ({"sessions": 0}, "--sessions must be between 1 and 1000"),
        ({"rate": 0.0}, "--rate must be between 0 and 10000"),
        ({"duration": -1.0}, "--duration must be between 0 and 86400"),
        ({"calls": 0}, "-n must be between 1 and 100000"),
    ],
)
def test_concurrent_config_validation(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        validate_config(ConcurrentConfig(**changes))


class QueueingGateway(Transport):
    """Every even call's turn is queued: it ends at once with an empty final, and its message reaches the
    LLM (the witness) a little later. Odd calls are real and reply with their nonce."""

    def __init__(self) -> None:
        self.requests = WitnessLog()
        self.late: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def send(self, session_key: str, message: str, idempotency_key: str, timeout: float) -> ChatOutcome:
        started_at = time.time()
        nonce = NONCE.search(message).group()  # type: ignore[union-attr]
        if int(nonce.split("-")[1]) % 2 == 0:
            self.late.append(asyncio.create_task(self._run_late(nonce)))
            text = ""
        else:
            self.requests.append(time.time(), (nonce,), "m", True)
            await asyncio.sleep(0.01)
            text = nonce
        return ChatOutcome(run_id=idempotency_key, state="final", text=text, started_at=started_at, ended_at=time.time(),
                           latency_ms=(time.time() - started_at) * 1000)

    async def _run_late(self, nonce: str) -> None:
        await asyncio.sleep(0.05)
        self.requests.append(time.time(), (nonce,), "m", True)


def test_late_runs_are_found_while_the_witness_index_keeps_only_open_calls() -> None:
    async def main() -> tuple[ProbeResult, ProbeEngine]:
        logs = LogWatcher()
        gateway = QueueingGateway()
        engine = ProbeEngine(gateway, TargetInfo(target="fake", witness=True), witness=gateway, logs=logs,
                             observer=Observer())
        result = await engine.run(SequentialConfig(calls=6, settle=0.3))
        await asyncio.gather(*gateway.late)
        return result, engine

    result, engine = asyncio.run(main())
    real, queued = result.records[::2], result.records[1::2]
    assert all(r.cls is CallClass.REAL and r.fate is None for r in real)
    # The reference LLM's reply is the nonce: the record keeps one string for both.
    assert all(r.reply is r.nonce for r in real)
    assert all(r.cls is CallClass.FAST_FAIL and r.fate is Fate.RAN_LATE and r.late and r.late.via == "witness"
               for r in queued)
    # A real call's witness times are not needed after it is classified; an open call's decided its fate.
    assert set(engine._witnessed) == {r.nonce for r in queued}


def test_a_call_is_ok_when_real_and_a_scripted_call_when_its_step_expects_its_class() -> None:
    fast_fail = replace(_record(1, 10, 11), cls=CallClass.FAST_FAIL, llm_reached=False)
    assert _record(2, 10, 11).ok and not fast_fail.ok
    plain = {f.name: getattr(fast_fail, f.name) for f in fields(fast_fail)}
    assert ScriptCallRecord(**plain, step=2, expect=["fast_fail"]).ok  # expected: a good call to a verdict
    assert not ScriptCallRecord(**plain, step=2, expect=["real"]).ok
    assert ScriptCallRecord(**plain, step=2).ok  # no expectation: any class


def test_a_final_from_before_a_call_was_sent_is_not_its_late_reply() -> None:
    """A hostile gateway sends, while call 1 runs, a final under its own runId carrying call 2's nonce; call 2
    then gets an empty final. Before: call 2 was 'ran_late' with a late reply 300 ms before it was sent."""
    from tests.transports.test_ws import chat_gateway, final, run_engine

    cfg = SequentialConfig(calls=2, settle=0.3, probe_id="fixed1")

    async def script(ws: Any, run_id: str, message: str) -> None:
        if run_id == cfg.idempotency_key(1):
            await final(ws, "srv-forged", cfg.nonce(2))  # the forged "late reply" of call 2, before call 2 exists
            await asyncio.sleep(0.05)
            await final(ws, run_id, cfg.nonce(1))
        else:
            await final(ws, run_id, "")

    result = asyncio.run(run_engine(chat_gateway(script), cfg, Observer()))
    second = result.records[1]
    assert result.records[0].cls is CallClass.REAL and second.cls is not CallClass.REAL
    assert second.late is None and second.fate is Fate.UNKNOWN

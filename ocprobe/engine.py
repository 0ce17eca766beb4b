"""The probe engine: sends calls through a transport, classifies them, watches what happens after.

It knows nothing of the terminal: it reports each finished call and the final result to an observer.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ocprobe.classify import calibrated_floor, classify, name_pattern, percentile, sequence_strip
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
)
from ocprobe.transports.base import Transport

DEFAULT_MESSAGE = "Reply with exactly this token and nothing else: {nonce}"
DEFAULT_SESSION_KEY = "agent:test:main"
WAIT_MODES = ("final", "agent.wait")
SETTLE_POLL = 0.05
SETTLE_MIN_QUIET = 2.0  # longer than the gateways' follow-up debounce (0.5-1 s) so a queued turn is seen
SETTLE_CAP = 60.0


class Witness(Protocol):
    """Which turns reached the LLM: ocprobe's own provider, in process or read over HTTP."""

    @property
    def requests(self) -> list[WitnessRequest]: ...


class ProbeObserver(Protocol):
    def call_finished(self, record: CallRecord) -> None: ...

    def run_finished(self, result: ProbeResult) -> None: ...


@dataclass
class SequentialConfig:
    calls: int = 10
    session_key: str = DEFAULT_SESSION_KEY
    message: str = DEFAULT_MESSAGE
    gap: float = 0.0
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
        self.logs = logs
        self.observer = observer
        self.records: list[CallRecord] = []
        self._foreign: list[ChatEvent] = []
        self._log_offset = len(logs.matches)
        self.result: ProbeResult | None = None  # set when the run ends, also when it is cut short  # with --repeat, earlier runs' matches are theirs

    async def run_sequential(self, cfg: SequentialConfig) -> ProbeResult:
        """Run the probe; on cancellation or a lost target, report what was measured, then re-raise."""
        try:
            for index in range(1, cfg.calls + 1):
                record = await self._call(cfg, index)
                self.records.append(record)
                self.observer.call_finished(record)
                if cfg.gap and index < cfg.calls:
                    await asyncio.sleep(cfg.gap)
            await self._settle(cfg)
        except BaseException:
            self.result = await self._result(cfg, interrupted=True)
            self.observer.run_finished(self.result)
            raise
        self.result = await self._result(cfg, interrupted=False)
        self.observer.run_finished(self.result)
        return self.result

    async def _call(self, cfg: SequentialConfig, index: int) -> CallRecord:
        nonce, run_id = cfg.nonce(index), cfg.idempotency_key(index)
        outcome = await self.transport.send(cfg.session_key, cfg.message.format(i=index, nonce=nonce), run_id, cfg.timeout)
        if cfg.wait == "agent.wait" and outcome.state == "final":
            await self.transport.wait_run(run_id, cfg.timeout)
        hits = None
        if self.witness is not None:
            hits = sum(1 for r in self.witness.requests if nonce in r.nonces and r.at <= outcome.ended_at)
        floor = cfg.floor_ms if cfg.floor_ms is not None else calibrated_floor(self._real_latencies())
        verdict = classify(outcome, nonce, witness_hits=hits, floor_ms=floor)
        error = outcome.error_message
        if verdict.cls is CallClass.WRONG:
            error = error or self._foreign_nonce_note(outcome.text, cfg, index)
        self._foreign.extend(self.transport.take_foreign_events())
        return CallRecord(
            index=index,
            session_key=cfg.session_key,
            run_id=run_id,
            nonce=nonce,
            started_at=outcome.started_at,
            ended_at=outcome.ended_at,
            latency_ms=round(outcome.latency_ms, 3),
            cls=verdict.cls,
            evidence=verdict.evidence,
            llm_reached=verdict.llm_reached,
            reply=outcome.text,
            state=outcome.state,
            error=error,
            run=cfg.run,
        )

    def _real_latencies(self) -> list[float]:
        return [r.latency_ms for r in self.records if r.cls is CallClass.REAL]

    @staticmethod
    def _foreign_nonce_note(text: str, cfg: SequentialConfig, index: int) -> str | None:
        """A reply carrying another call's nonce is a reply delivered out of order."""
        for other in range(1, cfg.calls + 1):
            if other != index and cfg.nonce(other) in text:
                return f"reply carries the nonce of call {other} (out of order)"
        return None

    # -- after the last call ----------------------------------------------------------------
    def _pending(self) -> list[CallRecord]:
        """Calls whose message did not reach the LLM while they ran: their fate is still open."""
        return [r for r in self.records if r.cls is not CallClass.REAL and r.llm_reached is not True]

    async def _settle(self, cfg: SequentialConfig) -> None:
        """Watch for queued turns running late until every open call is resolved or all is quiet."""
        if not self._pending():
            return
        real = self._real_latencies()
        quiet = cfg.settle if cfg.settle is not None else max(SETTLE_MIN_QUIET, 3 * statistics.median(real) / 1000 if real else 0)
        start = last_activity = time.monotonic()
        seen = (len(self.witness.requests) if self.witness else 0, len(self._foreign))
        while True:
            await asyncio.sleep(SETTLE_POLL)
            self._foreign.extend(self.transport.take_foreign_events())
            now_seen = (len(self.witness.requests) if self.witness else 0, len(self._foreign))
            now = time.monotonic()
            if now_seen != seen:
                seen, last_activity = now_seen, now
            # Done early once every open call's late reply has arrived (the witness sees a queued turn
            # before its final); otherwise the quiet period decides.
            if all(any(r.nonce in e.text for e in self._foreign) for r in self._pending()):
                return
            if now - last_activity >= quiet or now - start >= max(quiet, min(SETTLE_CAP, 10 * quiet)):
                return

    def _late_reply(self, record: CallRecord) -> LateReply | None:
        witnessed = [
            r.at for r in (self.witness.requests if self.witness else []) if record.nonce in r.nonces and r.at > record.ended_at
        ]
        finals = [e for e in self._foreign if record.nonce in e.text]
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

    async def _result(self, cfg: SequentialConfig, *, interrupted: bool) -> ProbeResult:
        try:
            await self.logs.poll()
        except Exception:  # an unreadable log at the very end must not cost the measured calls
            pass
        self._foreign.extend(self.transport.take_foreign_events())
        for record in self._pending():
            record.late = self._late_reply(record)
            record.fate = Fate.RAN_LATE if record.late else (Fate.LOST if self.witness else Fate.UNKNOWN)
        matches = self.logs.matches[self._log_offset :]
        log_counts = dict.fromkeys(self.logs.counts(), 0)
        for match in matches:
            log_counts[match.pattern] += 1
        attach_log_matches(self.records, matches)
        attributed = {r.late.run_id for r in self.records if r.late and r.late.run_id}
        floor = cfg.floor_ms if cfg.floor_ms is not None else calibrated_floor(self._real_latencies())
        return ProbeResult(
            target=self.target,
            records=self.records,
            summary=summarize(self.records, log_counts, floor, interrupted=interrupted),
            log_matches=matches,
            unattributed_finals=[e for e in self._foreign if e.run_id not in attributed],
        )


def attach_log_matches(records: Sequence[CallRecord], matches: Sequence[LogMatch]) -> None:
    """A match belongs to the call whose window holds it: from its start to the next call's start."""
    ordered = sorted(records, key=lambda r: r.started_at)
    for record in ordered:
        record.log_matches = []
    for match in matches:
        owner = None
        for record in ordered:
            if record.started_at <= match.at:
                owner = record
            else:
                break
        match.call = owner.index if owner else None
        if owner is not None:
            owner.log_matches.append(match)


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

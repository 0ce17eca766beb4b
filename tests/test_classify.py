"""Classification rules, evidence order, and the names of pass/fail sequences."""

from __future__ import annotations

import pytest

from ocprobe.classify import calibrated_floor, classify, name_pattern, percentile, sequence_strip
from ocprobe.models import CallClass, ChatOutcome, Evidence

NONCE = "ok-3-abc123"


def outcome(state: str = "final", text: str = "", latency_ms: float = 1000.0) -> ChatOutcome:
    return ChatOutcome(run_id="r", state=state, text=text, latency_ms=latency_ms)


@pytest.mark.parametrize(
    ("result", "hits", "floor", "expected"),
    [
        # With a witness, it decides whether the LLM was reached.
        (outcome(text=NONCE), 1, None, (CallClass.REAL, Evidence.WITNESS, True)),
        (outcome(text=""), 0, None, (CallClass.FAST_FAIL, Evidence.WITNESS, False)),
        (outcome(text=NONCE, latency_ms=5), 0, None, (CallClass.FAST_FAIL, Evidence.WITNESS, False)),
        (outcome(text=""), 1, None, (CallClass.EMPTY, Evidence.WITNESS, True)),
        (outcome(text="something else"), 1, None, (CallClass.WRONG, Evidence.WITNESS, True)),
        # Without one: the nonce, then the latency floor.
        (outcome(text=f"[ts] {NONCE}"), None, None, (CallClass.REAL, Evidence.NONCE, True)),
        (outcome(text="", latency_ms=300), None, 600.0, (CallClass.FAST_FAIL, Evidence.LATENCY_FLOOR, False)),
        (outcome(text="", latency_ms=900), None, 600.0, (CallClass.EMPTY, Evidence.LATENCY_FLOOR, None)),
        (outcome(text="hi", latency_ms=900), None, 600.0, (CallClass.WRONG, Evidence.LATENCY_FLOOR, None)),
        (outcome(text=""), None, None, (CallClass.EMPTY, Evidence.NONCE, None)),
        # The transport's word for errors and timeouts.
        (outcome(state="timeout"), 0, None, (CallClass.TIMEOUT, Evidence.TRANSPORT, False)),
        (outcome(state="error"), None, None, (CallClass.ERROR, Evidence.TRANSPORT, None)),
        (outcome(state="aborted"), 1, None, (CallClass.ERROR, Evidence.TRANSPORT, True)),
    ],
)
def test_classify(result: ChatOutcome, hits: int | None, floor: float | None, expected: tuple[CallClass, Evidence, bool | None]) -> None:
    verdict = classify(result, NONCE, witness_hits=hits, floor_ms=floor)
    assert (verdict.cls, verdict.evidence, verdict.llm_reached) == expected


def test_floor_is_half_the_median_real_round_trip() -> None:
    assert calibrated_floor([]) is None
    assert calibrated_floor([1000.0, 1200.0, 5000.0]) == 600.0


def test_percentile_interpolates() -> None:
    assert percentile([1.0], 95) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([0.0, 10.0], 95) == pytest.approx(9.5)


@pytest.mark.parametrize(
    ("passed", "name"),
    [
        ([True] * 4, "all-pass"),
        ([False] * 3, "all-fail"),
        ([True, False, False, False], "first-only"),
        ([True, False] * 5, "alternating"),
        ([False, True, False, True], "alternating"),
        ([True, False, True], "intermittent"),  # too short to call a pattern
        ([True, True, False, True], "intermittent"),
        ([], "empty"),
    ],
)
def test_pattern_names(passed: list[bool], name: str) -> None:
    assert name_pattern(passed) == name


def test_strip() -> None:
    assert sequence_strip([True, False, True]) == "✔✗✔"


# -- an echo is no reply -----------------------------------------------------------------------------
PROMPT = "Reply with exactly this token and nothing else: ok-1-abc"


@pytest.mark.parametrize("reply", [PROMPT, f"You said: {PROMPT}", "reply  with exactly this token and nothing else: ok-1-abc".replace("r", "R", 1),
                                   f"[Tue 2026-11-24 15:21 UTC] {PROMPT}\n"])
def test_a_reply_echoing_the_prompt_is_not_real_without_a_witness(reply: str) -> None:
    outcome = ChatOutcome(run_id="r", state="final", text=reply, latency_ms=5.0)
    verdict = classify(outcome, "ok-1-abc", witness_hits=None, floor_ms=None, message=PROMPT)
    assert verdict.echo and verdict.cls is CallClass.WRONG and verdict.llm_reached is None
    fast = classify(outcome, "ok-1-abc", witness_hits=None, floor_ms=100.0, message=PROMPT)
    assert fast.cls is CallClass.FAST_FAIL and fast.evidence is Evidence.LATENCY_FLOOR


def test_the_bare_nonce_or_a_sentence_around_it_is_still_real() -> None:
    for reply in ("ok-1-abc", "Sure! ok-1-abc", "The token is ok-1-abc."):
        outcome = ChatOutcome(run_id="r", state="final", text=reply, latency_ms=900.0)
        verdict = classify(outcome, "ok-1-abc", witness_hits=None, floor_ms=None, message=PROMPT)
        assert verdict.cls is CallClass.REAL and not verdict.echo


def test_the_witness_still_decides_when_there_is_one() -> None:
    outcome = ChatOutcome(run_id="r", state="final", text=PROMPT, latency_ms=900.0)
    assert classify(outcome, "ok-1-abc", witness_hits=1, floor_ms=None, message=PROMPT).cls is CallClass.REAL


def test_a_prompt_that_is_only_the_nonce_cannot_be_told_from_an_echo() -> None:
    outcome = ChatOutcome(run_id="r", state="final", text="ok-1-abc", latency_ms=900.0)
    assert classify(outcome, "ok-1-abc", witness_hits=None, floor_ms=None, message="ok-1-abc").cls is CallClass.REAL

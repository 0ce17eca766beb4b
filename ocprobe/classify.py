"""Give every call an honest class, and say which evidence decided it.

Evidence order: the provider witness (ocprobe runs the LLM, so it knows whether the turn reached it),
then the nonce in the reply, then a latency floor for targets where no witness exists.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ocprobe.models import CallClass, ChatOutcome, Evidence

# Without a witness, a reply faster than this fraction of the typical real round trip had no LLM call.
FLOOR_FRACTION = 0.5


# An echo is recognised by the prompt's own words around the nonce: this many characters of them at least.
ECHO_MIN_CHARS = 8


@dataclass(frozen=True)
class Verdict:
    cls: CallClass
    evidence: Evidence
    llm_reached: bool | None
    echo: bool = False  # the reply repeats the prompt: its nonce proves nothing


def echoes(text: str, message: str, nonce: str) -> bool:
    """Whether ``text`` repeats the prompt ``message`` (words of it besides the nonce), as a gateway or relay
    that echoes its input does: the nonce is in the prompt, so such a reply carries it without any LLM."""
    squeezed = " ".join(text.split())
    parts = [" ".join(part.split()) for part in message.split(nonce)]
    return any(len(part.replace(" ", "")) >= ECHO_MIN_CHARS and part in squeezed for part in parts)


def classify(outcome: ChatOutcome, nonce: str, *, witness_hits: int | None, floor_ms: float | None,
             message: str = "") -> Verdict:
    """``witness_hits``: provider requests carrying the nonce that arrived before the reply ended, or
    None when ocprobe does not run the target's LLM. ``message``: what was sent, to tell an echo from a reply."""
    reached = None if witness_hits is None else witness_hits > 0
    if outcome.state == "timeout":
        return Verdict(CallClass.TIMEOUT, Evidence.TRANSPORT, reached)
    if outcome.state != "final":
        return Verdict(CallClass.ERROR, Evidence.TRANSPORT, reached)
    text = outcome.text.strip()
    has_nonce = nonce in text
    if reached is not None:
        if not reached:
            return Verdict(CallClass.FAST_FAIL, Evidence.WITNESS, False)
        if has_nonce:
            return Verdict(CallClass.REAL, Evidence.WITNESS, True)
        return Verdict(CallClass.WRONG if text else CallClass.EMPTY, Evidence.WITNESS, True)
    echo = has_nonce and bool(message) and echoes(text, message, nonce)
    if has_nonce and not echo:
        return Verdict(CallClass.REAL, Evidence.NONCE, True)
    if echo:  # judged as a reply without the nonce: by the floor when there is one
        cls = CallClass.FAST_FAIL if floor_ms is not None and outcome.latency_ms < floor_ms else CallClass.WRONG
        return Verdict(cls, Evidence.LATENCY_FLOOR if floor_ms is not None else Evidence.NONCE,
                       False if cls is CallClass.FAST_FAIL else None, echo=True)
    if floor_ms is not None and outcome.latency_ms < floor_ms:
        return Verdict(CallClass.FAST_FAIL, Evidence.LATENCY_FLOOR, False)
    if floor_ms is not None:
        return Verdict(CallClass.WRONG if text else CallClass.EMPTY, Evidence.LATENCY_FLOOR, None)
    return Verdict(CallClass.WRONG if text else CallClass.EMPTY, Evidence.NONCE, None)


def calibrated_floor(real_latencies_ms: Sequence[float]) -> float | None:
    """The floor from the real round trips observed so far, or None before the first one."""
    if not real_latencies_ms:
        return None
    return FLOOR_FRACTION * statistics.median(real_latencies_ms)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def sequence_strip(passed: Sequence[bool]) -> str:
    return "".join("✔" if ok else "✗" for ok in passed)


def name_pattern(passed: Sequence[bool]) -> str:
    """A name for the pass/fail sequence, so an operator sees the shape of a regression at once."""
    if not passed:
        return "empty"
    if all(passed):
        return "all-pass"
    if not any(passed):
        return "all-fail"
    if passed[0] and not any(passed[1:]):
        return "first-only"
    if len(passed) >= 4 and all(passed[i] != passed[i + 1] for i in range(len(passed) - 1)):
        return "alternating"
    return "intermittent"

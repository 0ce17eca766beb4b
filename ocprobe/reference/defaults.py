"""Defaults and choices of the reference gateway and provider, apart from their servers: the CLI shows them
in --help and checks options against them without importing aiohttp."""

from __future__ import annotations

from dataclasses import dataclass

QUEUE_MODES = ("steer", "collect")  # steer: one run per queued turn (5.3); collect: one run for all (4.26)
DEFAULT_TEARDOWN_MS = 50.0  # the race profile's window: a parameter to sweep, not a measurement of a release
DEFAULT_QUEUED_ACK_MS = 300.0  # the real gateway's empty final came 260-320 ms after a queued send (5.3)
DEFAULT_DEBOUNCE_MS = 500.0  # follow-up queue debounce, the real default since 2026.4.29
# Long enough that the race profile's drain retries land inside real runs, as with a real LLM.
DEFAULT_LATENCY_MS = 250.0
# The provider's API key reaches the gateway child through this variable, never its command line.
PROVIDER_KEY_ENV = "OCPROBE_PROVIDER_API_KEY"
#: The WebSocket protocol versions the reference gateway can speak; the newest is what current releases speak.
PROTOCOLS = (3, 4)
NEWEST_PROTOCOL = max(PROTOCOLS)


@dataclass(frozen=True)
class Profile:
    """How the reference gateway behaves: whether the reply-run guard outlives the final (#77485), for how
    long, how soon a queued send gets its empty final, and the protocol it speaks by default."""

    name: str
    race: bool  # the final is broadcast before the guard is cleared (the #77485 bug)
    teardown_ms: tuple[float, float]  # how long the guard outlives the final: drawn uniformly per run
    queued_ack_ms: float
    protocol: int
    description: str
    calibration: str = ""  # how it was matched to a real release, where it models one

    @property
    def teardown_text(self) -> str:
        low, high = self.teardown_ms
        return f"{low:g}" if low == high else f"{low:g}-{high:g}"


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("healthy", race=False, teardown_ms=(0.0, 0.0), queued_ack_ms=DEFAULT_QUEUED_ACK_MS,
            protocol=NEWEST_PROTOCOL, description="the guard is cleared before the final: no race"),
    Profile("reply-run-race", race=True, teardown_ms=(DEFAULT_TEARDOWN_MS, DEFAULT_TEARDOWN_MS),
            queued_ack_ms=DEFAULT_QUEUED_ACK_MS, protocol=NEWEST_PROTOCOL,
            description="the #77485 mechanism with a wide window (--teardown-ms) to study it"),
    # Real 2026.5.3 here (docs/compatibility.md, 2026-12-08): after the final, gap 0 failed 6/12 calls (the
    # alternation), 5 ms 4/12, 10 ms 2/12, 20 ms 0/12 (the day before: 6, 4, 0, 0 of 12); empty finals after
    # 260-320 ms. A window uniform in 2-15 ms gives those rates (half the calls at most: the alternation; below
    # 2 ms the next send could miss the window, which the real release never did at gap 0).
    Profile("openclaw-5.3", race=True, teardown_ms=(2.0, 15.0), queued_ack_ms=300.0, protocol=3,
            description="2026.5.3: protocol 3, the race with the window measured on the real release",
            calibration="ocprobe sweep --target openclaw@2026.5.3 --gaps 0,0.005,0.01,0.02 --repeat 2 -n 6"),
    # Real 2026.9.6 here: gap 0 10/10 real; concurrent -n 12 -c 3 --sessions 1: 1 real, 11 empty finals
    # after 111-371 ms (median ~170), all run late; no drain error logged (FollowupRunDeferredError is silent).
    Profile("openclaw-9.6", race=False, teardown_ms=(0.0, 0.0), queued_ack_ms=170.0, protocol=4,
            description="2026.9.6: protocol 4, no race at gap 0, same-session sends queued and run late",
            calibration="ocprobe concurrent --target openclaw@2026.9.6 -n 12 -c 3 --sessions 1"),
)}
PROFILE_NAMES = tuple(PROFILES)

"""Defaults and choices of the reference gateway and provider, apart from their servers: the CLI shows them
in --help and checks options against them without importing aiohttp."""

PROFILES = ("healthy", "reply-run-race")
QUEUE_MODES = ("steer", "collect")  # steer: one run per queued turn (5.3); collect: one run for all (4.26)
DEFAULT_TEARDOWN_MS = 50.0  # the order of the window measured on the real gateway
DEFAULT_QUEUED_ACK_MS = 300.0  # the real gateway's empty final came 260-320 ms after a queued send
DEFAULT_DEBOUNCE_MS = 500.0  # follow-up queue debounce, the real default since 2026.4.29
# Long enough that the race profile's drain retries land inside real runs, as with a real LLM.
DEFAULT_LATENCY_MS = 250.0
# The provider's API key reaches the gateway child through this variable, never its command line.
PROVIDER_KEY_ENV = "OCPROBE_PROVIDER_API_KEY"

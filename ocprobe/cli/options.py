"""Options shared by the probe commands, declared once (``Annotated`` aliases) so that ``sequential``,
``concurrent``, ``sweep`` and ``bisect`` spell, document and validate them the same way."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ocprobe.reference.fault_specs import describe_faults
from ocprobe.reference.defaults import DEFAULT_LATENCY_MS, DEFAULT_TEARDOWN_MS, NEWEST_PROTOCOL, PROFILE_NAMES, PROTOCOLS

if TYPE_CHECKING:
    from ocprobe.targets import TargetSpec


class WaitMode(str, Enum):
    final = "final"
    agent_wait = "agent.wait"


# The reference gateway's profiles, as the table in reference/defaults.py names them.
Profile = Enum("Profile", {name.replace("-", "_").replace(".", "_"): name for name in PROFILE_NAMES}, type=str)  # type: ignore[misc]
ProtocolVersion = Enum("ProtocolVersion", {f"v{v}": str(v) for v in PROTOCOLS}, type=str)  # type: ignore[misc]


class TransportName(str, Enum):
    ws = "ws"
    relay = "relay"
    openai = "openai"


class QueueMode(str, Enum):
    steer = "steer"
    collect = "collect"


# What a call is.
SessionKey = Annotated[str, typer.Option("--session-key", help="Session key (base key for commands that use several); 'auto' picks a fresh one. ocprobe warns when the session already has history: turns still queued there would poison the probe.")]
Message = Annotated[str, typer.Option("--message", help="Message template; {i} is the call number, {nonce} the token the reply must carry.")]
Wait = Annotated[WaitMode, typer.Option("--wait", help="What ends a call: the final chat event, or agent.wait after it.")]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds a call may take before it is a timeout.")]
FloorMs = Annotated[Optional[float], typer.Option("--floor-ms", help="Latency floor for targets without witness; default: half the median real round trip.")]
Settle = Annotated[Optional[float], typer.Option("--settle", help="Quiet seconds that end the watch for late replies after the last call (default: max(2, 3 real round trips)).")]

# Where calls go.
Target = Annotated[str, typer.Option("--target", help="'embedded' (reference gateway and provider started here), openclaw@VERSION (installed and launched by ocprobe), ws://HOST:PORT, or http(s)://HOST:PORT/PATH (a relay; an OpenAI endpoint when PATH ends with /v1 or /v1/chat/completions).")]
Transport = Annotated[Optional[TransportName], typer.Option("--transport", help="ws (OpenClaw WebSocket), relay (HTTP POST of a JSON body) or openai (POST /v1/chat/completions). Default: from the target URL; ws otherwise.")]
RelayBodyTemplate = Annotated[Optional[str], typer.Option("--relay-body", help='Relay: JSON body template with {session_key}, {message}, {idempotency_key} (default {"sessionKey": {session_key}, "message": {message}}).')]
ReplyPath = Annotated[Optional[str], typer.Option("--reply-path", help="Relay: dotted path to the reply text in the answer, e.g. reply, data.text, choices.0.message.content (default reply).")]
OpenAIModel = Annotated[Optional[str], typer.Option("--openai-model", help="OpenAI transport: the model field (default openclaw).")]
NoStream = Annotated[bool, typer.Option("--no-stream", help="OpenAI transport: ask for one JSON completion instead of an SSE stream.")]
TokenEnv = Annotated[str, typer.Option("--token-env", help="Environment variable holding the gateway token.")]
TokenFile = Annotated[Optional[Path], typer.Option("--token-file", help="File holding the gateway token.")]
AllowInsecure = Annotated[bool, typer.Option("--allow-insecure", help="Allow ws:// or http:// to a non-loopback host (token in clear text).")]

# The embedded reference stack, and ocprobe-launched OpenClaw.
ProfileOption = Annotated[Profile, typer.Option("--profile", help="Embedded gateway behaviour: healthy, reply-run-race (the #77485 race, wide window), or a release's calibrated behaviour (openclaw-5.3, openclaw-9.6).")]
TeardownMs = Annotated[Optional[float], typer.Option("--teardown-ms", help=f"Embedded race profiles: how long the guard outlives the final (default: the profile's; {DEFAULT_TEARDOWN_MS:g} for reply-run-race).")]
ProtocolOption = Annotated[Optional[ProtocolVersion], typer.Option("--protocol", help=f"Embedded gateway: the WebSocket protocol it speaks (default: the profile's; {NEWEST_PROTOCOL}, as current releases, for healthy and reply-run-race).")]
LatencyMs = Annotated[Optional[float], typer.Option("--latency-ms", help=f"LLM latency of ocprobe's provider (the witness): default {DEFAULT_LATENCY_MS:g} ms embedded, 1000 ms for openclaw@VERSION.")]
JitterMs = Annotated[float, typer.Option("--jitter-ms", help="Embedded provider: added uniform random latency.")]
DropQueued = Annotated[bool, typer.Option("--drop-queued", help="Embedded gateway drops queued turns instead of running them late.")]
QueueModeOption = Annotated[QueueMode, typer.Option("--queue-mode", help="Embedded gateway follow-up queue: steer (one run per queued turn, 5.3) or collect (one run for all, 4.26).")]
OpenClawConfig = Annotated[Optional[Path], typer.Option("--openclaw-config", help="openclaw@VERSION: JSON5 config fragment (agents, queue mode, plugins) merged over the generated config.")]
Fault = Annotated[list[str], typer.Option("--fault", metavar="NAME:every=N|rate=P[,seed=S][,OPTION=V]", help=f"Embedded gateway misbehaves on chosen chat.send calls (repeatable; the first listed wins a call several hit): {describe_faults()}.")]
KeepGateway = Annotated[bool, typer.Option("--keep-gateway", help="openclaw@VERSION: leave the gateway running after the probe (until Ctrl-C) and print its URL, token file and logs.")]

# What is watched, judged and written.
Log = Annotated[list[str], typer.Option("--log", help="Gateway log file or glob to watch (repeatable).")]
LogPattern = Annotated[list[str], typer.Option("--log-pattern", help="Extra regex to count in the logs (repeatable).")]
Gate = Annotated[list[str], typer.Option("--gate", help="CI gate, e.g. 'fast_fail.count == 0', 'real.p95_ms < 3000', 'log[\"ReplyRunAlreadyActiveError\"] == 0' (repeatable; see README).")]
Repeat = Annotated[int, typer.Option("--repeat", help="Run the probe R times (each on its own sessions) and pool the figures.")]
Report = Annotated[Optional[Path], typer.Option("--report", help="Write a report bundle here: calls.jsonl, summary.json, junit.xml, report.md.")]
JsonOut = Annotated[Optional[str], typer.Option("--json", help="Write one JSON record per call as it ends, then the summary; '-' for stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the summary line.")]
RunDir = Annotated[Optional[Path], typer.Option("--run-dir", help="Where gateway output goes (default: a new dir in the ocprobe cache).")]


def target_spec(params: Mapping[str, Any]) -> TargetSpec:
    """The target options among a command's parameters (pass ``locals()``) as the core's ``TargetSpec``;
    options a command does not offer keep their defaults."""
    from ocprobe.targets import EmbeddedOptions, OpenClawOptions, TargetSpec

    get = params.get
    latency_ms = get("latency_ms")
    transport = get("transport")
    return TargetSpec(
        target=params["target"], token_env=params["token_env"], token_file=params["token_file"],
        allow_insecure=params["allow_insecure"],
        embedded=EmbeddedOptions(profile=get("profile", Profile.healthy).value,
                                 teardown_ms=get("teardown_ms"),
                                 protocol=int(get("protocol").value) if get("protocol") else None,
                                 latency_ms=DEFAULT_LATENCY_MS if latency_ms is None else latency_ms,
                                 jitter_ms=get("jitter_ms", 0.0), drop_queued=get("drop_queued", False),
                                 queue_mode=get("queue_mode", QueueMode.steer).value, faults=tuple(get("fault", ()))),
        openclaw=OpenClawOptions(config_fragment=get("openclaw_config"), keep_gateway=get("keep_gateway", False),
                                 **({} if latency_ms is None else {"latency_ms": latency_ms})),
        transport=transport.value if transport else None, relay_body=get("relay_body"),
        reply_path=get("reply_path"), openai_model=get("openai_model"), openai_stream=not get("no_stream", False),
    )

"""Resolve ``--target`` into a running gateway, a connected transport and, where ocprobe runs the LLM,
a witness. ``embedded`` starts the reference provider in this process and the reference gateway as a
child process (so its stderr is watched like any real gateway's)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import socket
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ocprobe import __version__
from ocprobe.defaults import DEFAULT_TOKEN_ENV, EMBEDDED, OPENCLAW_PREFIX
from ocprobe.engine import Witness
from ocprobe.errors import TargetUnreachable, UsageError
from ocprobe.logwatch import LogWatcher
from ocprobe.models import TargetInfo
from ocprobe.openclaw.semver import is_version
from ocprobe.process import ManagedProcess
from ocprobe.reference.fault_specs import FaultSpecError, parse_faults
from ocprobe.reference.defaults import DEFAULT_LATENCY_MS, PROFILES, PROTOCOLS, PROVIDER_KEY_ENV, QUEUE_MODES
from ocprobe.secret import Redactor
from ocprobe.transports import TRANSPORT_NAMES
from ocprobe.transports.base import Transport

if TYPE_CHECKING:  # imported where it is used: aiohttp is paid for by embedded runs only
    from ocprobe.reference.provider import ReferenceProvider
from ocprobe.transports.relay_format import DEFAULT_OPENAI_MODEL, DEFAULT_RELAY_BODY, DEFAULT_REPLY_PATH, RelayBody, parse_reply_path

GATEWAY_START_TIMEOUT = 30.0
MAX_TOKEN_FILE = 64 * 1024  # bytes: a token file larger than this is not one
TRANSPORTS = TRANSPORT_NAMES
_DIST_TAG = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")  # npm dist-tags: latest, beta, ...


@dataclass
class EmbeddedOptions:
    profile: str = "healthy"
    teardown_ms: float | None = None  # None: the profile's
    protocol: int | None = None  # None: the profile's
    latency_ms: float = DEFAULT_LATENCY_MS
    jitter_ms: float = 0.0
    drop_queued: bool = False
    queue_mode: str = "steer"
    faults: tuple[str, ...] = ()  # --fault specs, parsed by the gateway child (see reference/faults.py)


@dataclass
class OpenClawOptions:
    """For ``openclaw@VERSION`` targets, which ocprobe installs and launches itself."""

    config_fragment: Path | None = None  # --openclaw-config: JSON5 merged over the generated config
    keep_gateway: bool = False
    latency_ms: float = 1000.0  # ocprobe's provider: of the order of a real LLM, as in the shared notes


@dataclass
class TargetSpec:
    target: str = EMBEDDED
    token_env: str = DEFAULT_TOKEN_ENV
    token_file: Path | None = None
    allow_insecure: bool = False
    embedded: EmbeddedOptions = field(default_factory=EmbeddedOptions)
    openclaw: OpenClawOptions = field(default_factory=OpenClawOptions)
    #: ws | relay | openai; None: from the target (ws/wss -> ws; http/https -> relay, or openai when the
    #: path ends with /v1 or /v1/chat/completions; embedded -> ws). ``validate_target`` fills it in.
    transport: str | None = None
    relay_body: str | None = None  # None: DEFAULT_RELAY_BODY
    reply_path: str | None = None  # None: DEFAULT_REPLY_PATH
    openai_model: str | None = None  # None: DEFAULT_OPENAI_MODEL
    openai_stream: bool = True
    #: what the user should hear about the target's settings (e.g. a token file others can read); filled by
    #: ``validate_target``, shown by the command
    warnings: list[str] = field(default_factory=list)


@dataclass
class OpenTarget:
    transport: Transport
    info: TargetInfo
    witness: Witness | None
    secrets: list[str]


def cache_dir() -> Path:
    if os.environ.get("OCPROBE_CACHE"):
        return Path(os.environ["OCPROBE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ocprobe"


def run_dir_for(given: Path | None, label: str) -> Path:
    """The run dir: ``given`` (--run-dir), created if need be, else a new one in the cache; a path that cannot
    be one (a file, no permission) is a one-line error before anything starts."""
    if given is None:
        where = f"a run dir in the cache (OCPROBE_CACHE={cache_dir()})"
        run_dir = cache_dir() / "runs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{label}"
    else:
        where, run_dir = f"--run-dir {given}", given
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {where}: {exc.strerror}") from None
    if not run_dir.is_dir():
        raise UsageError(f"cannot create {where}: it exists and is not a directory")
    return run_dir



def transport_for_url(url: str) -> str:
    """The transport a target URL implies when ``--transport`` is not given."""
    parts = urlsplit(url)
    if parts.scheme in ("ws", "wss"):
        return "ws"
    path = parts.path.rstrip("/")
    return "openai" if path.endswith("/v1") or path.endswith("/v1/chat/completions") else "relay"


def validate_target(spec: TargetSpec) -> str | None:
    """Refuse a bad target before anything starts; returns the token an external target needs.

    ``embedded:PROFILE`` is the embedded target with that profile (handy in ``compare``). Fills in
    ``spec.transport``."""
    if spec.transport is not None and spec.transport not in TRANSPORTS:
        raise UsageError(f"unknown transport {spec.transport!r} (choose from {', '.join(TRANSPORTS)})")
    if spec.target.startswith(f"{EMBEDDED}:"):
        spec.embedded.profile = spec.target.split(":", 1)[1]
        spec.target = EMBEDDED
    if spec.embedded.faults and spec.target != EMBEDDED:
        raise UsageError("--fault applies to the embedded target only (its reference gateway injects them)")
    if spec.target.startswith(OPENCLAW_PREFIX):
        version = spec.target[len(OPENCLAW_PREFIX):].strip()
        if not version:
            raise UsageError(f"target {spec.target!r} names no version (e.g. openclaw@2026.5.3 or openclaw@latest)")
        if not (is_version(version) or _DIST_TAG.fullmatch(version)):
            raise UsageError(f"target {spec.target!r}: {version!r} is neither a version (e.g. 2026.5.3) nor a dist-tag (e.g. latest)")
        if spec.transport not in (None, "ws"):
            raise UsageError("an openclaw@VERSION target is probed over its WebSocket (--transport ws)")
        spec.transport = "ws"
        if spec.openclaw.config_fragment is not None and not spec.openclaw.config_fragment.is_file():
            raise UsageError(f"--openclaw-config {spec.openclaw.config_fragment} is not a readable file")
        return None
    if spec.target == EMBEDDED:
        if spec.embedded.profile not in PROFILES:
            raise UsageError(f"unknown profile {spec.embedded.profile!r} (choose from {', '.join(PROFILES)})")
        if spec.embedded.queue_mode not in QUEUE_MODES:
            raise UsageError(f"unknown queue mode {spec.embedded.queue_mode!r} (choose from {', '.join(QUEUE_MODES)})")
        if spec.embedded.protocol is not None and spec.embedded.protocol not in PROTOCOLS:
            raise UsageError(f"--protocol must be one of {', '.join(map(str, PROTOCOLS))}, got {spec.embedded.protocol}")
        for name, value in (("--teardown-ms", spec.embedded.teardown_ms), ("--latency-ms", spec.embedded.latency_ms),
                            ("--jitter-ms", spec.embedded.jitter_ms)):
            if value is not None and not 0 <= value <= 600_000:
                raise UsageError(f"{name} must be between 0 and 600000, got {value:g}")
        spec.transport = spec.transport or "ws"
        _validate_transport_options(spec)
        try:
            parse_faults(spec.embedded.faults)
        except FaultSpecError as exc:
            raise UsageError(str(exc)) from None
        if spec.embedded.faults and spec.transport != "ws":
            raise UsageError(f"--fault acts on chat.send over the WebSocket: it needs --transport ws, not {spec.transport}")
        return None
    try:
        parts = urlsplit(spec.target)
    except ValueError as exc:  # e.g. an unclosed [IPv6 bracket
        raise UsageError(f"target {spec.target!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("ws", "wss", "http", "https"):
        raise UsageError(f"unsupported target {spec.target!r}: use 'embedded', ws://HOST:PORT or http(s)://HOST:PORT/PATH")
    if not parts.hostname:
        raise UsageError(f"target {spec.target!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise UsageError("the target URL must not carry credentials (user:password@): give the token with --token-file or --token-env")
    try:
        parts.port
    except ValueError:
        raise UsageError(f"target {spec.target!r} has an invalid port") from None
    implied = transport_for_url(spec.target)
    if spec.transport is None:
        spec.transport = implied
    elif (spec.transport == "ws") != (implied == "ws"):
        wanted = "a ws:// or wss://" if spec.transport == "ws" else "an http:// or https://"
        raise UsageError(f"--transport {spec.transport} needs {wanted} target, got {spec.target}")
    _validate_transport_options(spec)
    if parts.scheme in ("ws", "http") and not is_loopback(parts.hostname) and not spec.allow_insecure:
        secure = "wss://" if parts.scheme == "ws" else "https://"
        raise UsageError(
            f"{spec.target} is not loopback: {parts.scheme}:// would send the gateway token in clear text "
            f"(use {secure}, or --allow-insecure to accept that)"
        )
    return read_token(spec)


def _validate_transport_options(spec: TargetSpec) -> None:
    """Options of one transport refused with another; the relay's template and path checked now."""
    if spec.transport != "relay":
        for option, value in (("--relay-body", spec.relay_body), ("--reply-path", spec.reply_path)):
            if value is not None:
                raise UsageError(f"{option} applies to --transport relay only (the transport here is {spec.transport})")
    if spec.transport != "openai":
        for option, given in (("--openai-model", spec.openai_model is not None), ("--no-stream", not spec.openai_stream)):
            if given:
                raise UsageError(f"{option} applies to --transport openai only (the transport here is {spec.transport})")
    if spec.transport == "relay":
        RelayBody(spec.relay_body if spec.relay_body is not None else DEFAULT_RELAY_BODY)
        parse_reply_path(spec.reply_path if spec.reply_path is not None else DEFAULT_REPLY_PATH)
    if spec.transport == "openai" and spec.openai_model is not None and not spec.openai_model.strip():
        raise UsageError("--openai-model must not be empty")


def make_transport(spec: TargetSpec, url: str, token: str | None) -> Transport:
    """The transport ``spec.transport`` names, for ``url`` (a ws URL, the relay URL or the OpenAI base)."""
    # Imported here: each pulls in its client library, which commands that never open a target skip.
    if spec.transport == "relay":
        from ocprobe.transports.http import RelayTransport

        return RelayTransport(url, token, body_template=spec.relay_body or DEFAULT_RELAY_BODY,
                              reply_path=spec.reply_path or DEFAULT_REPLY_PATH)
    if spec.transport == "openai":
        from ocprobe.transports.http import OpenAITransport

        return OpenAITransport(url, token, model=spec.openai_model or DEFAULT_OPENAI_MODEL, stream=spec.openai_stream)
    from ocprobe.transports.ws import OpenClawWsTransport

    return OpenClawWsTransport(url, token)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(spec: TargetSpec) -> str:
    """The gateway token from ``--token-file`` or the environment; never from the command line."""
    if spec.token_file is not None:
        try:
            info = spec.token_file.stat()
            if not stat.S_ISREG(info.st_mode):  # a FIFO would wait for a writer, /dev/zero never end
                raise UsageError(f"token file {spec.token_file} is not a regular file")
            if info.st_size > MAX_TOKEN_FILE:
                raise UsageError(f"token file {spec.token_file} holds {info.st_size} bytes: a token is at most "
                                 f"{MAX_TOKEN_FILE}")
            token = spec.token_file.read_text(encoding="utf-8").strip()
            mode = stat.S_IMODE(info.st_mode)
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read token file {spec.token_file}: {getattr(exc, 'strerror', None) or exc}") from None
        if not token:
            raise UsageError(f"token file {spec.token_file} is empty")
        if mode & 0o077:  # as ssh says of a private key others can read
            spec.warnings.append(f"token file {spec.token_file} is readable by others (mode {mode:04o}): "
                                 f"chmod 600 {spec.token_file}")
        return token
    token = os.environ.get(spec.token_env, "").strip()
    if not token:
        raise UsageError(f"no gateway token: set ${spec.token_env} or pass --token-file")
    return token


@asynccontextmanager
async def open_target(
    spec: TargetSpec, token: str | None, logs: LogWatcher, run_dir: Path,
    on_progress: Callable[[str], None] = lambda _: None,
) -> AsyncIterator[OpenTarget]:
    """``token``: what ``validate_target`` returned. ``on_progress``: start-up steps worth showing."""
    if spec.target.startswith(OPENCLAW_PREFIX):
        from ocprobe.openclaw.target import openclaw_target  # it needs this module: import it late

        async with openclaw_target(spec.target, logs, run_dir, spec.openclaw, on_progress) as (transport, info, witness, keys):
            yield OpenTarget(transport=transport, info=info, witness=witness, secrets=keys)
        return
    if spec.target == EMBEDDED or token is None:
        async with _embedded(spec, logs, run_dir) as opened:
            yield opened
        return
    transport = make_transport(spec, spec.target, token)
    try:
        await transport.open()
        yield OpenTarget(
            transport=transport,
            info=TargetInfo(target=spec.target, gateway_version=transport.server_version,
                            protocol=transport.protocol, extra={"transport": spec.transport or "ws"}),
            witness=None,
            secrets=[token],
        )
    finally:
        await transport.close()


def write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value + "\n")


@asynccontextmanager
async def _embedded(spec: TargetSpec, logs: LogWatcher, run_dir: Path) -> AsyncIterator[OpenTarget]:
    """``spec.transport`` picks how ocprobe talks to the gateway it starts: its WebSocket, its relay
    (``POST /chat.send``) or its OpenAI endpoint (``/v1``); the provider is the witness in every case."""
    options = spec.embedded
    token, provider_key = secrets.token_hex(24), secrets.token_hex(16)
    token_file = run_dir / "gateway.token"
    write_secret(token_file, token)
    # The provider's socket is bound first so the gateway child starts while this process imports aiohttp
    # and starts the provider on it: the two start-ups overlap (connections wait in the listen backlog).
    provider_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    provider: ReferenceProvider | None = None
    transport: Transport | None = None
    gateway: ManagedProcess | None = None
    try:
        provider_sock.bind(("127.0.0.1", 0))
        provider_sock.listen(128)
        child_spec = run_dir / "gateway.json"
        child_spec.write_text(json.dumps({
            "provider_url": f"http://127.0.0.1:{provider_sock.getsockname()[1]}/v1", "profile": options.profile,
            "teardown_ms": options.teardown_ms, "protocol": options.protocol, "queue_mode": options.queue_mode,
            "drop_queued": options.drop_queued,
            "faults": list(options.faults), "token_file": str(token_file), "log_file": str(run_dir / "gateway-error.log"),
        }), encoding="utf-8")
        # The child speaks plain HTTP on loopback only. aiohttp builds a verifying TLS context when imported,
        # which parses the system's CA bundle: ~50 ms of every embedded start, spared by an empty bundle.
        child_env = {**os.environ, PROVIDER_KEY_ENV: provider_key, "SSL_CERT_FILE": os.devnull}
        gateway = ManagedProcess([sys.executable, "-m", "ocprobe.reference", str(child_spec)], log_dir=run_dir,
                                 name="gateway", env=child_env,
                                 on_line=logs.feed_line, redact=Redactor([token, provider_key]))
        await gateway.start()
        from ocprobe.reference import provider as reference_provider  # aiohttp, while the child starts

        provider = reference_provider.ReferenceProvider(
            latency_ms=options.latency_ms, jitter_ms=options.jitter_ms, api_key=provider_key, sock=provider_sock)
        await provider.start()
        ready = await _ready_line(gateway)
        url = str(ready["url"])
        http_url = str(ready.get("http_url") or "http://" + url.split("://", 1)[1].rstrip("/"))
        endpoint = {"relay": f"{http_url}/chat.send", "openai": f"{http_url}/v1"}.get(spec.transport or "ws", url)
        transport = make_transport(spec, endpoint, token)
        await transport.open()
        yield OpenTarget(
            transport=transport,
            info=TargetInfo(
                target=EMBEDDED,
                # Over HTTP the reference gateway names no version; it is this package's, built as it builds it.
                gateway_version=transport.server_version or f"ocprobe-reference/{__version__} ({options.profile})",
                profile=options.profile,
                witness=True,
                protocol=transport.protocol,
                extra={"url": endpoint, "transport": spec.transport or "ws", "run_dir": str(run_dir),
                       "teardown_ms": (PROFILES[options.profile].teardown_text if options.teardown_ms is None
                                       else options.teardown_ms),
                       "provider_latency_ms": options.latency_ms,
                       **({"faults": list(options.faults)} if options.faults else {})},
            ),
            witness=provider,
            secrets=[token, provider_key],
        )
    finally:
        if transport is not None:
            await transport.close()
        if gateway is not None:
            await gateway.stop()
        if provider is not None:
            await provider.stop()  # closes the socket too
        provider_sock.close()


async def _ready_line(gateway: ManagedProcess) -> dict[str, object]:
    """The child prints one JSON line with its URLs once it listens."""
    deadline = time.monotonic() + GATEWAY_START_TIMEOUT
    while True:
        line = await gateway.next_stdout_line(max(0.1, deadline - time.monotonic()))
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("event") == "ready" and isinstance(data.get("url"), str):
            return data
        if time.monotonic() > deadline:
            raise TargetUnreachable("the reference gateway did not report ready")

"""Resolve ``--target`` into a running gateway, a connected transport and, where ocprobe runs the LLM,
a witness. ``embedded`` starts the reference provider in this process and the reference gateway as a
child process (so its stderr is watched like any real gateway's)."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ocprobe.engine import Witness
from ocprobe.errors import TargetUnreachable, UsageError
from ocprobe.logwatch import LogWatcher
from ocprobe.models import TargetInfo
from ocprobe.process import ManagedProcess
from ocprobe.reference.gateway import DEFAULT_TEARDOWN_MS, PROFILES, QUEUE_MODES
from ocprobe.reference.provider import DEFAULT_LATENCY_MS, ReferenceProvider
from ocprobe.transports.base import Transport
from ocprobe.transports.ws import OpenClawWsTransport

EMBEDDED = "embedded"
DEFAULT_TOKEN_ENV = "OPENCLAW_GATEWAY_TOKEN"
PROVIDER_KEY_ENV = "OCPROBE_PROVIDER_API_KEY"
GATEWAY_START_TIMEOUT = 30.0


@dataclass
class EmbeddedOptions:
    profile: str = "healthy"
    teardown_ms: float = DEFAULT_TEARDOWN_MS
    latency_ms: float = DEFAULT_LATENCY_MS
    jitter_ms: float = 0.0
    drop_queued: bool = False
    queue_mode: str = "steer"


@dataclass
class TargetSpec:
    target: str = EMBEDDED
    token_env: str = DEFAULT_TOKEN_ENV
    token_file: Path | None = None
    allow_insecure: bool = False
    embedded: EmbeddedOptions = field(default_factory=EmbeddedOptions)


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


def new_run_dir(label: str) -> Path:
    run_dir = cache_dir() / "runs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{label}"
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def validate_target(spec: TargetSpec) -> str | None:
    """Refuse a bad target before anything starts; returns the token an external target needs.

    ``embedded:PROFILE`` is the embedded target with that profile (handy in ``compare``)."""
    if spec.target.startswith(f"{EMBEDDED}:"):
        spec.embedded.profile = spec.target.split(":", 1)[1]
        spec.target = EMBEDDED
    if spec.target == EMBEDDED:
        if spec.embedded.profile not in PROFILES:
            raise UsageError(f"unknown profile {spec.embedded.profile!r} (choose from {', '.join(PROFILES)})")
        if spec.embedded.queue_mode not in QUEUE_MODES:
            raise UsageError(f"unknown queue mode {spec.embedded.queue_mode!r} (choose from {', '.join(QUEUE_MODES)})")
        for name, value in (("--teardown-ms", spec.embedded.teardown_ms), ("--latency-ms", spec.embedded.latency_ms),
                            ("--jitter-ms", spec.embedded.jitter_ms)):
            if not 0 <= value <= 600_000:
                raise UsageError(f"{name} must be between 0 and 600000, got {value:g}")
        return None
    parts = urlsplit(spec.target)
    if parts.scheme not in ("ws", "wss"):
        raise UsageError(f"unsupported target {spec.target!r}: use 'embedded' or ws://HOST:PORT")
    if not parts.hostname:
        raise UsageError(f"target {spec.target!r} has no host")
    try:
        parts.port
    except ValueError:
        raise UsageError(f"target {spec.target!r} has an invalid port") from None
    if parts.scheme == "ws" and not _is_loopback(parts.hostname) and not spec.allow_insecure:
        raise UsageError(
            f"{spec.target} is not loopback: ws:// would send the gateway token in clear text "
            "(use wss://, or --allow-insecure to accept that)"
        )
    return read_token(spec)


def _is_loopback(host: str) -> bool:
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
            token = spec.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read token file {spec.token_file}: {getattr(exc, 'strerror', None) or exc}") from None
        if not token:
            raise UsageError(f"token file {spec.token_file} is empty")
        return token
    token = os.environ.get(spec.token_env, "").strip()
    if not token:
        raise UsageError(f"no gateway token: set ${spec.token_env} or pass --token-file")
    return token


@asynccontextmanager
async def open_target(spec: TargetSpec, token: str | None, logs: LogWatcher, run_dir: Path) -> AsyncIterator[OpenTarget]:
    """``token``: what ``validate_target`` returned."""
    if spec.target == EMBEDDED or token is None:
        async with _embedded(spec.embedded, logs, run_dir) as opened:
            yield opened
        return
    transport = OpenClawWsTransport(spec.target, token)
    try:
        await transport.open()
        yield OpenTarget(
            transport=transport,
            info=TargetInfo(target=spec.target, gateway_version=transport.server_version),
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
async def _embedded(options: EmbeddedOptions, logs: LogWatcher, run_dir: Path) -> AsyncIterator[OpenTarget]:
    token, provider_key = secrets.token_hex(24), secrets.token_hex(16)
    token_file = run_dir / "gateway.token"
    write_secret(token_file, token)
    provider = ReferenceProvider(latency_ms=options.latency_ms, jitter_ms=options.jitter_ms, api_key=provider_key)
    await provider.start()
    argv = [
        sys.executable, "-m", "ocprobe", "gateway", "serve", "--json",
        "--port", "0",
        "--provider-url", provider.base_url,
        "--profile", options.profile,
        "--teardown-ms", str(options.teardown_ms),
        "--queue-mode", options.queue_mode,
        "--token-file", str(token_file),
        "--log-file", str(run_dir / "gateway-error.log"),
    ]
    if options.drop_queued:
        argv.append("--drop-queued")
    env = {**os.environ, PROVIDER_KEY_ENV: provider_key}
    gateway = ManagedProcess(argv, log_dir=run_dir, name="gateway", env=env, on_line=logs.feed_line)
    transport: OpenClawWsTransport | None = None
    try:
        await gateway.start()
        url = await _ready_url(gateway)
        transport = OpenClawWsTransport(url, token)
        await transport.open()
        yield OpenTarget(
            transport=transport,
            info=TargetInfo(
                target=EMBEDDED,
                gateway_version=transport.server_version,
                profile=options.profile,
                witness=True,
                extra={"url": url, "run_dir": str(run_dir), "teardown_ms": options.teardown_ms,
                       "provider_latency_ms": options.latency_ms},
            ),
            witness=provider,
            secrets=[token, provider_key],
        )
    finally:
        if transport is not None:
            await transport.close()
        await gateway.stop()
        await provider.stop()


async def _ready_url(gateway: ManagedProcess) -> str:
    """The child prints one JSON line with its URL once it listens."""
    deadline = time.monotonic() + GATEWAY_START_TIMEOUT
    while True:
        line = await gateway.next_stdout_line(max(0.1, deadline - time.monotonic()))
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("event") == "ready" and isinstance(data.get("url"), str):
            return data["url"]
        if time.monotonic() > deadline:
            raise TargetUnreachable("the reference gateway did not report ready")

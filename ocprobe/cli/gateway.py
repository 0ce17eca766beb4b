"""``ocprobe gateway serve``: the reference gateway and provider, standalone on loopback."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Optional
from urllib.parse import urlsplit

import typer

from ocprobe.cli.common import execute, make_output
from ocprobe.cli.options import Fault, Profile, ProtocolOption, QueueMode, TeardownMs
from ocprobe.errors import UsageError
from ocprobe.reference.fault_specs import FaultSpecError, parse_faults
from ocprobe.reference.defaults import (
    DEFAULT_DEBOUNCE_MS, DEFAULT_LATENCY_MS, DEFAULT_QUEUED_ACK_MS, PROVIDER_KEY_ENV,
)
from ocprobe.defaults import DEFAULT_TOKEN_ENV

if TYPE_CHECKING:
    from ocprobe.reference.serve import ServeInfo

app = typer.Typer(help="The built-in reference gateway.", no_args_is_help=True)


@app.command("serve")
def serve(
    port: int = typer.Option(18789, "--port", help="Gateway port on 127.0.0.1 (0: any free port)."),
    provider_port: int = typer.Option(0, "--provider-port", help="Reference provider port (0: any free port)."),
    provider_url: Optional[str] = typer.Option(None, "--provider-url", help="Use this OpenAI-compatible provider instead of starting one."),
    profile: Profile = typer.Option(Profile.healthy, "--profile", help="Gateway behaviour (see the README's profile table)."),
    protocol: ProtocolOption = None,
    teardown_ms: TeardownMs = None,
    queued_ack_ms: Optional[float] = typer.Option(None, "--queued-ack-ms", help=f"How long a queued send waits for its empty final (default: the profile's; {DEFAULT_QUEUED_ACK_MS:g} for healthy)."),
    debounce_ms: float = typer.Option(DEFAULT_DEBOUNCE_MS, "--debounce-ms", help="Follow-up queue drain debounce."),
    drop_queued: bool = typer.Option(False, "--drop-queued", help="Drop queued turns instead of running them late."),
    queue_mode: QueueMode = typer.Option(QueueMode.steer, "--queue-mode", help="steer: one run per queued turn (5.3); collect: one run for all (4.26)."),
    latency_ms: float = typer.Option(DEFAULT_LATENCY_MS, "--latency-ms", help="Reference provider latency."),
    jitter_ms: float = typer.Option(0.0, "--jitter-ms", help="Reference provider added random latency."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help=f"Token file (default: ${DEFAULT_TOKEN_ENV}, else a new token written to a file)."),
    log_file: Optional[Path] = typer.Option(None, "--log-file", help="Error log file (JSON lines)."),
    json_out: bool = typer.Option(False, "--json", help="Print the ready line as JSON."),
    fault: Fault = [],
) -> None:
    output = make_output("-" if json_out else None, False)

    def run() -> None:
        import asyncio

        from ocprobe.reference.gateway import GatewayConfig
        from ocprobe.reference.serve import serve as serve_gateway
        from ocprobe.targets import cache_dir

        if not 0 <= port <= 65535 or not 0 <= provider_port <= 65535:
            raise UsageError("ports must be between 0 and 65535")
        for name, value in (("--teardown-ms", teardown_ms), ("--queued-ack-ms", queued_ack_ms),
                            ("--debounce-ms", debounce_ms), ("--latency-ms", latency_ms), ("--jitter-ms", jitter_ms)):
            if value is not None and not 0 <= value <= 600_000:
                raise UsageError(f"{name} must be between 0 and 600000, got {value:g}")
        try:
            faults = parse_faults(fault)
        except FaultSpecError as exc:
            raise UsageError(str(exc)) from None
        if provider_url is not None and not _is_http_url(provider_url):
            raise UsageError(f"--provider-url {provider_url!r} is not an http(s)://HOST[:PORT]/PATH URL")
        if log_file is not None:
            _writable(log_file)  # a bad path is refused before a token file is written
        token, shown_file = _gateway_token(token_file)
        log_path = log_file or _writable(cache_dir() / "gateway" / "gateway-error.log")
        config = GatewayConfig(
            token=token, provider_url=provider_url or "", profile=profile.value, teardown_ms=teardown_ms,
            protocol=int(protocol.value) if protocol else None,
            queued_ack_ms=queued_ack_ms, debounce_ms=debounce_ms, drop_queued=drop_queued, queue_mode=queue_mode.value, port=port,
            provider_api_key=os.environ.get(PROVIDER_KEY_ENV) or secrets.token_hex(16),
            log_file=log_path, faults=faults,
        )
        output.redact.add(token)
        try:
            asyncio.run(serve_gateway(config, provider_port=provider_port, latency_ms=latency_ms, jitter_ms=jitter_ms,
                                      token_file=shown_file, on_ready=lambda info: _ready(output, info)))
        except OSError as exc:  # the port (or the provider's) is taken, or not ours to bind
            raise UsageError(f"cannot listen on 127.0.0.1 (--port {port}, --provider-port {provider_port}): "
                             f"{exc.strerror or exc}") from None

    execute(output, run)


def _writable(path: Path) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.open("a").close()
    except OSError as exc:
        raise UsageError(f"cannot write --log-file {path}: {exc.strerror}") from None
    return path


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:  # a bad port or an unclosed [IPv6 bracket
        return False


def _gateway_token(token_file: Path | None) -> tuple[str, Path | None]:
    """A given token file, else the env variable, else a new token saved (0600) where the user can read it."""
    from ocprobe.targets import TargetSpec, cache_dir, read_token, write_secret

    if token_file is not None or os.environ.get(DEFAULT_TOKEN_ENV):
        return read_token(TargetSpec(target="", token_file=token_file)), token_file
    path = cache_dir() / "gateway" / "gateway.token"
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(24)
    write_secret(path, token)
    return token, path


def _ready(output, info: ServeInfo) -> None:  # type: ignore[no-untyped-def]
    record = info.record()
    token = f"token in {info.token_file}" if info.token_file else f"token from ${DEFAULT_TOKEN_ENV}"
    human = (
        f"reference gateway ({info.profile}) ready, pid {info.pid}\n"
        f"  websocket  {info.url}\n"
        f"  relay      POST {info.http_url}/chat.send  (Authorization: Bearer <token>)\n"
        f"  health     {info.http_url}/healthz  {info.http_url}/readyz\n"
        f"  provider   {info.provider_url}" + (f"  (witness: {info.witness_url})" if info.witness_url else "") + "\n"
        f"  auth       {token}\n"
        f"  error log  {info.log_file} (and this process's stderr)\n"
        + (f"  faults     {' '.join(info.faults)}\n" if info.faults else "") +
        "Ctrl-C stops it."
    )
    output.data(record, human)

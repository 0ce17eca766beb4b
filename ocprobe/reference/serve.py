"""Run the reference gateway (and, unless one is given, the reference provider) until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocprobe.reference.gateway import GatewayConfig, GatewayLog, ReferenceGateway
from ocprobe.reference.defaults import DEFAULT_LATENCY_MS

if TYPE_CHECKING:
    from ocprobe.reference.provider import ReferenceProvider


@dataclass
class ServeInfo:
    url: str
    http_url: str
    provider_url: str
    witness_url: str | None
    token_file: Path | None
    log_file: Path | None
    profile: str
    pid: int
    faults: list[str]  # the injected faults, as --fault specs with their defaults

    def record(self) -> dict[str, Any]:
        """The ready line's JSON: what ``gateway serve --json`` prints and an embedded run waits for."""
        return {"event": "ready", **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}}


async def serve(
    config: GatewayConfig,
    *,
    provider_port: int = 0,
    latency_ms: float = DEFAULT_LATENCY_MS,
    jitter_ms: float = 0.0,
    token_file: Path | None = None,
    on_ready: Callable[[ServeInfo], None],
    make_gateway: Callable[..., ReferenceGateway] = ReferenceGateway,
) -> None:
    """``make_gateway``: the gateway to run, given its config and log (bench/timed_gateway.py runs a subclass)."""
    provider: ReferenceProvider | None = None
    if not config.provider_url:
        # Imported here: the gateway child of an embedded run is given its provider and needs none.
        from ocprobe.reference import provider as reference_provider

        provider = reference_provider.ReferenceProvider(
            latency_ms=latency_ms, jitter_ms=jitter_ms, port=provider_port, api_key=config.provider_api_key)
        await provider.start()
        config.provider_url = provider.base_url
    gateway = make_gateway(config, log=GatewayLog(config.log_file))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await gateway.start()
        on_ready(
            ServeInfo(
                url=gateway.url,
                http_url=f"http://{config.host}:{gateway.port}",
                provider_url=config.provider_url,
                witness_url=f"{provider.base_url}/ocprobe/witness" if provider else None,
                token_file=token_file,
                log_file=config.log_file,
                profile=config.profile,
                pid=os.getpid(),
                faults=[spec.text() for spec in config.faults],
            )
        )
        await stop.wait()
    finally:
        await gateway.stop()
        if provider:
            await provider.stop()

"""``--target openclaw@VERSION``: install if needed, launch isolated, probe with ocprobe's provider as witness."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from ocprobe.logwatch import LogWatcher
from ocprobe.models import TargetInfo
from ocprobe.openclaw.installs import InstallManager, Stage
from ocprobe.openclaw.launch import LaunchedGateway, launch, load_config_fragment
from ocprobe.openclaw.releases import traits
from ocprobe.reference.provider import ReferenceProvider
from ocprobe.targets import OPENCLAW_PREFIX, OpenClawOptions
from ocprobe.transports.ws import OpenClawWsTransport


def version_of(target: str) -> str:
    return target[len(OPENCLAW_PREFIX):].strip()


@asynccontextmanager
async def openclaw_target(
    target: str,
    logs: LogWatcher,
    run_dir: Path,
    options: OpenClawOptions,
    on_progress: Callable[[str], None],
) -> AsyncIterator[tuple[OpenClawWsTransport, TargetInfo, ReferenceProvider, list[str]]]:
    fragment = load_config_fragment(options.config_fragment) if options.config_fragment else None
    manager = InstallManager()

    def progress(version: str, stage: Stage, detail: str) -> None:
        on_progress(f"openclaw {version}: {stage.value}{f' ({detail})' if detail else ''}")

    install = await asyncio.to_thread(manager.install, version_of(target), progress)
    logs.add_patterns(traits(install.version).log_patterns)
    with manager.use(install.version):
        provider_key = secrets.token_hex(16)
        provider = ReferenceProvider(latency_ms=options.latency_ms, api_key=provider_key)
        await provider.start()
        gateway: LaunchedGateway | None = None
        transport: OpenClawWsTransport | None = None
        try:
            # The gateway's file log (JSON lines) holds what 4.26 logged there; its stderr what 5.3 did.
            logs.add_path(str(run_dir / "openclaw.log"))
            gateway = await launch(install, run_dir=run_dir, provider_url=provider.base_url,
                                   provider_key=provider_key, on_line=logs.feed_line, config_fragment=fragment,
                                   on_progress=on_progress)
            transport = OpenClawWsTransport(gateway.url, gateway.token)
            await transport.open()
            expected = traits(install.version).protocol
            if transport.protocol != expected:  # the release table is checked against every launch
                on_progress(f"note: openclaw {install.version} speaks protocol {transport.protocol}; the release "
                            f"table (ocprobe/openclaw/releases.py) says {expected}")
            info = TargetInfo(
                target=target, gateway_version=transport.server_version, witness=True,
                node_version=install.node_version, protocol=transport.protocol,
                extra={"url": gateway.url, "run_dir": str(run_dir), "token_file": str(gateway.token_file),
                       "log_file": str(gateway.log_file), "provider_latency_ms": options.latency_ms,
                       "install_s": install.install_seconds, "registry_refresh_s": round(gateway.registry_refresh_s, 2),
                       "ready_s": round(gateway.ready_s, 2)},
            )
            yield transport, info, provider, [gateway.token, provider_key]
            if options.keep_gateway:
                on_progress(f"gateway kept running: {gateway.url}, token in {gateway.token_file}, logs in {run_dir} "
                            "(gateway.stderr.log, gateway.stdout.log, openclaw.log); Ctrl-C stops it")
                await asyncio.Event().wait()  # serve the provider (the gateway's LLM) until Ctrl-C
        finally:
            if transport is not None:
                await transport.close()
            if gateway is not None:
                await gateway.stop()
            await provider.stop()


async def serve_up(
    target: str,
    run_dir: Path,
    options: OpenClawOptions,
    on_progress: Callable[[str], None],
    on_ready: Callable[[TargetInfo], None],
) -> None:
    """``ocprobe openclaw up``: launch only, for manual work, until Ctrl-C or SIGTERM stops it all."""
    logs = LogWatcher([], [])
    async with openclaw_target(target, logs, run_dir, options, on_progress) as (_, info, _, _):
        on_ready(info)
        await asyncio.Event().wait()

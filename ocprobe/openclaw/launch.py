"""Launch a real OpenClaw gateway for a probe, isolated from the user's own ``~/.openclaw``.

Every path it uses lives in the run dir (state, HOME, config, logs) except the plugin stage dir, which
is kept per version in the cache because 2026.4.x stages hundreds of MB of plugin dependencies there on
its first start. The generated config points the gateway at ocprobe's own provider, so the witness
sees every turn that reaches the LLM. See ../shared/openclaw-gateway.md for why each setting matters.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ocprobe.errors import TargetUnreachable, UsageError
from ocprobe.openclaw.installs import Install
from ocprobe.process import LineCallback, ManagedProcess
from ocprobe.targets import cache_dir, write_secret

PROVIDER_ID = "ocprobe"
MODEL_ID = "mock-model"
START_TIMEOUT = 180.0  # 4.26 needed ~26 s to be ready, and 90 s on its very first start
REGISTRY_REFRESH_TIMEOUT = 180.0
STOP_GRACE = 10.0  # 4.26 sometimes ignored SIGTERM for over 10 s
# Variables of the user's environment that would point the gateway at their own setup.
SCRUBBED_ENV = ("OPENCLAW_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_PASSWORD", "OPENCLAW_PROFILE", "OPENCLAW_CONFIG_PATH",
                "OPENCLAW_STATE_DIR", "OPENCLAW_HOME", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")

ProgressFn = Callable[[str], None]


@dataclass
class LaunchedGateway:
    version: str
    node_version: str
    url: str
    http_url: str
    token: str
    token_file: Path
    config_path: Path
    log_file: Path
    run_dir: Path
    process: ManagedProcess

    async def stop(self) -> None:
        await self.process.stop(grace=STOP_GRACE)


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: nested objects merge, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config_fragment(path: Path) -> dict[str, Any]:
    """A user's JSON5 config fragment (queue mode, agents, plugins) to merge over the generated config."""
    import json5  # JSON5 is what OpenClaw's own config accepts

    try:
        data = json5.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read --openclaw-config {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"--openclaw-config {path} is not valid JSON5: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--openclaw-config {path} must hold an object")
    return data


def generated_config(*, port: int, token: str, provider_url: str, provider_key: str, log_file: Path,
                     run_dir: Path) -> dict[str, Any]:
    return {
        "gateway": {"mode": "local", "port": port, "bind": "loopback", "auth": {"mode": "token", "token": token}},
        "models": {"mode": "merge", "providers": {PROVIDER_ID: {
            "baseUrl": provider_url, "apiKey": provider_key, "api": "openai-completions",
            "models": [{"id": MODEL_ID, "name": "ocprobe witness", "reasoning": False, "input": ["text"],
                        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                        "contextWindow": 32000, "maxTokens": 1024}],
        }}},
        # A fresh workspace would answer a first-run BOOTSTRAP prompt instead of the probe.
        "agents": {
            "defaults": {"model": {"primary": f"{PROVIDER_ID}/{MODEL_ID}"}, "skipBootstrap": True},
            # ocprobe's default session key is agent:test:main: the gateway refuses keys of unknown agents.
            "list": [{"id": "main", "default": True, "workspace": str(run_dir / "workspace-main")},
                     {"id": "test", "workspace": str(run_dir / "workspace-test")}],
        },
        "update": {"checkOnStart": False},
        "logging": {"file": str(log_file)},
    }


def free_port() -> int:
    """A port free on 127.0.0.1 with PORT+2 free too (the gateway's browser-control listener)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 2 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 2))
            except OSError:
                continue
        return port
    raise TargetUnreachable("no free loopback port pair for the gateway")


def gateway_env(install: Install, run_dir: Path) -> dict[str, str]:
    home = run_dir / "home"
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(
        HOME=str(home),
        OPENCLAW_HOME=str(home),
        OPENCLAW_STATE_DIR=str(run_dir / "state"),
        OPENCLAW_CONFIG_PATH=str(run_dir / "openclaw.json"),
        OPENCLAW_DISABLE_BONJOUR="1",
        OPENCLAW_PLUGIN_STAGE_DIR=str(cache_dir() / "openclaw-stage" / install.version),
        NO_COLOR="1",
    )
    return install.env(env)


async def launch(
    install: Install,
    *,
    run_dir: Path,
    provider_url: str,
    provider_key: str,
    on_line: LineCallback | None = None,
    config_fragment: Mapping[str, Any] | None = None,
    on_progress: ProgressFn | None = None,
    start_timeout: float = START_TIMEOUT,
) -> LaunchedGateway:
    """Write the config, refresh the plugin registry, start ``openclaw gateway run`` and wait for /readyz."""
    report = on_progress or (lambda _: None)
    for sub in ("home", "state"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    env = gateway_env(install, run_dir)
    Path(env["OPENCLAW_PLUGIN_STAGE_DIR"]).mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_hex(24)
    token_file = run_dir / "gateway.token"
    write_secret(token_file, token)
    log_file = run_dir / "openclaw.log"
    config = generated_config(port=port, token=token, provider_url=provider_url, provider_key=provider_key,
                              log_file=log_file, run_dir=run_dir)
    if config_fragment:
        config = deep_merge(config, config_fragment)
        # The probe needs these whatever the fragment says: its port, loopback, its token.
        config["gateway"].update(port=port, bind="loopback", mode="local")
        config["gateway"]["auth"] = {"mode": "token", "token": token}
    config_path = Path(env["OPENCLAW_CONFIG_PATH"])
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the token
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)

    # Without the registry the postinstall (skipped by --ignore-scripts) would build, every turn rebuilds it.
    report("refreshing the plugin registry")
    refresh = ManagedProcess(install.command("plugins", "registry", "--refresh"), log_dir=run_dir,
                             name="registry-refresh", env=env)
    await refresh.start()
    try:
        await asyncio.wait_for(refresh.wait(), REGISTRY_REFRESH_TIMEOUT)
    except asyncio.TimeoutError:
        await refresh.stop()
        raise TargetUnreachable(f"openclaw {install.version}: plugin registry refresh took over {REGISTRY_REFRESH_TIMEOUT:.0f}s") from None
    if refresh.returncode != 0:
        raise TargetUnreachable(f"openclaw {install.version}: plugin registry refresh failed: {refresh.stderr_tail()}")

    report(f"starting openclaw {install.version} on 127.0.0.1:{port}")
    process = ManagedProcess(install.command("gateway", "run", "--port", str(port), "--bind", "loopback"),
                             log_dir=run_dir, name="gateway", env=env, on_line=on_line)
    await process.start()
    gateway = LaunchedGateway(version=install.version, node_version=install.node_version,
                              url=f"ws://127.0.0.1:{port}/", http_url=f"http://127.0.0.1:{port}", token=token,
                              token_file=token_file, config_path=config_path, log_file=log_file, run_dir=run_dir,
                              process=process)
    try:
        await wait_ready(gateway, start_timeout, report)
    except BaseException:
        await gateway.stop()
        raise
    return gateway


async def wait_ready(gateway: LaunchedGateway, timeout: float, report: ProgressFn) -> None:
    """Poll ``/readyz`` until ``ready: true``; fail fast if the process dies."""
    started = time.monotonic()
    deadline = started + timeout
    async with httpx.AsyncClient(trust_env=False, timeout=2.0) as http:
        while True:
            if gateway.process.returncode is not None:
                raise TargetUnreachable(f"openclaw {gateway.version} exited with code {gateway.process.returncode} "
                                        f"while starting: {gateway.process.stderr_tail()}")
            try:
                body = (await http.get(f"{gateway.http_url}/readyz")).json()
                if isinstance(body, dict) and body.get("ready") is True:
                    report(f"openclaw {gateway.version} ready after {time.monotonic() - started:.1f}s")
                    return
            except (httpx.HTTPError, ValueError):
                pass  # not listening yet, or not ready to answer
            if time.monotonic() > deadline:
                raise TargetUnreachable(f"openclaw {gateway.version} not ready within {timeout:.0f}s "
                                        f"(logs in {gateway.run_dir})")
            await asyncio.sleep(0.25)

"""Launch a real OpenClaw gateway for a probe, isolated from the user's own ``~/.openclaw``.

Every path it uses lives in the run dir (state, HOME, config, logs) except the plugin stage dir, which
is kept per version in the cache because 2026.4.x stages hundreds of MB of plugin dependencies there on
its first start. The generated config points the gateway at ocprobe's own provider, so the witness
sees every turn that reaches the LLM. What differs by release (config keys, env) comes from the table in
``releases.py``. See ../shared/openclaw-gateway.md for why each setting matters.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
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
from ocprobe.openclaw.releases import ReleaseTraits, traits
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
    registry_refresh_s: float = 0.0  # the plugin registry refresh before the start
    ready_s: float = 0.0  # from the gateway process's start to /readyz answering ready

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
                     run_dir: Path, release: ReleaseTraits) -> dict[str, Any]:
    # ocprobe's default session key is agent:test:main: the gateway refuses keys of unknown agents.
    workspaces = {agent: str(run_dir / f"workspace-{agent}") for agent in ("main", "test")}
    if release.agents_entries:
        # A keyed roster of several agents needs explicit ownership; ambient work goes to the main agent.
        agents: dict[str, Any] = {"ownership": "explicit",
                                  "entries": {agent: {"workspace": path} for agent, path in workspaces.items()}}
    else:
        agents = {"list": [{"id": agent, "workspace": path, **({"default": True} if agent == "main" else {})}
                           for agent, path in workspaces.items()]}
    config: dict[str, Any] = {
        "gateway": {"mode": "local", "port": port, "bind": "loopback", "auth": {"mode": "token", "token": token}},
        "models": {"mode": "merge", "providers": {PROVIDER_ID: {
            "baseUrl": provider_url, "apiKey": provider_key, "api": "openai-completions",
            "models": [{"id": MODEL_ID, "name": "ocprobe witness", "reasoning": False, "input": ["text"],
                        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                        "contextWindow": 32000, "maxTokens": 1024}],
        }}},
        # A fresh workspace would answer a first-run BOOTSTRAP prompt instead of the probe.
        "agents": {"defaults": {"model": {"primary": f"{PROVIDER_ID}/{MODEL_ID}"}, "skipBootstrap": True}, **agents},
        "update": {"checkOnStart": False},
        "logging": {"file": str(log_file)},
    }
    if release.agents_entries:
        config["agents"]["defaults"]["systemAgent"] = {"agentId": "main"}
    if release.catalog_refresh:  # offline, the remote model catalog refresh only logs failures
        config["models"]["catalogRefresh"] = {"enabled": False}
    return config


# How a release says its config is invalid: "Config invalid" (5.x) or "OpenClaw config is invalid" (9.x),
# then "  - KEY: problem" lines under "Problem:" (9.x puts "openclaw.json:LINE — " before the key).
_INVALID_CONFIG = re.compile(r"config (?:is )?invalid", re.IGNORECASE)
_PROBLEM = re.compile(r"^\s+-\s+(?:\S+\.json5?:\d+\s+\W\s+)?(.+)$")
MAX_LOG_READ = 64 * 1024


def failure_reason(process: ManagedProcess, version: str, what: str) -> str:
    """One line saying why an openclaw process failed: the config problems it named (with the release),
    else its last line on stderr."""
    try:
        with process.stderr_path.open("rb") as f:
            text = f.read(MAX_LOG_READ).decode("utf-8", "replace")
    except OSError:
        text = ""
    if _INVALID_CONFIG.search(text):
        problems: list[str] = []
        in_problems = False
        for line in text.splitlines():
            if line.strip().endswith(":") and not line.startswith(" "):
                in_problems = line.strip() in ("Problem:", "Problems:")
                continue
            match = _PROBLEM.match(line) if in_problems else None
            if match:
                problems.append(" ".join(match.group(1).split())[:200])
        if problems:
            return f"openclaw {version} rejected the config: {'; '.join(problems[:3])}"
    tail = process.stderr_tail()
    return f"openclaw {version}: {what}" + (f": {tail}" if tail else f" (logs in {process.stderr_path.parent})")


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
    """The environment of every openclaw process of a launch: the user's, less what would point it at their
    own setup, with every path in the run dir and nothing that phones home."""
    home = run_dir / "home"
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(
        HOME=str(home),
        OPENCLAW_HOME=str(home),
        OPENCLAW_STATE_DIR=str(run_dir / "state"),
        OPENCLAW_CONFIG_PATH=str(run_dir / "openclaw.json"),
        OPENCLAW_DISABLE_BONJOUR="1",
        OPENCLAW_NO_AUTO_UPDATE="1",
        DO_NOT_TRACK="1",
        NO_COLOR="1",
    )
    if traits(install.version).plugin_stage_dir:
        env["OPENCLAW_PLUGIN_STAGE_DIR"] = str(cache_dir() / "openclaw-stage" / install.version)
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
    if "OPENCLAW_PLUGIN_STAGE_DIR" in env:
        Path(env["OPENCLAW_PLUGIN_STAGE_DIR"]).mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_hex(24)
    token_file = run_dir / "gateway.token"
    write_secret(token_file, token)
    log_file = run_dir / "openclaw.log"
    config = generated_config(port=port, token=token, provider_url=provider_url, provider_key=provider_key,
                              log_file=log_file, run_dir=run_dir, release=traits(install.version))
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
    refresh_started = time.monotonic()
    refresh = ManagedProcess(install.command("plugins", "registry", "--refresh"), log_dir=run_dir,
                             name="registry-refresh", env=env)
    await refresh.start()
    try:
        await asyncio.wait_for(refresh.wait(), REGISTRY_REFRESH_TIMEOUT)
    except asyncio.TimeoutError:
        await refresh.stop()
        raise TargetUnreachable(f"openclaw {install.version}: plugin registry refresh took over {REGISTRY_REFRESH_TIMEOUT:.0f}s") from None
    if refresh.returncode != 0:
        raise TargetUnreachable(failure_reason(refresh, install.version, "plugin registry refresh failed"))

    refresh_s = time.monotonic() - refresh_started
    report(f"starting openclaw {install.version} on 127.0.0.1:{port}")
    process = ManagedProcess(install.command("gateway", "run", "--port", str(port), "--bind", "loopback"),
                             log_dir=run_dir, name="gateway", env=env, on_line=on_line)
    await process.start()
    gateway = LaunchedGateway(version=install.version, node_version=install.node_version,
                              url=f"ws://127.0.0.1:{port}/", http_url=f"http://127.0.0.1:{port}", token=token,
                              token_file=token_file, config_path=config_path, log_file=log_file, run_dir=run_dir,
                              process=process, registry_refresh_s=refresh_s)
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
                raise TargetUnreachable(failure_reason(
                    gateway.process, gateway.version,
                    f"exited with code {gateway.process.returncode} while starting"))
            try:
                body = (await http.get(f"{gateway.http_url}/readyz")).json()
                if isinstance(body, dict) and body.get("ready") is True:
                    gateway.ready_s = time.monotonic() - started
                    report(f"openclaw {gateway.version} ready after {gateway.ready_s:.1f}s")
                    return
            except (httpx.HTTPError, ValueError):
                pass  # not listening yet, or not ready to answer
            if time.monotonic() > deadline:
                raise TargetUnreachable(f"openclaw {gateway.version} not ready within {timeout:.0f}s "
                                        f"(logs in {gateway.run_dir})")
            await asyncio.sleep(0.25)

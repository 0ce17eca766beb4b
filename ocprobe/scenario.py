"""Scenario files: a probe kept as TOML (target, transport, gateway settings, probe or steps, logs, gates),
checked whole before anything runs, with every error naming the file, line and key.

    description = "The seed probe through the relay, with the seed's 1 s sleep"
    target = "embedded"
    iterations = 10
    gates = ["fast_fail.count == 0"]

    [transport]
    name = "relay"

    [gateway]
    profile = "reply-run-race"
    teardown_ms = 1500

    [[steps]]
    send = "hello {i}: reply with {nonce}"
    expect = "real"

    [[steps]]
    sleep = 1.0
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from ocprobe.engine import (
    DEFAULT_MESSAGE, DEFAULT_SESSION_KEY, WAIT_MODES, ConcurrentConfig, ProbeConfig, ScriptConfig, SendStep,
    SequentialConfig, SleepStep, Step, WaitStep,
)
from ocprobe.errors import UsageError
from ocprobe.gates import GateSyntaxError, parse_gates
from ocprobe.models import CallClass
from ocprobe.patterns import PatternError, compile_pattern
from ocprobe.reference.defaults import PROFILES, QUEUE_MODES
from ocprobe.runner import LIMITS, log_patterns, prepare_gates, run_probe, validate_config, validate_message_template
from ocprobe.sweep import SweepConfig, check_values, run_sweep
from ocprobe.targets import EMBEDDED, EmbeddedOptions, OpenClawOptions, TargetSpec, is_loopback, validate_target
from ocprobe.transports import TRANSPORT_NAMES

MODES = ("steps", "sequential", "concurrent", "sweep")
SUFFIX = ".toml"
CLASS_NAMES = tuple(c.value for c in CallClass)

# Keys of each table, with their type: int, float (an int is accepted), str, bool, or a list of one of them.
_TOP = {"description": str, "target": str, "mode": str, "iterations": int, "repeat": int, "gates": [str],
        "transport": dict, "gateway": dict, "probe": dict, "steps": list, "sweep": dict, "logs": dict}
_TRANSPORT = {"name": str, "relay_body": str, "reply_path": str, "openai_model": str, "stream": bool,
              "token_env": str, "token_file": str, "allow_insecure": bool}
_GATEWAY = {"profile": str, "protocol": int, "teardown_ms": float, "latency_ms": float, "jitter_ms": float, "queue_mode": str,
            "drop_queued": bool, "openclaw_config": str}
_PROBE_COMMON = {"session_key": str, "message": str, "wait": str, "timeout": float, "floor_ms": float, "settle": float}
_PROBE_BY_MODE = {
    "steps": {},
    "sequential": {"calls": int, "gap": float},
    "concurrent": {"calls": int, "concurrency": int, "sessions": int, "rate": float, "duration": float},
    "sweep": {"calls": int, "gap": float},
}
_SWEEP = {"gaps": [float], "teardowns_ms": [float], "latencies_ms": [float]}
_LOGS = {"paths": [str], "patterns": [str]}
_STEP = {"send": str, "sleep": float, "wait": str, "session": str, "expect": (str, [str]), "until": str,
         "background": bool, "count": int}
_STEP_ACTIONS = ("send", "sleep", "wait")
_SEND_ONLY = ("session", "expect", "until", "background", "count")


@dataclass
class Scenario:
    """A checked scenario, ready to run: the target, and the probe in the shape its mode's runner takes."""

    path: Path
    description: str
    mode: str
    spec: TargetSpec
    probe: ProbeConfig
    repeat: int = 1
    sweep: SweepConfig | None = None  # mode sweep
    log_paths: list[str] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)
    gates: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.stem


class ScenarioError(UsageError):
    """A bad scenario; the message names the file, the line (when known) and the key."""


@dataclass
class _Source:
    """Where values come from, to name them in errors: a file (with its text) or a ``--set`` override."""

    path: Path
    text: str
    overridden: set[tuple[str | int, ...]] = field(default_factory=set)
    allow_remote: bool = False  # the user accepted a non-loopback target named by the file (--allow-remote)

    def where(self, key: Sequence[str | int]) -> str:
        """``FILE:LINE: KEY`` (or ``FILE: --set KEY`` for an override), to start an error message with."""
        dotted = _dotted(key)
        if any(tuple(key[:n]) in self.overridden for n in range(1, len(key) + 1)):
            return f"{self.path}: --set {dotted}"
        line = _line_of(self.text, key)
        place = f"{self.path}:{line}" if line else str(self.path)
        return f"{place}: {dotted}" if dotted else place

    def fail(self, key: Sequence[str | int], problem: str) -> ScenarioError:
        return ScenarioError(f"{self.where(key)}: {problem}")


def load_scenario(path: Path, overrides: Sequence[str] = (), *, allow_remote: bool = False) -> Scenario:
    """Read, override (``key=value``, the value in TOML syntax or a bare string) and check a scenario.
    ``allow_remote``: the user accepts a non-loopback target the file names."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ScenarioError(f"{path}: nested too deep to be a scenario") from None
    source = _Source(path, text, allow_remote=allow_remote)
    for override in overrides:
        _apply_override(data, override, source)
    return _build(data, source)


def describe(path: Path) -> str:
    """The one-line description of a scenario file, or why it cannot be read."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        return f"(unreadable: {type(exc).__name__ if isinstance(exc, RecursionError) else exc})"
    description = data.get("description")
    return description.strip().splitlines()[0] if isinstance(description, str) and description.strip() else ""


def scenario_dirs() -> list[Path]:
    """Where scenarios are looked up by name: ./scenarios, then the ones shipped with ocprobe."""
    shipped = Path(__file__).resolve().parent / "scenarios"  # package data: in a wheel too
    dirs = [Path.cwd() / "scenarios", shipped]
    return [d for i, d in enumerate(dirs) if d.is_dir() and d.resolve() not in [e.resolve() for e in dirs[:i]]]


def find_scenario(name_or_path: str) -> Path:
    """A path as given, or a scenario name (with or without .toml) from ``scenario_dirs()``."""
    given = Path(name_or_path)
    if given.exists() or given.suffix == SUFFIX and given.parent != Path("."):
        return given
    stem = name_or_path[: -len(SUFFIX)] if name_or_path.endswith(SUFFIX) else name_or_path
    for directory in scenario_dirs():
        candidate = directory / f"{stem}{SUFFIX}"
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for d in scenario_dirs() for p in d.glob(f"*{SUFFIX}"))) or "none"
    raise ScenarioError(f"no scenario file or name {name_or_path!r} (known: {known})")


def list_scenarios() -> list[tuple[Path, str]]:
    seen: set[str] = set()
    found = []
    for directory in scenario_dirs():
        for path in sorted(directory.glob(f"*{SUFFIX}")):
            if path.stem not in seen:
                seen.add(path.stem)
                found.append((path, describe(path)))
    return found


# -- building ---------------------------------------------------------------------------------------

def _build(data: dict[str, Any], source: _Source) -> Scenario:
    _check_keys(data, _TOP, (), source)
    if "target" not in data:
        raise source.fail((), "missing key 'target' (embedded, openclaw@VERSION, ws://HOST:PORT or http(s)://...)")
    steps = data.get("steps")
    mode = data.get("mode") or ("steps" if steps is not None else "sweep" if "sweep" in data else "sequential")
    if mode not in MODES:
        raise source.fail(("mode",), f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
    if (mode == "steps") != (steps is not None):
        raise source.fail(("steps",) if steps is not None else ("mode",),
                          "steps belong to mode 'steps'" if steps is not None else "mode 'steps' needs [[steps]]")
    if ("sweep" in data) != (mode == "sweep"):
        raise source.fail(("sweep",) if "sweep" in data else ("mode",),
                          "a [sweep] table belongs to mode 'sweep'" if "sweep" in data else "mode 'sweep' needs a [sweep] table")
    if "iterations" in data and mode != "steps":
        raise source.fail(("iterations",), "iterations repeats the steps: it belongs to mode 'steps'")

    transport = _table(data, "transport", _TRANSPORT, source)
    gateway = _table(data, "gateway", _GATEWAY, source)
    probe_keys = {**_PROBE_COMMON, **_PROBE_BY_MODE[mode]}
    probe_table = data.get("probe", {})
    if not isinstance(probe_table, dict):
        raise source.fail(("probe",), "expected a table")
    for key in probe_table:
        if key not in probe_keys and any(key in keys for keys in _PROBE_BY_MODE.values()):
            raise source.fail(("probe", key), f"does not apply to mode {mode!r}")
    probe = _table(data, "probe", probe_keys, source)
    logs = _table(data, "logs", _LOGS, source)

    spec = _target_spec(data["target"], transport, gateway, source)
    if spec.transport == "openai" and "wait" in probe and probe["wait"] == "agent.wait":
        raise source.fail(("probe", "wait"), "agent.wait needs the ws transport")
    cfg = _probe_config(mode, probe, data, source)
    for name in LIMITS:
        if name in probe:
            _limit(name, probe[name], ("probe", name), source)
    if "iterations" in data:
        _limit("iterations", data["iterations"], ("iterations",), source)
    repeat = data.get("repeat", 1 if mode != "sweep" else 3)
    _limit("repeat", repeat, ("repeat",), source)
    try:
        validate_config(cfg)
    except UsageError as exc:
        raise source.fail(("probe",), str(exc)) from None

    patterns = logs.get("patterns", [])
    for i, pattern in enumerate(patterns):
        try:
            compile_pattern(pattern)
        except PatternError as exc:
            raise source.fail(("logs", "patterns", i), f"bad regex {pattern!r}: {exc}") from None
    watched = log_patterns(patterns)
    gates = data.get("gates", [])
    for i, gate in enumerate(gates):
        try:
            parse_gates([gate])
        except GateSyntaxError as exc:
            raise source.fail(("gates", i), str(exc)) from None
    if gates and mode == "sweep":
        raise source.fail(("gates",), "a sweep is judged per point; gates belong to the other modes")
    try:
        prepare_gates(gates, list(watched))
    except UsageError as exc:
        raise source.fail(("gates",), str(exc)) from None

    sweep = _sweep_config(data, cfg, repeat, source) if mode == "sweep" else None
    return Scenario(path=source.path, description=str(data.get("description", "")), mode=mode, spec=spec,
                    probe=cfg, repeat=repeat, sweep=sweep, log_paths=logs.get("paths", []), patterns=watched,
                    gates=gates)


# A scenario file is untrusted input (shared, downloaded, written by someone else): it may not say where a
# secret comes from, nor let one travel in clear. These keys count only when the user's own command line sets
# them (``--set`` or ``ocprobe run``'s --token-file, --token-env, --allow-insecure).
SECRET_KEYS = ("token_env", "token_file", "allow_insecure")


def _target_spec(target: str, transport: dict[str, Any], gateway: dict[str, Any], source: _Source) -> TargetSpec:
    for key in SECRET_KEYS:
        if key in transport and ("transport", key) not in source.overridden:
            raise source.fail(("transport", key), "a scenario file cannot choose where the gateway token comes from "
                                                  "or let it travel in clear: give --token-file, --token-env or "
                                                  "--allow-insecure to 'ocprobe run'")
    if not isinstance(target, str):
        raise source.fail(("target",), "expected a string")
    if ("target",) not in source.overridden and not source.allow_remote and _remote(target):
        raise source.fail(("target",), f"{target} is not on this machine: a scenario file cannot send your gateway "
                                       f"token elsewhere (run it with --allow-remote to accept this destination, "
                                       f"or name the target yourself with --set target=URL)")
    for key, allowed in (("profile", PROFILES), ("queue_mode", QUEUE_MODES)):
        if key in gateway and gateway[key] not in allowed:
            raise source.fail(("gateway", key), f"unknown {key.replace('_', ' ')} {gateway[key]!r} (choose from {', '.join(allowed)})")
    if "name" in transport and transport["name"] not in TRANSPORT_NAMES:
        raise source.fail(("transport", "name"), f"unknown transport {transport['name']!r} (choose from {', '.join(TRANSPORT_NAMES)})")
    defaults = EmbeddedOptions()
    spec = TargetSpec(
        target=target,
        embedded=EmbeddedOptions(
            profile=gateway.get("profile", defaults.profile), teardown_ms=gateway.get("teardown_ms", defaults.teardown_ms),
            protocol=gateway.get("protocol"),
            latency_ms=gateway.get("latency_ms", defaults.latency_ms), jitter_ms=gateway.get("jitter_ms", 0.0),
            drop_queued=gateway.get("drop_queued", False), queue_mode=gateway.get("queue_mode", defaults.queue_mode),
        ),
        openclaw=OpenClawOptions(
            config_fragment=_relative(source, gateway["openclaw_config"]) if "openclaw_config" in gateway else None,
            **({"latency_ms": gateway["latency_ms"]} if "latency_ms" in gateway else {}),
        ),
        transport=transport.get("name"), relay_body=transport.get("relay_body"), reply_path=transport.get("reply_path"),
        openai_model=transport.get("openai_model"), openai_stream=transport.get("stream", True),
        token_file=Path(transport["token_file"]) if "token_file" in transport else None,  # the user's, from their cwd
        allow_insecure=transport.get("allow_insecure", False),
        **({"token_env": transport["token_env"]} if "token_env" in transport else {}),
    )
    try:
        # The token of an external target is read when the scenario runs, not when it is checked.
        validate_target(copy.deepcopy(spec)) if target == EMBEDDED or target.startswith(("embedded:", "openclaw@")) \
            else _validate_external(spec)
    except UsageError as exc:
        raise source.fail(("target",), str(exc)) from None
    return spec


def _remote(target: str) -> bool:
    """A ws/http target whose host is not loopback (where a token would leave the machine)."""
    try:
        parts = urlsplit(target)
        return parts.scheme in ("ws", "wss", "http", "https") and not is_loopback(parts.hostname or "")
    except ValueError:
        return False  # refused later, with the reason


def _validate_external(spec: TargetSpec) -> None:
    """Everything ``validate_target`` checks except the token, which need not exist at check time."""
    probe = copy.deepcopy(spec)
    probe.token_file, probe.token_env = None, "\0unset"  # an env name no environment holds
    try:
        validate_target(probe)
    except UsageError as exc:
        if "token" not in str(exc):
            raise


def _probe_config(mode: str, probe: dict[str, Any], data: dict[str, Any], source: _Source) -> ProbeConfig:
    common = dict(session_key=probe.get("session_key", DEFAULT_SESSION_KEY), message=probe.get("message", DEFAULT_MESSAGE),
                  wait=probe.get("wait", "final"), timeout=probe.get("timeout", 30.0), floor_ms=probe.get("floor_ms"),
                  settle=probe.get("settle"))
    if common["wait"] not in WAIT_MODES:
        raise source.fail(("probe", "wait"), f"unknown wait {common['wait']!r} (choose from {', '.join(WAIT_MODES)})")
    if "message" in probe:
        _check_template(probe["message"], ("probe", "message"), source)
    if mode == "steps":
        return ScriptConfig(**common, steps=_steps(data["steps"], source), iterations=data.get("iterations", 1))
    if mode == "concurrent":
        return ConcurrentConfig(**common, **{k: probe[k] for k in _PROBE_BY_MODE["concurrent"] if k in probe})
    return SequentialConfig(**common, **{k: probe[k] for k in _PROBE_BY_MODE["sequential"] if k in probe})


def _steps(raw: Any, source: _Source) -> list[Step]:
    if not isinstance(raw, list) or not raw:
        raise source.fail(("steps",), "expected at least one [[steps]] table")
    steps: list[Step] = []
    for i, step in enumerate(raw):
        key = ("steps", i)
        if not isinstance(step, dict):
            raise source.fail(key, "expected a table")
        _check_keys(step, _STEP, key, source)
        actions = [a for a in _STEP_ACTIONS if a in step]
        if len(actions) != 1:
            raise source.fail(key, f"a step has exactly one of {', '.join(_STEP_ACTIONS)} (got {', '.join(actions) or 'none'})")
        action = actions[0]
        if action != "send":
            extra = [k for k in _SEND_ONLY if k in step]
            if extra:
                raise source.fail((*key, extra[0]), f"belongs to a send step, not a {action} step")
        if action == "sleep":
            _limit("gap", step["sleep"], (*key, "sleep"), source)
            steps.append(SleepStep(float(step["sleep"])))
        elif action == "wait":
            if step["wait"] != "background":
                raise source.fail((*key, "wait"), f"unknown wait {step['wait']!r} (a wait step waits for 'background' sends)")
            steps.append(WaitStep())
        else:
            _check_template(step["send"], (*key, "send"), source)
            expect = step.get("expect", ["real"])
            expect = [expect] if isinstance(expect, str) else expect
            for cls in expect:
                if cls != "any" and cls not in CLASS_NAMES:
                    raise source.fail((*key, "expect"), f"unknown class {cls!r} (choose from {', '.join(CLASS_NAMES)}, or any)")
            until = step.get("until", "final")
            if until not in WAIT_MODES:
                raise source.fail((*key, "until"), f"unknown until {until!r} (choose from {', '.join(WAIT_MODES)})")
            count = step.get("count", 1)
            _limit("calls", count, (*key, "count"), source)
            if "session" in step and not step["session"].strip():
                raise source.fail((*key, "session"), "must not be empty")
            steps.append(SendStep(message=step["send"], session_key=step.get("session"),
                                  expect=() if "any" in expect else tuple(expect), until=until,
                                  background=step.get("background", False), count=count))
    if not any(isinstance(s, SendStep) for s in steps):
        raise source.fail(("steps",), "no step sends anything")
    return steps


def _sweep_config(data: dict[str, Any], probe: ProbeConfig, repeat: int, source: _Source) -> SweepConfig:
    sweep = _table(data, "sweep", _SWEEP, source)
    given = [(k, v) for k, v in sweep.items()]
    if len(given) != 1:
        raise source.fail(("sweep",), "give exactly one of gaps, teardowns_ms, latencies_ms")
    key, values = given[0]
    parameter = {"gaps": "gap", "teardowns_ms": "teardown_ms", "latencies_ms": "latency_ms"}[key]
    try:
        points = check_values(values, parameter, source.where(("sweep", key)))
    except UsageError as exc:
        raise ScenarioError(str(exc)) from None
    assert isinstance(probe, SequentialConfig)
    if parameter != "gap" and data["target"] != EMBEDDED and not str(data["target"]).startswith(f"{EMBEDDED}:"):
        raise source.fail(("sweep", key), "sets the embedded gateway: it needs target = \"embedded\" (or embedded:PROFILE)")
    return SweepConfig(parameter=parameter, values=points, probe=probe, repeat=repeat)


def _limit(name: str, value: float, key: tuple[str | int, ...], source: _Source) -> None:
    try:
        LIMITS[name].check(value)
    except UsageError:
        # Only now is the key's line looked up: finding it scans the file, and a file of 8,000 steps
        # checked every step's line when each was found in range (quadratic: 162 s).
        try:
            LIMITS[name].check(value, source.where(key))
        except UsageError as exc:
            raise ScenarioError(str(exc)) from None


def _relative(source: _Source, path: str) -> Path:
    """A path in a scenario is relative to the scenario file, so the file works from any directory."""
    return source.path.parent / Path(path).expanduser()


def _check_template(template: str, key: tuple[str | int, ...], source: _Source) -> None:
    try:
        validate_message_template(template)
    except UsageError as exc:
        raise source.fail(key, str(exc).replace("bad --message template", "bad template")) from None


# -- typed tables ----------------------------------------------------------------------------------

def _table(data: dict[str, Any], name: str, keys: dict[str, Any], source: _Source) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise source.fail((name,), "expected a table")
    _check_keys(table, keys, (name,), source)
    return table


def _check_keys(table: dict[str, Any], keys: dict[str, Any], prefix: tuple[str | int, ...], source: _Source) -> None:
    for key, value in table.items():
        if key not in keys:
            known = ", ".join(sorted(keys))
            raise source.fail((*prefix, key), f"unknown key (known here: {known})")
        expected = keys[key]
        if not _is_a(value, expected):
            raise source.fail((*prefix, key), f"expected {_type_name(expected)}, got {_type_name(type(value))} {value!r}")


def _is_a(value: Any, expected: Any) -> bool:
    if isinstance(expected, tuple):
        return any(_is_a(value, e) for e in expected)
    if isinstance(expected, list):
        return isinstance(value, list) and all(_is_a(v, expected[0]) for v in value)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _type_name(expected: Any) -> str:
    if isinstance(expected, tuple):
        return " or ".join(_type_name(e) for e in expected)
    if isinstance(expected, list):
        return f"a list of {_type_name(expected[0])}s"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a table",
            list: "an array"}.get(expected, expected.__name__)


# -- overrides and error locations -----------------------------------------------------------------

def _apply_override(data: dict[str, Any], override: str, source: _Source) -> None:
    """``probe.calls=20``, ``target=ws://127.0.0.1:18789``, ``gates=["fast_fail.count == 0"]``."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ScenarioError(f"--set {override!r}: expected KEY=VALUE, e.g. probe.calls=20")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare string, e.g. target=ws://127.0.0.1:18789
    parts = key.split(".")
    table = data
    for part in parts[:-1]:
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            raise ScenarioError(f"--set {key}: {part} is not a table")
    table[parts[-1]] = value
    source.overridden.add(tuple(parts))


def _dotted(key: Sequence[str | int]) -> str:
    out = ""
    for part in key:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?")
_KEY_LINE = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")


def _line_of(text: str, key: Sequence[str | int]) -> int | None:
    """The 1-based line where ``key`` (e.g. ``("steps", 2, "expect")``) is written, else the line of the
    nearest enclosing key or table that is.

    tomllib keeps no positions, so this reads the headers and ``key =`` lines of the text itself."""
    headers: dict[tuple[str | int, ...], int] = {}
    keys: dict[tuple[str | int, ...], int] = {}
    table: tuple[str | int, ...] = ()
    counts: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            name = header.group(2)
            if header.group(1) == "[[":
                counts[name] = counts.get(name, -1) + 1
                table = (*name.split("."), counts[name])
            else:
                table = tuple(name.split("."))
            headers.setdefault(table, number)
            continue
        match = _KEY_LINE.match(line)
        if match:
            keys.setdefault((*table, match.group(1)), number)
    for length in range(len(key), 0, -1):
        prefix = tuple(key[:length])
        if prefix in keys or prefix in headers:
            return keys.get(prefix) or headers[prefix]
    return None


# -- running ---------------------------------------------------------------------------------------

async def run_scenario(scenario: Scenario, *, run_dir: Path | None, observer: Any) -> Any:
    """Run a checked scenario with its mode's runner; returns its ``ProbeOutcome`` or ``SweepResult``
    (both carry ``exit_code``). ``observer``: the output sink (it observes probes and sweeps)."""
    spec = copy.deepcopy(scenario.spec)
    if scenario.sweep is not None:
        return await run_sweep(spec, scenario.sweep, log_paths=scenario.log_paths, patterns=scenario.patterns,
                               run_dir=run_dir, observer=observer)
    return await run_probe(spec, scenario.probe, log_paths=scenario.log_paths, patterns=scenario.patterns,
                           gates=scenario.gates, repeat=scenario.repeat, run_dir=run_dir, observer=observer)

"""``parity``: one sequential probe over two transports against one gateway, call by call.

A relay or an OpenAI endpoint in front of a gateway can hide or add failures (a relay that retries, one
that turns an empty final into an error). Parity sends the same sequence both ways to the same gateway,
each on its own session, and shows where the outcome sequences part."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from ocprobe.engine import ProbeEngine, SequentialConfig
from ocprobe.errors import UsageError
from ocprobe.logwatch import LogWatcher
from ocprobe.models import ProbeResult, TargetInfo
from ocprobe.runner import SessionObserver, validate_config, validate_log_paths
from ocprobe.targets import EMBEDDED, TargetSpec, make_transport, open_target, run_dir_for, validate_target
from ocprobe.transports import TRANSPORT_NAMES


@dataclass
class ParityResult:
    target: TargetInfo
    transports: tuple[str, str]
    runs: tuple[ProbeResult, ProbeResult]

    @property
    def differences(self) -> list[tuple[int, str, str]]:
        """(call number, class over the first transport, class over the second) where they differ."""
        a, b = (sorted(r.records, key=lambda c: c.index) for r in self.runs)
        return [(x.index, x.cls.value, y.cls.value) for x, y in zip(a, b) if x.cls is not y.cls]

    @property
    def exit_code(self) -> int:
        """0 the same outcome sequence both ways, 1 they differ."""
        return 1 if self.differences else 0


def sibling_endpoint(url: str, transport: str) -> str:
    """The reference gateway serves its WebSocket, relay and OpenAI endpoint on one port: the URL of
    ``transport`` next to ``url`` (any of the three)."""
    parts = urlsplit(url)
    secure = parts.scheme in ("wss", "https")
    if transport == "ws":
        return f"{'wss' if secure else 'ws'}://{parts.netloc}"
    base = f"{'https' if secure else 'http'}://{parts.netloc}"
    return f"{base}/chat.send" if transport == "relay" else f"{base}/v1"


async def run_parity(
    specs: Sequence[TargetSpec],
    cfg: SequentialConfig,
    *,
    log_paths: Sequence[str],
    patterns: Sequence[str],
    run_dir: Path | None,
    observer: SessionObserver,
) -> ParityResult:
    """``specs``: two specs (their ``transport`` set) for the same gateway. Both embedded: one reference
    stack is started and probed over both transports. Both external: each URL as given."""
    if len(specs) != 2:
        raise UsageError("parity compares exactly two transports")
    for spec in specs:
        if spec.transport is not None and spec.transport not in TRANSPORT_NAMES:
            raise UsageError(f"unknown transport {spec.transport!r} (choose from {', '.join(TRANSPORT_NAMES)})")
    embedded = [s.target == EMBEDDED for s in specs]
    if any(embedded) and not all(embedded):
        raise UsageError("parity runs against one gateway: both targets embedded, or two URLs of one external gateway")
    validate_config(cfg)
    specs = [copy.deepcopy(s) for s in specs]
    tokens = [validate_target(s) for s in specs]
    names = (str(specs[0].transport), str(specs[1].transport))
    if names[0] == names[1] and specs[0].target == specs[1].target:
        raise UsageError(f"parity needs two different transports or endpoints, got {names[0]} twice")
    validate_log_paths(log_paths)
    run_dir = run_dir_for(run_dir, cfg.probe_id)
    logs = LogWatcher(list(patterns), log_paths)
    await logs.start()
    try:
        async with open_target(specs[0], tokens[0], logs, run_dir, on_progress=observer.info) as opened:
            observer.probe_started(opened.info, cfg.calls * 2, opened.secrets)
            first_cfg = replace(cfg, session_key=f"{cfg.session_key}-{names[0]}")
            first = await ProbeEngine(opened.transport, opened.info, witness=opened.witness, logs=logs,
                                      observer=observer).run(first_cfg)
            if all(embedded):
                url, token = sibling_endpoint(str(opened.info.extra["url"]), names[1]), opened.secrets[0]
            else:
                url, token = specs[1].target, tokens[1]
            second_transport = make_transport(specs[1], url, token)
            await second_transport.open()
            try:
                # New nonces and keys: the gateway would answer a repeated idempotency key from its cache.
                second_cfg = replace(cfg, session_key=f"{cfg.session_key}-{names[1]}", probe_id=f"{cfg.probe_id}b", run=2)
                second = await ProbeEngine(second_transport, opened.info, witness=opened.witness, logs=logs,
                                           observer=observer).run(second_cfg)
            finally:
                await second_transport.close()
            return ParityResult(target=opened.info, transports=names, runs=(first, second))
    finally:
        await logs.stop()

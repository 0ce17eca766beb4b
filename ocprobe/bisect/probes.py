"""Per-version probes for ``ocprobe bisect``: ``probe(version, run_dir)`` opens one launch of a version
and yields ``batch(number) -> Batch``.

- ``GatewayProbe``: the version's gateway (``openclaw@VERSION``, or any target a function maps a version
  to) launched once per session; each batch is one probe run on its own session key (queued turns left
  over by one batch must not poison the next). A trial is a call (failed: not real), or with gates the
  whole batch (failed: the gates fail). A skip gate that holds on a batch (e.g. ``real.count == 0``: no
  call got through at all) skips the version instead: it cannot be judged, as ``git bisect skip``.
- ``CommandProbe``: the user's command, as ``git bisect run`` runs it: exit 0 good, 125 skip, 1-127 bad,
  anything else stops the bisect.
"""

from __future__ import annotations

import asyncio
import copy
import secrets
import shlex
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from ocprobe.bisect.run import BisectAborted, VersionSession
from ocprobe.bisect.search import Batch
from ocprobe.engine import DEFAULT_SESSION_KEY, ProbeConfig, ProbeEngine
from ocprobe.errors import UsageError
from ocprobe.gates import overall_status, probe_metrics
from ocprobe.logwatch import LogWatcher
from ocprobe.models import CallRecord, ProbeResult
from ocprobe.process import last_line, terminate
from ocprobe.runner import AUTO_SESSION_KEY, prepare_gates, validate_config, validate_log_paths
from ocprobe.targets import OpenTarget, TargetSpec, open_target, validate_target

VERSION_FIELD = "{version}"
KILL_GRACE = 5.0
SKIP_EXIT, ABORT_ABOVE = 125, 127  # git bisect run's codes


class _BatchObserver:
    """The engine reports each call here; the bisect reports per batch, so only calls are passed on."""

    def __init__(self, on_call: Callable[[CallRecord], None]) -> None:
        self.call_finished = on_call

    def run_finished(self, result: ProbeResult) -> None:
        pass


class GatewayProbe:
    def __init__(self, base: TargetSpec, cfg: ProbeConfig, target_for: Callable[[str], str], *,
                 patterns: Sequence[str], gates: Sequence[str] = (), skip_when: Sequence[str] = (),
                 log_paths: Sequence[str] = (),
                 on_info: Callable[[str], None] = lambda _: None,
                 on_call: Callable[[CallRecord], None] = lambda _: None,
                 on_secrets: Callable[[Sequence[str]], None] = lambda _: None) -> None:
        """``base``: every target setting but the target, which ``target_for(version)`` gives (e.g.
        ``openclaw@VERSION``). Everything is checked here, before the bisect starts. ``on_secrets``
        learns each launch's tokens, so that whatever prints can redact them."""
        validate_config(cfg)
        if cfg.session_key == AUTO_SESSION_KEY:  # every batch gets a fresh key anyway
            cfg = replace(cfg, session_key=DEFAULT_SESSION_KEY)
        validate_log_paths(log_paths)
        self.patterns = list(patterns)
        self.gates = prepare_gates(gates, self.patterns)  # a log gate's pattern joins the watched ones
        self.skip_when = prepare_gates(skip_when, self.patterns)
        validate_target(copy.deepcopy(base))
        self.base, self.cfg, self.target_for = base, cfg, target_for
        self.log_paths = list(log_paths)
        self.on_info, self.on_call, self.on_secrets = on_info, on_call, on_secrets

    @asynccontextmanager
    async def __call__(self, version: str, run_dir: Path) -> AsyncIterator[VersionSession]:
        spec = copy.deepcopy(self.base)
        spec.target = self.target_for(version)
        token = validate_target(spec)
        logs = LogWatcher(self.patterns, self.log_paths)
        await logs.start()
        try:
            async with open_target(spec, token, logs, run_dir, on_progress=self.on_info) as opened:
                self.on_secrets(opened.secrets)

                async def batch(number: int) -> Batch:
                    return await self._batch(opened, logs, number)

                yield batch
        finally:
            await logs.stop()

    async def _batch(self, opened: OpenTarget, logs: LogWatcher, number: int) -> Batch:
        # Its own session key, nonces and idempotency keys: what one batch left queued stays out of the next.
        cfg = replace(self.cfg, run=number, session_key=f"{self.cfg.session_key}-b{number}",
                      probe_id=secrets.token_hex(3))
        engine = ProbeEngine(opened.transport, opened.info, witness=opened.witness, logs=logs,
                             observer=_BatchObserver(self.on_call))
        result = await engine.run(cfg)
        summary = result.summary
        figures = {k: v for k, v in summary.to_json().items() if k != "record"}
        notes = [summary.strip]
        fates = ", ".join(f"{name} {n}" for name, n in summary.fates.items() if n)
        if fates:
            notes.append(f"fates {fates}")
        logged = ", ".join(f"'{name}' {n}" for name, n in summary.log_counts.items() if n)
        if logged:
            notes.append(f"log {logged}")
        metrics = probe_metrics(summary)
        held = [gate.text for gate in self.skip_when if gate.evaluate(metrics).status == "pass"]
        if held:
            return Batch(failed=0, trials=0, calls=len(result.records), note="; ".join(notes), figures=figures,
                         skip=f"{' and '.join(held)} on batch {number} ({'; '.join(notes)})")
        if not self.gates:
            failed = sum(1 for r in result.records if not r.ok)
            return Batch(failed=failed, trials=len(result.records), calls=len(result.records),
                         note="; ".join(notes), figures=figures)
        results = [gate.evaluate(metrics) for gate in self.gates]
        status = overall_status(results)
        figures["gates"] = {r.gate.text: {"actual": r.actual, "status": r.status} for r in results}
        notes.append(f"gates {status}")
        # A gate that cannot be decided on this batch (a rate over no calls) judges nothing.
        return Batch(failed=int(status == "fail"), trials=int(status != "inconclusive"), calls=len(result.records),
                     note="; ".join(notes), figures=figures)


class CommandProbe:
    def __init__(self, template: str, timeout: float) -> None:
        try:
            argv = shlex.split(template)
        except ValueError as exc:
            raise UsageError(f"bad --cmd {template!r}: {exc}") from None
        if not argv:
            raise UsageError("--cmd is empty")
        if not any(VERSION_FIELD in arg for arg in argv):
            raise UsageError(f"--cmd must contain {VERSION_FIELD}, which is replaced by the version to test")
        if not 0 < timeout <= 86_400:
            raise UsageError(f"--cmd-timeout must be between 0 and 86400 seconds, got {timeout:g}")
        self.argv, self.timeout = argv, timeout

    @asynccontextmanager
    async def __call__(self, version: str, run_dir: Path) -> AsyncIterator[VersionSession]:
        async def batch(number: int) -> Batch:
            return await self._run(version, run_dir / f"command-{number}.log")

        yield batch

    async def _run(self, version: str, log: Path) -> Batch:
        argv = [arg.replace(VERSION_FIELD, version) for arg in self.argv]
        with log.open("wb") as out:
            try:
                # Its own session, so that a timeout stops the command's whole process group.
                proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                                                            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                raise UsageError(f"--cmd cannot run {argv[0]!r}: {exc.strerror}") from None
            try:
                code = await asyncio.wait_for(proc.wait(), self.timeout)
            except asyncio.TimeoutError:
                await terminate(proc, KILL_GRACE, group=True)  # the group: the command's own children too
                return Batch(failed=0, trials=0, calls=1, note=f"timed out (log {log})",
                             skip=f"the command timed out after {self.timeout:g} s (log {log})")
            except BaseException:
                await terminate(proc, KILL_GRACE, group=True)
                raise
        last = last_line(log, 120)
        note = f"exit {code}{f': {last}' if last else ''}"
        if code == SKIP_EXIT:
            return Batch(failed=0, trials=0, calls=1, note=note, skip=f"the command exited {SKIP_EXIT} (skip)")
        if not 0 <= code <= ABORT_ABOVE:
            raise BisectAborted(f"the command exited {code} on {version}: above {ABORT_ABOVE} (or killed by a "
                                f"signal) stops the bisect, as in git bisect run (output in {log})")
        return Batch(failed=int(code != 0), trials=1, calls=1, note=note, figures={"exit_code": code, "log": str(log)})


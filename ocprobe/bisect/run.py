"""The bisect loop: verify the endpoints, then probe the version nearest the middle of what is left until
one boundary remains, installing the versions likely next in the background meanwhile.

The version source, the installer and the per-version probe are passed in, so that tests (and other
probes, e.g. a scenario file) plug in here. A probe is ``probe(version, run_dir)``: an async context
manager (one launch of the version) yielding ``batch(number) -> Batch``, called while a verdict is wanted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

from ocprobe.bisect import search
from ocprobe.bisect.report import BisectResult, PackageDir, build_result, markdown
from ocprobe.bisect.search import BAD, GOOD, SKIP, Batch, Counts, Decision
from ocprobe.bisect.state import (
    ABORTED, DONE, INTERRUPTED, REPORT_NAME, RUNNING, BisectState, VersionRecord, save, write_atomic,
)
from ocprobe.errors import OcprobeError, UsageError

VersionSession = Callable[[int], Awaitable[Batch]]
VersionProbe = Callable[[str, Path], AbstractAsyncContextManager[VersionSession]]
# Installs one version (blocking; it runs in a worker thread), reporting progress lines; raises
# InstallError (an OcprobeError) when it cannot.
Installer = Callable[[str, Callable[[str], None]], object]


LAUNCHES = 2  # launches of a version before it is skipped as one that cannot be probed


class BisectAborted(OcprobeError):
    """The bisect cannot go on: the endpoints do not verify, or the user's command asked to stop."""

    exit_code = 1


class BisectObserver(Protocol):
    def info(self, message: str) -> None: ...  # install and launch progress

    def bisect_started(self, state: BisectState) -> None: ...

    def version_started(self, record: VersionRecord, bounds: tuple[str, str], untested: Sequence[str]) -> None: ...

    def batch_finished(self, record: VersionRecord, batch: Batch, progress: str) -> None: ...

    def version_decided(self, record: VersionRecord) -> None: ...

    def bisect_finished(self, state: BisectState, result: BisectResult | None, run_dir: Path) -> None: ...


class Prefetcher:
    """Installs versions in one background thread (an install is heavy: ~0.5 GB, both cores), in the
    order wanted. Asking for a version drops the queued installs that have not started."""

    def __init__(self, install: Installer, on_info: Callable[[str], None]) -> None:
        self._install = install
        self._on_info = on_info
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocprobe-prefetch")
        self._futures: dict[str, Future[object]] = {}

    def want(self, versions: Iterable[str]) -> None:
        loop = asyncio.get_running_loop()

        def info(message: str) -> None:  # from the install thread: the observer lives on the loop
            loop.call_soon_threadsafe(self._on_info, message)

        for version in versions:
            if version not in self._futures:
                self._futures[version] = self._pool.submit(self._install, version, info)

    async def ready(self, version: str) -> None:
        """Until ``version`` is installed; raises the install's error."""
        future = self._futures.get(version)
        if future is None or not (future.running() or future.done()):
            # It would wait behind installs queued for a branch the search did not take: drop those.
            for other, queued in list(self._futures.items()):
                if other != version and queued.cancel():
                    del self._futures[other]
            self.want([version])
        await asyncio.wrap_future(self._futures[version])

    def close(self) -> None:
        # An install already running finishes in its thread (npm leaves no half install: it is staged).
        self._pool.shutdown(wait=False, cancel_futures=True)


class Bisector:
    def __init__(self, state: BisectState, run_dir: Path, probe: VersionProbe, observer: BisectObserver, *,
                 installer: Installer | None = None, package_dir: PackageDir = lambda _: None,
                 prefetch: bool = True) -> None:
        self.state = state
        self.run_dir = run_dir
        self.probe = probe
        self.observer = observer
        self.package_dir = package_dir
        self.lookahead = prefetch
        self._installer = installer
        self._prefetcher: Prefetcher | None = None
        self._started = 0.0  # set by run()
        self._old = search.old_verdict(state.versions, state.good)

    # -- the log ---------------------------------------------------------------------------------
    def _save(self) -> None:
        save(self.state, self.run_dir)

    def _finish(self, status: str, message: str, result: BisectResult | None) -> None:
        self.state.elapsed_s = time.monotonic() - self._started
        self.state.status, self.state.message = status, message
        self.state.result = result.to_json() if result else None
        self._save()
        write_atomic(self.run_dir / REPORT_NAME, markdown(self.state, result, self.run_dir))
        self.observer.bisect_finished(self.state, result, self.run_dir)

    # -- the whole bisect ------------------------------------------------------------------------
    async def run(self) -> BisectResult:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._started = time.monotonic() - self.state.elapsed_s  # a resumed bisect adds to its earlier time
        self.state.status, self.state.message = RUNNING, ""
        self._save()
        self.observer.bisect_started(self.state)
        if self._installer is not None:
            self._prefetcher = Prefetcher(self._installer, self.observer.info)
        try:
            await self._verify_endpoints()
            while (version := self._next()) is not None:
                await self._decide(self.state.add(version, "candidate"))
            result = build_result(self.state, self.package_dir)
        except BisectAborted as exc:
            self._finish(ABORTED, str(exc), None)
            raise
        except BaseException as exc:  # Ctrl-C (a cancellation inside asyncio.run), a lost target, a bug
            cut = isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError))
            self._finish(INTERRUPTED, "interrupted" if cut else str(exc) or type(exc).__name__, None)
            raise
        finally:
            if self._prefetcher is not None:
                self._prefetcher.close()
        self._finish(DONE, "", result)
        return result

    def _next(self) -> str | None:
        # A version cut short by an interrupt is finished first, wherever the search would go now.
        pending = [r.version for r in self.state.records if r.verdict is None and r.role == "candidate"]
        return pending[0] if pending else search.next_version(self.state.versions, self.state.verdicts(), self._old)

    def _announce(self, record: VersionRecord) -> None:
        """The step, and the range still open around it: the boundary versions and what lies untested between."""
        verdicts = self.state.verdicts()
        if record.role == "candidate":
            lo, hi = search.boundary(self.state.versions, verdicts, self._old)
        else:
            lo, hi = 0, len(self.state.versions) - 1
        untested = [v for v in self.state.versions[lo + 1:hi] if v not in verdicts]
        self.observer.version_started(record, (self.state.versions[lo], self.state.versions[hi]), untested)

    # -- the endpoints ---------------------------------------------------------------------------
    def _endpoints(self) -> tuple[VersionRecord, VersionRecord]:
        bad = self.state.add(self.state.bad, "bad")  # first: it is probed first
        return self.state.add(self.state.good, "good"), bad

    def _endpoint_check(self) -> search.EndpointCheck:
        good, bad = self._endpoints()
        return search.check_endpoints(good.counts, good.calls, bad.counts, bad.calls, level=self.state.level,
                                      max_calls=self.state.max_calls, exact=self.state.exact,
                                      good_label=good.version, bad_label=bad.version)

    async def _verify_endpoints(self) -> None:
        good, bad = self._endpoints()
        if good.verdict == GOOD and bad.verdict == BAD:
            return  # verified before an interrupt
        self._prefetch([bad.version, good.version, *self._middle_guess()])
        while True:
            check = self._endpoint_check()
            if check.action == "verified":
                for record, verdict in ((bad, BAD), (good, GOOD)):
                    record.verdict, record.evidence = verdict, check.message
                    self.observer.version_decided(record)
                self._save()
                return
            if check.action == "abort":
                raise BisectAborted(check.message)
            record = good if check.action == "more-good" else bad
            self._announce(record)
            await self._session(record, lambda action=check.action: self._endpoint_check().action == action)
            if record.verdict == SKIP:
                raise BisectAborted(f"--{record.role} {record.version}: {record.evidence}")

    def _middle_guess(self) -> list[str]:
        """The first candidate, whatever the endpoints turn out: worth installing while they are probed."""
        guess = search.next_version(self.state.versions, {self.state.versions[0]: self._old,
                                                          self.state.versions[-1]: BAD if self._old == GOOD else GOOD},
                                    self._old)
        return [guess] if guess else []

    # -- a candidate -----------------------------------------------------------------------------
    def _reference(self, verdict: str) -> tuple[Counts, str]:
        """Every version decided ``verdict`` so far, pooled: the bisect assumes the versions on each side of
        the change behave alike, and the references grow with each verdict (the endpoints alone are often
        too small to call a flaky version bad, and their failure rates are noisy)."""
        records = [r for r in self.state.records if r.verdict == verdict]
        counts = Counts(sum(r.counts.failed for r in records), sum(r.counts.trials for r in records))
        return counts, ", ".join(r.version for r in records)

    def _judge(self, record: VersionRecord) -> Decision:
        (good, good_label), (bad, bad_label) = self._reference(GOOD), self._reference(BAD)
        return search.judge_candidate(record.counts, record.calls, good, bad, level=self.state.level,
                                      max_calls=self.state.max_calls, exact=self.state.exact,
                                      good_label=good_label, bad_label=bad_label)

    async def _decide(self, record: VersionRecord) -> None:
        self._announce(record)
        # This version first: resumed, or not guessed while the endpoints ran, it is not queued yet, and the
        # one prefetch worker would otherwise install a guess before it.
        self._prefetch([record.version,
                        *search.upcoming(self.state.versions, self.state.verdicts(), self._old, record.version)])
        if self._judge(record).verdict is None:  # resumed right after its last batch: no launch needed
            await self._session(record, lambda: self._judge(record).verdict is None)
        if record.verdict is None:
            decision = self._judge(record)
            record.verdict, record.evidence = decision.verdict, decision.evidence
        self._save()
        self.observer.version_decided(record)

    # -- probing ---------------------------------------------------------------------------------
    def _prefetch(self, versions: Sequence[str]) -> None:
        if self._prefetcher is not None and self.lookahead:
            self._prefetcher.want(v for v in versions if self.state.verdicts().get(v) is None)

    async def _session(self, record: VersionRecord, wanted: Callable[[], bool]) -> None:
        """Batches of ``record``'s version while ``wanted()``, on one launch. A launch that fails or loses its
        gateway is tried once more (a loaded machine starves a gateway for seconds); then the version is a
        SKIP with the reason, as is one that cannot be installed or whose probe says it cannot be judged."""
        started = time.monotonic()
        try:
            if self._prefetcher is not None:
                await self._prefetcher.ready(record.version)
            for attempt in range(1, LAUNCHES + 1):
                try:
                    await self._launch(record, wanted)
                    return
                except (UsageError, BisectAborted):
                    raise
                except (OcprobeError, OSError) as exc:  # TargetUnreachable, a gateway that would not start
                    if attempt == LAUNCHES:
                        raise
                    self.observer.info(f"{record.version}: {exc}; launching it again")
        except (UsageError, BisectAborted):
            raise
        except (OcprobeError, OSError) as exc:  # also InstallError: installing again would fail the same way
            record.verdict, record.evidence = SKIP, f"cannot be probed: {exc}"
        finally:
            record.seconds += time.monotonic() - started
            self._save()

    async def _launch(self, record: VersionRecord, wanted: Callable[[], bool]) -> None:
        record.sessions += 1
        session_dir = self.run_dir / record.version / f"session-{record.sessions}"
        session_dir.mkdir(parents=True, exist_ok=True)
        async with self.probe(record.version, session_dir) as batch:
            while wanted():
                result = await batch(len(record.batches) + 1)
                record.batches.append(result)
                if result.skip:  # decided with the batch, in the same save: a resume cannot judge its counts
                    record.verdict, record.evidence = SKIP, result.skip
                self._save()
                self.observer.batch_finished(record, result, self._judge_progress(record))
                if result.skip:
                    return

    def _judge_progress(self, record: VersionRecord) -> str:
        if record.role != "candidate":
            return ""
        return self._judge(record).evidence

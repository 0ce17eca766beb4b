"""Bisect: the verdict statistics, the search with skips, the loop with a fake version source, installer and
a seeded probe (flaky versions, an install failure, resume, prefetch), and end to end against the reference
gateway with a profile standing in for each version."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import textwrap
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from ocprobe.bisect import search
from ocprobe.bisect.probes import GatewayProbe
from ocprobe.bisect.report import changelog_between, changelog_sections, git_commands, repository_url
from ocprobe.bisect.run import Bisector, BisectAborted, VersionSession
from ocprobe.bisect.search import (
    BAD, GOOD, SKIP, UNKNOWN, Batch, Counts, check_endpoints, judge_candidate, next_version, p_fails_more,
    upcoming, version_range,
)
from ocprobe.bisect.state import ABORTED, DONE, INTERRUPTED, REPORT_NAME, BisectState, load
from ocprobe.engine import SequentialConfig
from ocprobe.errors import TargetUnreachable, UsageError
from ocprobe.openclaw.npm import InstallError
from ocprobe.runner import log_patterns
from ocprobe.scenario import load_scenario
from ocprobe.targets import EmbeddedOptions, TargetSpec

VERSIONS = [f"1.{i}.0" for i in range(10)]  # 1.0.0 .. 1.9.0


# -- statistics ------------------------------------------------------------------------------------

def test_one_sided_fisher_is_the_hypergeometric_tail() -> None:
    # 5 of 10 failed vs 0 of 20: every failure in the first sample, C(10,5) / C(30,5).
    assert p_fails_more(Counts(5, 10), Counts(0, 20)) == pytest.approx(math.comb(10, 5) / math.comb(30, 5))
    # R: fisher.test(matrix(c(3, 7, 1, 9), 2), alternative = "greater")$p.value = 0.2910
    assert p_fails_more(Counts(3, 10), Counts(1, 10)) == pytest.approx(0.29102, abs=1e-5)
    assert p_fails_more(Counts(0, 10), Counts(5, 10)) == 1.0
    assert p_fails_more(Counts(2, 5), Counts(0, 0)) == 1.0  # nothing to compare with


def test_enough_clean_calls_is_the_same_test_the_other_way_round() -> None:
    # No failure in n calls against f of b failed on the bad side: C(b, f) / C(b + n, f).
    assert p_fails_more(Counts(10, 20), Counts(0, 10)) == pytest.approx(math.comb(20, 10) / math.comb(30, 10))


def judge(c: Counts, calls: int | None = None, good: Counts = Counts(0, 20), bad: Counts = Counts(10, 20),
          exact: bool = False) -> search.Decision:
    return judge_candidate(c, c.trials if calls is None else calls, good, bad, level=0.01, max_calls=50, exact=exact,
                           good_label="1.0.0", bad_label="1.9.0")


def test_candidate_verdicts() -> None:
    assert judge(Counts(0, 10)).verdict == GOOD  # p = 0.006
    assert judge(Counts(0, 7)).verdict is None  # p = 0.022: one more batch
    bad = judge(Counts(5, 10))
    assert bad.verdict == BAD and "more than 0/20 on 1.0.0 (good): one-sided Fisher p = 0.0018 < 0.01" in bad.evidence
    assert judge(Counts(1, 10)).verdict is None  # too few failures to be bad, too many to be surely good
    good = judge(Counts(1, 20))
    assert good.verdict == GOOD and "fewer than 10/20 on 1.9.0 (bad)" in good.evidence  # a rare failure
    # Between a good side that fails 10% and a bad one that fails 50%, 15/50 is neither.
    assert judge(Counts(15, 50), calls=40, good=Counts(2, 20)).verdict is None
    unknown = judge(Counts(15, 50), calls=50, good=Counts(2, 20))
    assert unknown.verdict == UNKNOWN and "undecided after 50 calls" in unknown.evidence
    assert judge(Counts(0, 0), calls=50).verdict == UNKNOWN  # gates that never decided anything
    assert judge(Counts(1, 1), exact=True).verdict == BAD and judge(Counts(0, 1), exact=True).verdict == GOOD


def endpoints(good: Counts, bad: Counts, good_calls: int | None = None, bad_calls: int | None = None,
              exact: bool = False) -> search.EndpointCheck:
    return check_endpoints(good, good.trials if good_calls is None else good_calls, bad,
                           bad.trials if bad_calls is None else bad_calls, level=0.01, max_calls=50, exact=exact,
                           good_label="1.0.0", bad_label="1.9.0")


def test_endpoints_bad_first_until_its_failures_could_be_told_from_a_clean_sample() -> None:
    assert endpoints(Counts(0, 0), Counts(0, 0)).action == "more-bad"
    assert endpoints(Counts(0, 0), Counts(0, 10)).action == "more-bad"  # nothing failed yet
    assert endpoints(Counts(0, 0), Counts(5, 10)).action == "more-bad"  # 5/10 vs 0/10: p = 0.016
    assert endpoints(Counts(0, 0), Counts(10, 20)).action == "more-good"
    # p = 0.006, but a reference of 10 trials is too small to judge others by: as many as the bad one.
    assert endpoints(Counts(0, 10), Counts(10, 20)).action == "more-good"
    verified = endpoints(Counts(0, 20), Counts(10, 20))
    assert verified.action == "verified" and "10/20 failed on 1.9.0 vs 0/20 on 1.0.0" in verified.message
    swapped = endpoints(Counts(10, 20), Counts(1, 20))
    assert swapped.action == "abort" and "swapped" in swapped.message
    never = endpoints(Counts(0, 0), Counts(0, 50))
    assert never.action == "abort" and "--bad 1.9.0 does not fail: 0/50 failed in 50 calls" in never.message
    same = endpoints(Counts(5, 50), Counts(6, 50))
    assert same.action == "abort" and "does not tell --good 1.0.0 from --bad 1.9.0" in same.message
    assert endpoints(Counts(5, 30), Counts(6, 50)).action == "more-good"
    assert endpoints(Counts(0, 1), Counts(1, 1), exact=True).action == "verified"
    assert endpoints(Counts(1, 1), Counts(1, 1), exact=True).action == "abort"


# -- the range and the search ----------------------------------------------------------------------

def test_range_in_release_order_with_prereleases_and_tags() -> None:
    published = ["2026.5.4", "2026.4.26", "2026.5.3", "2026.4.29-beta.4", "2026.4.29", "2026.4.29-beta.1",
                 "2026.5.3-1", "2026.4.27", "2026.4.30-beta.1", "2026.5.2", "not-a-version"]
    good, bad, versions = version_range(published, {"latest": "2026.5.4"}, "2026.4.26", "latest", prerelease=True)
    assert (good, bad) == ("2026.4.26", "2026.5.4")
    # By precedence, not by list order (publish dates): 5.3-1 is a prerelease of 5.3, so it sorts before it.
    assert versions == ["2026.4.26", "2026.4.27", "2026.4.29-beta.1", "2026.4.29-beta.4", "2026.4.29",
                        "2026.4.30-beta.1", "2026.5.2", "2026.5.3-1", "2026.5.3", "2026.5.4"]
    _, _, stable = version_range(published, {}, "2026.4.29-beta.1", "2026.5.3", prerelease=False)
    assert stable == ["2026.4.29-beta.1", "2026.4.29", "2026.5.2", "2026.5.3"]  # an endpoint stays
    _, _, fix = version_range(published, {}, "2026.5.4", "2026.5.2", prerelease=False)
    assert fix == ["2026.5.2", "2026.5.3", "2026.5.4"] and search.old_verdict(fix, "2026.5.4") == BAD
    with pytest.raises(UsageError, match="--bad '2026.9.9' is not a published version"):
        version_range(published, {}, "2026.4.26", "2026.9.9", prerelease=True)
    with pytest.raises(UsageError, match="the same version"):
        version_range(published, {}, "2026.4.26", "2026.4.26", prerelease=True)


def test_search_picks_the_middle_and_passes_over_skips() -> None:
    verdicts = {VERSIONS[0]: GOOD, VERSIONS[9]: BAD}
    assert next_version(VERSIONS, verdicts, GOOD) == "1.4.0"  # indices 1..8: 4 and 5 tie, the older wins
    assert upcoming(VERSIONS, verdicts, GOOD, "1.4.0") == ["1.6.0", "1.2.0", "1.5.0"]  # if good, bad, skipped
    verdicts.update({"1.4.0": SKIP})
    assert next_version(VERSIONS, verdicts, GOOD) == "1.5.0"
    verdicts.update({"1.5.0": BAD, "1.3.0": GOOD})
    assert next_version(VERSIONS, verdicts, GOOD) is None  # only the skipped 1.4.0 is left inside
    assert search.boundary(VERSIONS, verdicts, GOOD) == (3, 5)
    fix = {VERSIONS[0]: BAD, VERSIONS[9]: GOOD, "1.4.0": BAD}
    assert next_version(VERSIONS, fix, BAD) == "1.6.0"


# -- the loop, with fakes --------------------------------------------------------------------------

class FakeProbe:
    """A version probe with a seeded failure probability per call and version (a stand-in for a gateway)."""

    def __init__(self, rates: dict[str, float], *, calls: int = 10, seed: int = 0, broken: tuple[str, ...] = (),
                 on_batch: Callable[[str], None] = lambda _: None) -> None:
        self.rates, self.calls, self.broken, self.on_batch = rates, calls, broken, on_batch
        self.rng = random.Random(seed)
        self.launches: Counter[str] = Counter()
        self.batches: Counter[str] = Counter()

    @asynccontextmanager
    async def __call__(self, version: str, run_dir: Path) -> AsyncIterator[VersionSession]:
        assert run_dir.is_dir()
        self.launches[version] += 1
        if version in self.broken:
            raise TargetUnreachable(f"openclaw {version} exited with code 1 while starting")

        async def batch(number: int) -> Batch:
            self.batches[version] += 1
            self.on_batch(version)
            failed = sum(self.rng.random() < self.rates[version] for _ in range(self.calls))
            return Batch(failed=failed, trials=self.calls, calls=self.calls, note=f"seeded {self.rates[version]}")

        yield batch


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def info(self, message: str) -> None:
        self.events.append(("info", message))

    def bisect_started(self, state: BisectState) -> None:
        self.events.append(("started", len(state.records)))

    def version_started(self, record: Any, bounds: tuple[str, str], untested: Any) -> None:
        self.events.append(("version", (record.version, bounds, list(untested))))

    def batch_finished(self, record: Any, batch: Batch, progress: str) -> None:
        self.events.append(("batch", record.version))

    def version_decided(self, record: Any) -> None:
        self.events.append(("verdict", (record.version, record.verdict)))

    def bisect_finished(self, state: BisectState, result: Any, run_dir: Path) -> None:
        self.events.append(("finished", state.status))

    def verdicts(self) -> list[tuple[str, str]]:
        return [e[1] for e in self.events if e[0] == "verdict"]


def new_state(good: str = VERSIONS[0], bad: str = VERSIONS[-1], versions: list[str] = VERSIONS, **kw: Any) -> BisectState:
    return BisectState(good=good, bad=bad, versions=list(versions), risk=kw.pop("risk", 0.01),
                       max_calls=kw.pop("max_calls", 50), exact=kw.pop("exact", False),
                       command="ocprobe bisect ...", settings={}, **kw)


def rates(first_bad: str, bad_rate: float = 0.5, good_rate: float = 0.0) -> dict[str, float]:
    return {v: bad_rate if v >= first_bad else good_rate for v in VERSIONS}


def bisect(tmp_path: Path, probe: Any, state: BisectState | None = None, **kw: Any) -> tuple[Any, BisectState, Recorder]:
    state = state or new_state()
    recorder = Recorder()
    result = asyncio.run(Bisector(state, tmp_path, probe, recorder, **kw).run())
    return result, state, recorder


def test_finds_the_first_bad_version_and_writes_log_and_report(tmp_path: Path) -> None:
    probe = FakeProbe(rates("1.6.0"))
    result, state, recorder = bisect(tmp_path, probe)
    assert (result.last_old, result.first_new, result.undecided) == ("1.5.0", "1.6.0", [])
    assert result.git == ["git bisect start v1.6.0 v1.5.0"]
    assert state.status == DONE and set(probe.launches.values()) == {1}  # one launch per version
    assert recorder.verdicts()[:2] == [("1.9.0", BAD), ("1.0.0", GOOD)]
    assert [r.version for r in state.records[:2]] == ["1.9.0", "1.0.0"]  # the bad endpoint is probed first
    assert len(state.records) - 2 <= math.ceil(math.log2(8)) + 1
    logged = load(tmp_path)
    assert logged.status == DONE and logged.result and logged.result["first_new"] == "1.6.0"
    assert [r.verdict for r in logged.records] == [r.verdict for r in state.records]
    report = (tmp_path / REPORT_NAME).read_text()
    assert "first bad 1.6.0, last good 1.5.0" in report and "| 1.6.0 | candidate | BAD |" in report
    first = [e for e in recorder.events if e[0] == "version"][2][1]
    assert first == ("1.4.0", ("1.0.0", "1.9.0"), VERSIONS[1:9])  # the step, the open range, what is untested


def test_the_log_is_whole_json_after_every_batch(tmp_path: Path) -> None:
    seen: list[int] = []

    def check(version: str) -> None:  # called as each batch runs: the last save must read back whole
        seen.append(sum(len(r.batches) for r in load(tmp_path).records))

    bisect(tmp_path, FakeProbe(rates("1.3.0"), on_batch=check))
    assert seen == sorted(seen) and seen[0] == 0 and seen[-1] == len(seen) - 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_flaky_versions_are_decided_by_statistics_not_by_one_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad versions fail only sometimes (35% of calls, at random): one small batch often shows no failure
    (0.65 ** 3 = 27%), so a bisect judging one batch of 3 calls goes wrong; the statistics do not."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # 120 bisects: durability is tested elsewhere, speed matters
    def found(seed: int, **kw: Any) -> bool:
        probe = FakeProbe(rates("1.6.0", bad_rate=0.35), seed=seed, calls=kw.pop("calls", 10))
        try:
            result, _, _ = bisect(tmp_path / str(seed), probe, new_state(**kw))
        except BisectAborted:  # the bad endpoint happened to pass
            return False
        return result.first_new == "1.6.0"

    assert sum(found(seed) for seed in range(60)) >= 57
    assert sum(found(1000 + seed, calls=3, exact=True) for seed in range(60)) <= 45


def test_a_flaky_first_bad_version_takes_more_batches_then_is_bad(tmp_path: Path) -> None:
    # Every bad version fails 35% of its calls at random; with this seed the first bad one, 1.6.0, shows
    # only 1, 1, 2 and 2 failures in its batches: too few against the bad side (10/40) to be bad at once,
    # too many to be good, until its 6/40 stands out against the good versions' pooled 0/80.
    probe = FakeProbe(rates("1.6.0", bad_rate=0.35), seed=36)
    result, state, _ = bisect(tmp_path, probe)
    flaky = state.record("1.6.0")
    assert flaky is not None and [b.failed for b in flaky.batches] == [1, 1, 2, 2]
    assert flaky.verdict == BAD and "6/40 failed, more than 0/80 on 1.0.0, 1.4.0 (good)" in flaky.evidence
    assert result.first_new == "1.6.0"


def test_install_and_start_failures_are_skipped_with_their_reason(tmp_path: Path) -> None:
    installed: list[str] = []

    def install(version: str, info: Callable[[str], None]) -> None:
        info(f"install {version}")
        if version == "1.5.0":
            raise InstallError("npm install openclaw@1.5.0 failed: code E404")
        installed.append(version)

    probe = FakeProbe(rates("1.6.0"), broken=("1.4.0",))
    result, state, recorder = bisect(tmp_path, probe, installer=install)
    skipped = {r.version: r.evidence for r in state.records if r.verdict == SKIP}
    assert skipped.keys() == {"1.4.0", "1.5.0"}
    assert "npm install openclaw@1.5.0 failed: code E404" in skipped["1.5.0"]
    assert "exited with code 1 while starting" in skipped["1.4.0"]
    assert probe.launches["1.5.0"] == 0  # a failed install is not launched
    assert probe.launches["1.4.0"] == 2  # a failed start is tried once more
    assert ("info", "1.4.0: openclaw 1.4.0 exited with code 1 while starting; launching it again") in recorder.events
    # The boundary holds the skipped versions: the change is in 1.4.0, 1.5.0 or 1.6.0 (git's "skipped" list).
    assert (result.last_old, result.first_new, result.undecided) == ("1.3.0", "1.6.0", ["1.4.0", "1.5.0"])
    assert ("info", "install 1.5.0") in recorder.events


def test_endpoints_that_cannot_be_probed_or_do_not_verify_stop_the_bisect(tmp_path: Path) -> None:
    with pytest.raises(BisectAborted, match="--bad 1.9.0 does not fail: 0/50"):
        bisect(tmp_path / "a", FakeProbe(rates("2")))
    assert load(tmp_path / "a").status == ABORTED
    assert "does not fail" in (tmp_path / "a" / REPORT_NAME).read_text()
    with pytest.raises(BisectAborted, match="--good 1.0.0: cannot be probed: openclaw 1.0.0 exited"):
        bisect(tmp_path / "b", FakeProbe(rates("1.3.0"), broken=("1.0.0",)))


def test_a_fix_is_found_when_good_is_the_newer_endpoint(tmp_path: Path) -> None:
    probe = FakeProbe({v: 0.0 if v >= "1.3.0" else 0.5 for v in VERSIONS})
    result, _, _ = bisect(tmp_path, probe, new_state(good="1.9.0", bad="1.0.0"))
    assert (result.direction, result.last_old, result.first_new) == ("fix", "1.2.0", "1.3.0")
    assert result.labels == ("last bad", "first good")
    assert result.git == ["git bisect start --term-old=broken --term-new=fixed v1.3.0 v1.2.0"]


def test_resume_continues_without_probing_decided_versions_again(tmp_path: Path) -> None:
    class Interrupt(FakeProbe):
        def __init__(self, *args: Any, stop_at: int, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self.stop_at = stop_at

        @asynccontextmanager
        async def __call__(self, version: str, run_dir: Path) -> AsyncIterator[VersionSession]:
            async with super().__call__(version, run_dir) as batch:
                async def cut(number: int) -> Batch:
                    if sum(self.batches.values()) == self.stop_at:
                        raise KeyboardInterrupt  # as Ctrl-C lands in the middle of a batch
                    return await batch(number)

                yield cut

    first = Interrupt(rates("1.6.0"), stop_at=6)
    state = new_state()
    with pytest.raises(KeyboardInterrupt):
        bisect(tmp_path, first, state)
    interrupted = load(tmp_path)
    assert interrupted.status == INTERRUPTED
    decided = {r.version for r in interrupted.records if r.verdict}
    assert decided >= {"1.0.0", "1.9.0"}
    again = FakeProbe(rates("1.6.0"), seed=1)
    result, resumed, _ = bisect(tmp_path, again, interrupted)
    assert result.first_new == "1.6.0" and resumed.status == DONE
    assert not decided & set(again.launches)  # nothing decided was probed again
    assert resumed.calls == sum(r.calls for r in resumed.records) and resumed.elapsed_s >= interrupted.elapsed_s


def test_installs_of_the_next_candidates_are_prefetched_while_a_probe_runs(tmp_path: Path) -> None:
    requested: list[str] = []
    lock = threading.Lock()

    def install(version: str, info: Callable[[str], None]) -> None:
        with lock:
            requested.append(version)

    ahead: dict[str, list[str]] = {}

    def snapshot(version: str) -> None:
        time.sleep(0.05)  # a probe takes a while: the prefetch thread gets its turn
        with lock:
            ahead.setdefault(version, list(requested))

    result, state, _ = bisect(tmp_path, FakeProbe(rates("1.6.0"), on_batch=snapshot), installer=install)
    verdicts = {VERSIONS[0]: GOOD, VERSIONS[9]: BAD}
    assert "1.4.0" in ahead["1.9.0"]  # the first candidate, installed while the endpoints are probed
    for record in state.records[2:]:
        for following in upcoming(VERSIONS, verdicts, GOOD, record.version):
            assert following in ahead[record.version], (record.version, following)
        verdicts[record.version] = record.verdict
    assert result.first_new == "1.6.0"


# -- changelog and git -----------------------------------------------------------------------------

CHANGELOG = """# Changelog

## 2026.5.4

### Fixes

- Gateway/chat: clear the active reply-run guard before draining queued follow-up turns. Fixes #77485.

## 2026.5.3-1

- Plugins: a hotfix.

## 2026.5.3

- Something in 5.3.

## 2026.4.29

- Queue defaults.
"""


def test_changelog_between_the_boundary_versions(tmp_path: Path) -> None:
    assert [v for v, _ in changelog_sections(CHANGELOG)] == ["2026.5.4", "2026.5.3-1", "2026.5.3", "2026.4.29"]
    (tmp_path / "CHANGELOG.md").write_text(CHANGELOG)
    (tmp_path / "package.json").write_text(json.dumps(
        {"repository": {"type": "git", "url": "git+https://github.com/openclaw/openclaw.git"}}))
    entries, source = changelog_between(tmp_path, "2026.5.3", "2026.5.4")
    assert [v for v, _ in entries] == ["2026.5.4"] and "#77485" in entries[0][1] and source
    entries, _ = changelog_between(tmp_path, "2026.4.29", "2026.5.3")
    assert [v for v, _ in entries] == ["2026.5.3-1", "2026.5.3"]  # 5.3-1 precedes 5.3 as semver has it
    assert changelog_between(None, "1", "2") == ([], None)
    url = repository_url(tmp_path)
    assert url == "https://github.com/openclaw/openclaw.git"
    assert git_commands(url, "regression", "2026.5.3", "2026.5.4") == [
        "git clone https://github.com/openclaw/openclaw.git && cd openclaw", "git bisect start v2026.5.4 v2026.5.3"]
    (tmp_path / "package.json").write_text(json.dumps({"repository": "github:openclaw/openclaw"}))
    assert repository_url(tmp_path) == "https://github.com/openclaw/openclaw"


# -- end to end: the reference gateway, a profile per version --------------------------------------

def test_bisect_against_the_reference_gateway(tmp_path: Path) -> None:
    """Four 'versions' of the reference gateway: healthy up to 1.1.0, the #77485 race from 1.2.0. Each is
    launched once and probed over loopback in batches of sequential calls, as openclaw@VERSION would be."""
    profiles = {"1.0.0": "healthy", "1.1.0": "healthy", "1.2.0": "reply-run-race", "1.3.0": "reply-run-race"}
    base = TargetSpec(target="embedded", embedded=EmbeddedOptions(latency_ms=50.0))
    probe = GatewayProbe(base, SequentialConfig(calls=10, settle=0.5), lambda v: f"embedded:{profiles[v]}",
                         patterns=log_patterns([]))
    state = new_state(good="1.0.0", bad="1.3.0", versions=list(profiles), risk=0.05, max_calls=20)
    result, state, _ = bisect(tmp_path, probe, state)
    assert (result.last_old, result.first_new) == ("1.1.0", "1.2.0")
    by_version = {r.version: r for r in state.records}
    assert by_version["1.2.0"].verdict == BAD and by_version["1.1.0"].verdict == GOOD
    race = by_version["1.3.0"].batches[0]
    assert race.note.startswith("✔✗✔✗✔✗✔✗✔✗") and "ran_late 5" in race.note
    assert race.figures["counts"]["fast_fail"] + race.figures["counts"]["empty"] == race.failed
    assert (tmp_path / "1.2.0" / "session-1" / "gateway.stderr.log").exists()  # each launch's own output


def test_a_scenario_file_is_the_probe(tmp_path: Path) -> None:
    """A scenario's scripted steps judge each call by its expectation; its target gives way to the version's."""
    scenario = tmp_path / "pair.toml"
    scenario.write_text(textwrap.dedent("""
        description = "two sends back to back, both expected real"
        target = "embedded"
        iterations = 4
        [gateway]
        latency_ms = 50
        [[steps]]
        send = "reply with {nonce}"
        expect = "real"
    """))
    loaded = load_scenario(scenario)
    profiles = {"1.0.0": "healthy", "1.1.0": "reply-run-race"}
    probe = GatewayProbe(loaded.spec, loaded.probe, lambda v: f"embedded:{profiles[v]}", patterns=loaded.patterns,
                         gates=loaded.gates, log_paths=loaded.log_paths)
    result, state, _ = bisect(tmp_path / "run", probe, new_state(good="1.0.0", bad="1.1.0", versions=list(profiles),
                                                                 risk=0.2, max_calls=12))
    assert (result.last_old, result.first_new) == ("1.0.0", "1.1.0")
    race = state.record("1.1.0")
    assert race is not None and race.batches[0].failed >= 1 and race.batches[0].calls == 4


def test_a_skip_gate_that_holds_skips_the_version(tmp_path: Path) -> None:
    """``--skip-when``: a batch on which the gate holds makes the version a SKIP (here the bad endpoint, so
    the bisect stops, naming the gate and the batch's figures)."""
    probe = GatewayProbe(TargetSpec(target="embedded", embedded=EmbeddedOptions(latency_ms=50.0)),
                         SequentialConfig(calls=4, settle=0.5), lambda v: "embedded:reply-run-race",
                         patterns=log_patterns([]), skip_when=["fate.ran_late.count >= 1"])
    with pytest.raises(BisectAborted, match=r"--bad 1.1.0: fate.ran_late.count >= 1 on batch 1 \(✔✗✔✗; fates ran_late 2"):
        bisect(tmp_path, probe, new_state(good="1.0.0", bad="1.1.0", versions=["1.0.0", "1.1.0"]))
    assert load(tmp_path).records[0].verdict == SKIP

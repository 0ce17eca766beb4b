"""The version range, the verdict rules and the choice of the next version to probe. No I/O.

A version is probed in batches; each batch gives *trials* (a call, or a whole batch when gates judge it)
and how many of them failed. The endpoints are measured first: the bad one must fail more than the good
one (one-sided Fisher exact test). Then, after every batch of a candidate, its pooled counts are tested
against the references, the pooled counts of every version decided good (the good endpoint first) and
of every version decided bad:

- BAD when it fails more than the good reference: one-sided Fisher exact test;
- GOOD when it fails less than the bad reference: the same test the other way round. With no failure at
  all this is "enough clean calls": a version failing like the bad ones would have shown none with
  probability ``C(b, f) / C(b + n, f)`` (``f`` of ``b`` bad-reference trials failed, ``n`` clean calls);
- UNKNOWN when neither holds after ``max_calls`` calls; like a version that could not be installed or
  started (SKIP), it is passed over as ``git bisect skip`` passes over a commit.

Each test is held to ``level``: the accepted risk of a wrong verdict split over the looks a version may
get (Bonferroni), so that testing again after every batch does not add up to more than the risk.

In exact mode (a user's command, as ``git bisect run``) one run decides: it failed or it did not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ocprobe.errors import UsageError
from ocprobe.openclaw.semver import Version, is_version, sort_versions
from ocprobe.stats import fisher_exact_greater

GOOD, BAD, UNKNOWN, SKIP = "good", "bad", "unknown", "skip"


@dataclass
class Batch:
    """What one batch of a version's probe measured."""

    failed: int  # trials that failed
    trials: int  # trials judged: calls, or 1 for a batch judged by gates (0 when the gates could not tell)
    calls: int  # calls spent, what --max-calls counts
    note: str = ""  # the evidence for a person: the sequence strip, fates, log counts, an exit code
    skip: str | None = None  # the probe says this version cannot be judged (a command's exit code 125)
    figures: dict[str, Any] = field(default_factory=dict)  # the batch's summary, kept in the bisect log


@dataclass(frozen=True)
class Counts:
    failed: int
    trials: int

    @property
    def rate(self) -> float:
        return self.failed / self.trials if self.trials else 0.0

    def __str__(self) -> str:
        return f"{self.failed}/{self.trials}"


@dataclass(frozen=True)
class Decision:
    verdict: str | None  # None: probe on
    evidence: str


def p_fails_more(a: Counts, b: Counts) -> float:
    """Small when ``a`` fails more often than ``b`` (``stats.fisher_exact_greater``)."""
    return fisher_exact_greater(a.failed, a.trials, b.failed, b.trials)


def _p(value: float) -> str:
    return f"{value:.2g}"


def judge_candidate(c: Counts, calls: int, good: Counts, bad: Counts, *, level: float, max_calls: int,
                    exact: bool, good_label: str, bad_label: str) -> Decision:
    """The verdict on a version from its pooled counts, or None to probe another batch. ``level``: the
    significance each look at the counts is held to (``BisectState.level``)."""
    if exact:
        if not c.trials:
            return Decision(None, "no run judged yet")
        return Decision(BAD, "the command failed") if c.failed else Decision(GOOD, "the command passed")
    p_bad = p_fails_more(c, good)
    if p_bad < level:
        return Decision(BAD, f"{c} failed, more than {good} on {good_label} (good): one-sided Fisher p = {_p(p_bad)} < {level:.2g}")
    p_good = p_fails_more(bad, c)
    if p_good < level:
        return Decision(GOOD, f"{c} failed, fewer than {bad} on {bad_label} (bad): one-sided Fisher p = {_p(p_good)} < {level:.2g}")
    if calls >= max_calls:
        return Decision(UNKNOWN, f"undecided after {calls} calls: {c} failed (p = {_p(p_bad)} vs {good} on {good_label}, "
                                 f"{_p(p_good)} vs {bad} on {bad_label}; {level:.2g} needed)")
    return Decision(None, f"{c} failed so far: p = {_p(p_bad)} vs good, {_p(p_good)} vs bad")


@dataclass(frozen=True)
class EndpointCheck:
    action: str  # verified | more-good | more-bad | abort
    message: str


def check_endpoints(good: Counts, good_calls: int, bad: Counts, bad_calls: int, *, level: float, max_calls: int,
                    exact: bool, good_label: str, bad_label: str) -> EndpointCheck:
    """Whether the bad endpoint fails more than the good one, or which endpoint needs another batch.

    The endpoints are the references every later verdict is tested against, so each must be big enough
    to decide against: the bad one is probed first, on until its failures would be significant against a
    clean sample of its own size (nothing can be compared before it fails at all); then the good one, on
    until the one-sided test decides and it has as many trials as the bad one. Each endpoint is one launch
    in the usual case; only when the good one reaches ``max_calls`` undecided does the bad one get more."""
    if exact:
        bad_short = not bad.trials
    else:
        bad_short = not bad.failed or (not good.trials and p_fails_more(bad, Counts(0, bad.trials)) >= level)
    if bad_short and bad_calls < max_calls:
        return EndpointCheck("more-bad", "")
    if not bad.failed:
        return EndpointCheck("abort", f"--bad {bad_label} does not fail: {bad} failed in {bad_calls} calls, "
                                      "so there is no change to bisect with this probe")
    if not good.trials and good_calls < max_calls:
        return EndpointCheck("more-good", "")
    if exact:
        if good.failed:
            return EndpointCheck("abort", f"--good {good_label} fails too: the command failed on both endpoints")
        return EndpointCheck("verified", f"the command failed on {bad_label} and passed on {good_label}")
    p = p_fails_more(bad, good)
    summary = f"{bad} failed on {bad_label} vs {good} on {good_label}"
    if p < level:
        if good.trials < bad.trials and good_calls < max_calls:
            return EndpointCheck("more-good", "")
        return EndpointCheck("verified", f"{summary}: one-sided Fisher p = {_p(p)} < {level:.2g}")
    p_reverse = p_fails_more(good, bad)
    if p_reverse < level:
        return EndpointCheck("abort", f"--good {good_label} fails more than --bad {bad_label} ({summary}, p = "
                                      f"{_p(p_reverse)}): are --good and --bad swapped?")
    if good_calls < max_calls:
        return EndpointCheck("more-good", "")
    if bad_calls < max_calls:
        return EndpointCheck("more-bad", "")
    return EndpointCheck("abort", f"the probe does not tell --good {good_label} from --bad {bad_label} within "
                                  f"--max-calls {max_calls}: {summary}, one-sided Fisher p = {_p(p)} >= {level:.2g}")


# -- the range and the search -----------------------------------------------------------------------

def resolve(spec: str, published: Sequence[str], tags: Mapping[str, str], option: str) -> str:
    version = tags.get(spec.strip(), spec.strip())
    if version not in published:
        raise UsageError(f"{option} {spec!r} is not a published version (nor a dist-tag)")
    return version


def version_range(published: Sequence[str], tags: Mapping[str, str], good: str, bad: str, *,
                  prerelease: bool) -> tuple[str, str, list[str]]:
    """The resolved endpoints and every published version from the older to the newer one, in release
    order (semver precedence); prereleases between them only when ``prerelease`` (never dropping an endpoint)."""
    published = sort_versions(v for v in published if is_version(v))
    good, bad = resolve(good, published, tags, "--good"), resolve(bad, published, tags, "--bad")
    if good == bad:
        raise UsageError(f"--good and --bad are the same version ({good})")
    older, newer = sorted((good, bad), key=Version.parse)
    low, high = Version.parse(older), Version.parse(newer)
    between = [v for v in published if low < Version.parse(v) < high and (prerelease or not Version.parse(v).prerelease)]
    return good, bad, [older, *between, newer]


def old_verdict(versions: Sequence[str], good: str) -> str:
    """GOOD when the good endpoint is the older one (a regression), BAD when it is the newer (a fix)."""
    return GOOD if versions[0] == good else BAD


def boundary(versions: Sequence[str], verdicts: Mapping[str, str], old: str) -> tuple[int, int]:
    """Indices of the newest version with the old verdict before the oldest with the new one."""
    new = BAD if old == GOOD else GOOD
    hi = min(i for i, v in enumerate(versions) if verdicts.get(v) == new)
    lo = max(i for i in range(hi) if verdicts.get(versions[i]) == old)
    return lo, hi


def next_version(versions: Sequence[str], verdicts: Mapping[str, str], old: str) -> str | None:
    """The untested version nearest the middle of the boundary (the older one on a tie); None when done.
    Skipped and unknown versions are passed over, so the search goes on beside them."""
    lo, hi = boundary(versions, verdicts, old)
    middle = (lo + hi) / 2
    candidates = [i for i in range(lo + 1, hi) if versions[i] not in verdicts]
    return versions[min(candidates, key=lambda i: (abs(i - middle), i))] if candidates else None


def upcoming(versions: Sequence[str], verdicts: Mapping[str, str], old: str, current: str) -> list[str]:
    """The versions probed after ``current`` for each verdict it may get (a skip last): what to install ahead."""
    new = BAD if old == GOOD else GOOD
    following = (next_version(versions, {**verdicts, current: verdict}, old) for verdict in (old, new, SKIP))
    return [v for v in dict.fromkeys(following) if v is not None]


def steps_left(count: int) -> int:
    """Probes still needed to narrow ``count`` untested versions to one boundary (no skips)."""
    return math.ceil(math.log2(count + 1)) if count else 0

"""What differs between OpenClaw releases, as data: one table of changes, each with the first release that
has it and where it was read. ``traits(version)`` folds the table into what a launch needs to know.

Every row was read from the release's npm tarball (``npm pack openclaw@VERSION``) and checked by launching
it here (docs/compatibility.md); a row names its evidence so it can be checked again. The code that uses a
trait (launch, install, the WS client, the log watch) never compares versions itself.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from ocprobe.openclaw.semver import Version

#: What every release since 2026.4 logs when a follow-up queue drain fails (#77485's race). From 5.26 a
#: drain that finds the lane busy throws FollowupRunDeferredError and retries silently, so the race itself
#: no longer logs; the lines added below are the newer releases' failures of the same family.
DRAIN_PATTERNS = ("ReplyRunAlreadyActiveError", "followup queue drain failed")
# An agent run that died before its reply ("Embedded agent failed before reply: ..."), in every release.
FAILED_BEFORE_REPLY = "failed before reply"
BASE_PATTERNS = DRAIN_PATTERNS + (FAILED_BEFORE_REPLY,)
STUCK_SESSION = "queued_work_without_active_run"  # the stuck-session watchdog's reason (5.2+)
# 5.18 .. 7.35: a same-session turn whose session file another turn rewrote (seen on 7.35 here: sequential
# gap 0 and same-session concurrent sends fail with it); gone from 8.1.
TAKEOVER = "EmbeddedAttemptSessionTakeoverError"
ADMISSION = ("followup queue drain admission failed", "Previous run is still shutting down")  # 8.1+
SCOPES = ("Async work scope is closed", "Reply operation has no active tool authority snapshot")  # 9.2+


@dataclass(frozen=True)
class ReleaseTraits:
    """A release as a launch sees it. The defaults are the oldest generation ocprobe knows (2026.4.x)."""

    protocol: int = 3  # the WebSocket protocol its gateway speaks
    agents_entries: bool = False  # agents are keyed ``agents.entries`` (else the ``agents.list`` array)
    catalog_refresh: bool = False  # ``models.catalogRefresh`` exists (older strict schemas reject the key)
    plugin_stage_dir: bool = True  # reads ``OPENCLAW_PLUGIN_STAGE_DIR`` (stages plugin deps there)
    lifecycle_pending: bool = False  # ships ``.openclaw-lifecycle-pending``: its first run completes the install
    log_patterns: tuple[str, ...] = BASE_PATTERNS  # what a probe of it watches for by default


@dataclass(frozen=True)
class Change:
    since: str  # the first release that has it
    trait: str  # a ReleaseTraits field
    value: Any
    evidence: str  # where it was read, so it can be checked again

    @property
    def since_version(self) -> Version:
        return Version.parse(self.since)


#: The table. Each row holds from ``since`` on, until a later row for the same trait.
CHANGES: tuple[Change, ...] = (
    Change("2026.5.2", "log_patterns", BASE_PATTERNS + (STUCK_SESSION,),
           "dist: reason=queued_work_without_active_run in the stuck-session warning; 4.29 lacks it"),
    Change("2026.5.12", "protocol", 4,
           "dist: PROTOCOL_VERSION = 4, MIN_CLIENT_PROTOCOL_VERSION = 4, check maxProtocol >= 4 && "
           "minProtocol <= 4; 5.7 still checks maxProtocol < 3 || minProtocol > 3"),
    Change("2026.5.18", "log_patterns", BASE_PATTERNS + (STUCK_SESSION, TAKEOVER),
           "dist: EmbeddedAttemptSessionTakeoverError 'session file changed while embedded prompt lock was "
           "released' (5.12 lacks it); 7.35 logs it on same-session sends (docs/compatibility.md)"),
    Change("2026.8.1", "agents_entries", True,
           "config schema: agents {ownership?, defaults, entries: record} (strict); agents.list is converted "
           "with a warning before validation and the config file rewritten"),
    Change("2026.8.1", "catalog_refresh", True, "config schema: models.catalogRefresh {enabled?, url?}"),
    Change("2026.8.1", "log_patterns", BASE_PATTERNS + (STUCK_SESSION,) + ADMISSION,
           "dist: 'followup queue drain admission failed for', chat.send UNAVAILABLE 'Previous run is still "
           "shutting down'; EmbeddedAttemptSessionTakeoverError gone"),
    Change("2026.8.2", "lifecycle_pending", True,
           "package ships .openclaw-lifecycle-pending (8.1 shipped dist/openclaw-install-guard, which its "
           "launcher never checks); openclaw.mjs completes it on any command"),
    Change("2026.9.2", "plugin_stage_dir", False, "dist: OPENCLAW_PLUGIN_STAGE_DIR no longer read (9.1 still reads it)"),
    Change("2026.9.2", "log_patterns", BASE_PATTERNS + (STUCK_SESSION,) + ADMISSION + SCOPES,
           "dist: throw new Error('Async work scope is closed'), 'Reply operation has no active tool authority "
           "snapshot'"),
)

_TRAITS = {f.name for f in fields(ReleaseTraits)}
assert all(c.trait in _TRAITS for c in CHANGES), "a change names an unknown trait"


def traits(version: str) -> ReleaseTraits:
    """What ``version`` is, by the table (a prerelease counts as the release it precedes, which is what its
    code is closest to: 2026.5.14-beta.1 is a v4 build)."""
    wanted = Version.parse(version)
    wanted = Version(wanted.major, wanted.minor, wanted.patch) if wanted.prerelease else wanted
    result = ReleaseTraits()
    for change in sorted(CHANGES, key=lambda c: c.since_version):
        if change.since_version <= wanted:
            result = replace(result, **{change.trait: change.value})
    return result


def table_rows() -> list[dict[str, str]]:
    """The table for docs and ``ocprobe openclaw releases``: one row a change, oldest first."""
    return [{"since": c.since, "trait": c.trait, "value": _text(c.value), "evidence": c.evidence}
            for c in sorted(CHANGES, key=lambda c: c.since_version)]


def _text(value: Any) -> str:
    return ", ".join(value) if isinstance(value, tuple) else str(value).lower() if isinstance(value, bool) else str(value)

"""The table of what differs between OpenClaw releases: ``traits()`` folding the changes (prereleases as the
release they precede), the table's own consistency, and ``table_rows()`` as docs and the CLI show it."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from ocprobe.openclaw.releases import (
    ADMISSION, BASE_PATTERNS, CHANGES, SCOPES, STUCK_SESSION, TAKEOVER, ReleaseTraits, table_rows, traits,
)
from ocprobe.openclaw.semver import Version, is_version, sort_versions

TRAIT_NAMES = {f.name for f in fields(ReleaseTraits)}
# Releases on both sides of every row of the table, and a few between.
RELEASES = ["2026.4.26", "2026.4.29", "2026.5.2", "2026.5.3", "2026.5.7", "2026.5.12", "2026.7.35", "2026.8.1",
            "2026.8.2", "2026.9.1", "2026.9.2", "2026.9.6"]


# -- traits() ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("version", "protocol"), [
    ("2026.4.26", 3), ("2026.5.7", 3), ("2026.5.12", 4), ("2026.9.6", 4),
])
def test_protocol_changes_at_5_12(version: str, protocol: int) -> None:
    assert traits(version).protocol == protocol


def test_config_schema_traits_arrive_with_8_1() -> None:
    before, after = traits("2026.7.35"), traits("2026.8.1")
    assert (before.agents_entries, before.catalog_refresh) == (False, False)
    assert (after.agents_entries, after.catalog_refresh) == (True, True)


def test_lifecycle_pending_arrives_with_8_2() -> None:
    assert traits("2026.8.1").lifecycle_pending is False
    assert traits("2026.8.2").lifecycle_pending is True


def test_plugin_stage_dir_goes_with_9_2() -> None:
    assert traits("2026.9.1").plugin_stage_dir is True
    assert traits("2026.9.2").plugin_stage_dir is False


def test_oldest_release_has_the_defaults() -> None:
    assert traits("2026.4.26") == ReleaseTraits()
    assert traits("2026.4.26").log_patterns == BASE_PATTERNS


def test_log_patterns_follow_the_lines_each_release_has() -> None:
    patterns = [traits(v).log_patterns for v in RELEASES]
    assert all(set(BASE_PATTERNS) <= set(p) for p in patterns)  # every release: the drain and a dead run
    # The session-takeover error came in 5.18 and went in 8.1; every other line, once in, stays.
    assert TAKEOVER not in traits("2026.5.12").log_patterns and TAKEOVER in traits("2026.7.35").log_patterns
    assert TAKEOVER not in traits("2026.8.1").log_patterns
    for older, newer in zip(patterns, patterns[1:]):
        assert set(older) - {TAKEOVER} <= set(newer)
    assert STUCK_SESSION not in traits("2026.4.29").log_patterns and STUCK_SESSION in traits("2026.5.2").log_patterns
    assert not set(ADMISSION) & set(traits("2026.7.35").log_patterns)
    assert set(ADMISSION) <= set(traits("2026.8.1").log_patterns)
    assert not set(SCOPES) & set(traits("2026.9.1").log_patterns)
    assert set(SCOPES) <= set(traits("2026.9.2").log_patterns)


def test_a_prerelease_counts_as_the_release_it_precedes() -> None:
    assert traits("2026.5.12-beta.1").protocol == 4  # a v4 build, though it sorts before 2026.5.12
    assert traits("2026.5.12-beta.1") == traits("2026.5.12")
    assert traits("2026.5.3-1") == traits("2026.5.3")  # npm's '-1' is a prerelease, not a later build
    assert traits("2026.9.2-rc.1").plugin_stage_dir is False
    assert traits("2026.8.1-beta.3") == traits("2026.8.1") != traits("2026.7.35")


def test_a_bad_version_is_refused() -> None:
    for bad in ("latest", "2026.5", "../2026.5.3"):
        with pytest.raises(ValueError):
            traits(bad)


# -- the table ---------------------------------------------------------------------------------------

def test_every_change_is_well_formed() -> None:
    assert CHANGES
    for change in CHANGES:
        assert change.trait in TRAIT_NAMES, change
        assert is_version(change.since), change
        assert change.since_version == Version.parse(change.since)
        assert not change.since_version.prerelease, change  # a row starts at a release
        assert change.evidence.strip(), change
        default = getattr(ReleaseTraits(), change.trait)
        assert type(change.value) is type(default), change  # same kind of value as the field holds


def test_no_change_is_redundant() -> None:
    """Each row of a trait changes its value: from the default for the first row, from the row before after."""
    for name in TRAIT_NAMES:
        rows = sorted((c for c in CHANGES if c.trait == name), key=lambda c: c.since_version)
        values = [getattr(ReleaseTraits(), name)] + [c.value for c in rows]
        for before, after in zip(values, values[1:]):
            assert before != after, (name, before, after)
        assert len({c.since for c in rows}) == len(rows), name  # one row a trait and release


def test_each_change_holds_from_its_release_on() -> None:
    for change in CHANGES:
        assert getattr(traits(change.since), change.trait) == change.value, change


# -- table_rows() ------------------------------------------------------------------------------------

def test_table_rows_are_oldest_first_and_text() -> None:
    rows = table_rows()
    assert len(rows) == len(CHANGES)
    assert [r["since"] for r in rows] == sort_versions(r["since"] for r in rows)
    assert all(set(r) == {"since", "trait", "value", "evidence"} for r in rows)
    assert all(isinstance(v, str) for r in rows for v in r.values())
    by_key = {(r["since"], r["trait"]): r["value"] for r in rows}
    assert by_key[("2026.5.12", "protocol")] == "4"
    assert by_key[("2026.8.1", "agents_entries")] == "true"
    assert by_key[("2026.9.2", "plugin_stage_dir")] == "false"
    assert by_key[("2026.5.2", "log_patterns")] == ", ".join(BASE_PATTERNS + (STUCK_SESSION,))
    assert by_key[("2026.9.2", "log_patterns")].startswith("ReplyRunAlreadyActiveError, followup queue drain failed, ")


def test_the_releases_command_shows_the_table_and_one_release() -> None:
    from typer.testing import CliRunner

    from ocprobe.cli import app

    table = CliRunner().invoke(app, ["openclaw", "releases", "--json"])
    assert table.exit_code == 0, table.output
    changes = [json.loads(line) for line in table.stdout.splitlines()]
    assert [c["since"] for c in changes] == [row["since"] for row in table_rows()]
    one = CliRunner().invoke(app, ["openclaw", "releases", "2026.9.6", "--json"])
    assert json.loads(one.stdout)["protocol"] == 4 and json.loads(one.stdout)["lifecycle_pending"] is True
    bad = CliRunner().invoke(app, ["openclaw", "releases", "../x"])
    assert bad.exit_code == 2

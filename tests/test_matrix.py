"""The compatibility matrix without a gateway: --probe specs, the choice of releases (versions, dist-tags,
ranges, sampling), cells as JSON and on disk (merging, the newest file winning, refusals), the Markdown
table, the exit code, and ``ocprobe matrix merge`` through the command line."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from ocprobe.cli import app
from ocprobe.defaults import DEFAULT_MESSAGE
from ocprobe.engine import ConcurrentConfig, SequentialConfig
from ocprobe.errors import UsageError
from ocprobe.matrix import (
    BROKEN, CELL_DIR, CELL_RECORD, CELL_SCHEMA_VERSION, COLUMNS, FAIL, MATRIX_JSON, MAX_CELL_BYTES, MAX_VERSIONS,
    PASS, Cell, ProbeOutcomeCell, ProbePlan, evenly_spaced, exit_code, markdown, parse_probe, read_cells,
    select_versions, write_cell,
)


def probe_outcome(probe: str = "sequential:n=10,gap=0", verdict: str = PASS, **overrides: Any) -> ProbeOutcomeCell:
    fields: dict[str, Any] = {
        "probe": probe, "verdict": verdict, "calls": 10, "counts": {"real": 10, "empty": 0},
        "strip": "RRRRRRRRRR", "pattern": "all real", "fates": {"answered": 10}, "log_counts": {},
        "median_ms": {"real": 1012.4}, "elapsed_s": 11.2,
    }
    return ProbeOutcomeCell(**{**fields, **overrides})


def cell(version: str, status: str = PASS, probes: list[ProbeOutcomeCell] | None = None, **overrides: Any) -> Cell:
    if probes is None:
        probes = [] if status == BROKEN else [probe_outcome(verdict=FAIL if status == FAIL else PASS)]
    return Cell(version=version, status=status, probes=probes, **overrides)


# -- --probe specs --------------------------------------------------------------------------------------

def plan(text: str, timeout: float = 30.0, settle: float | None = None) -> ProbePlan:
    return parse_probe(text, message=DEFAULT_MESSAGE, timeout=timeout, settle=settle)


def test_sequential_probe_spec() -> None:
    parsed = plan(" sequential: gap=0.50 , n=5 ", settle=2.0)
    assert isinstance(parsed.config, SequentialConfig) and not isinstance(parsed.config, ConcurrentConfig)
    assert (parsed.config.calls, parsed.config.gap, parsed.config.timeout) == (5, 0.5, 30.0)
    assert parsed.config.settle == 2.0 and parsed.config.message == DEFAULT_MESSAGE
    assert parsed.text == "sequential:n=5,gap=0.5"  # keys in their canonical order, numbers as written shortest
    timed = plan("sequential:n=3,timeout=5")
    assert timed.config.timeout == 5.0 and timed.text == "sequential:n=3,timeout=5"  # what was given is named
    assert plan("sequential").text == "sequential"
    assert plan("sequential").config.calls == SequentialConfig().calls  # every key is optional


def test_concurrent_probe_spec() -> None:
    parsed = plan("concurrent:n=12,c=3,sessions=2")
    assert isinstance(parsed.config, ConcurrentConfig)
    assert (parsed.config.calls, parsed.config.concurrency, parsed.config.sessions) == (12, 3, 2)
    assert parsed.text == "concurrent:n=12,c=3,sessions=2"
    assert plan("concurrent:sessions=1,c=4,n=8").text == "concurrent:n=8,c=4,sessions=1"
    assert plan(parsed.text).text == parsed.text  # the canonical text reads back as itself


@pytest.mark.parametrize(("spec", "says"), [
    ("burst:n=3", "MODE sequential or concurrent"),
    ("sequential;n=3", "MODE sequential or concurrent"),
    ("sequential:c=3", "unknown key 'c' for sequential"),
    ("concurrent:gap=1", "unknown key 'gap' for concurrent"),
    ("sequential:n=abc", "n must be a whole number, got 'abc'"),
    ("sequential:n=1.5", "n must be a whole number, got '1.5'"),
    ("concurrent:c=two", "c must be a whole number, got 'two'"),
    ("sequential:gap=soon", "gap must be a number, got 'soon'"),
])
def test_bad_probe_specs_are_refused_naming_the_spec(spec: str, says: str) -> None:
    with pytest.raises(UsageError) as refused:
        plan(spec)
    assert f"--probe {spec!r}" in str(refused.value) and says in str(refused.value)


@pytest.mark.parametrize(("spec", "says"), [
    ("sequential:n=0", "--probe 'sequential:n=0': n must be between 1 and 100000, got 0"),
    ("concurrent:n=4,c=0", "--probe 'concurrent:n=4,c=0': c must be between 1 and 1000, got 0"),
    ("concurrent:sessions=0", "--probe 'concurrent:sessions=0': sessions must be between 1 and 1000, got 0"),
    ("sequential:gap=-1", "--probe 'sequential:gap=-1': gap must be between 0 and 3600, got -1"),
    ("sequential:timeout=0", "--probe 'sequential:timeout=0': timeout must be between 0 and 3600, got 0"),
])
def test_out_of_range_probe_values_are_refused(spec: str, says: str) -> None:
    with pytest.raises(UsageError, match="^" + re.escape(says) + "$"):
        plan(spec)


# -- choosing releases ----------------------------------------------------------------------------------

PUBLISHED = ["2026.5.14", "2026.5.3", "2026.5.7", "2026.5.12-beta.1", "2026.5.12", "2026.5.9-beta.2", "2026.6.1",
             "2026.4.26", "not-a-version"]
TAGS = {"latest": "2026.6.1", "beta": "2026.5.12-beta.1"}


def choose(versions: str | None = None, version_range: str | None = None, sample: int = 0,
           prerelease: bool = False, published: list[str] = PUBLISHED) -> list[str]:
    return select_versions(published, TAGS, versions=versions, version_range=version_range, sample=sample,
                           prerelease=prerelease)


def test_versions_and_dist_tags() -> None:
    assert choose(versions="latest, 2026.5.7") == ["2026.5.7", "2026.6.1"]
    assert choose(versions="beta") == ["2026.5.12-beta.1"]  # named, a prerelease is taken
    with pytest.raises(UsageError, match="'2026.5.8' is not a published openclaw version"):
        choose(versions="2026.5.7,2026.5.8")
    with pytest.raises(UsageError, match="'not-a-version' is not a published"):
        choose(versions="not-a-version")


def test_range_includes_both_ends_and_leaves_prereleases_out() -> None:
    assert choose(version_range="2026.5.7..2026.5.14") == ["2026.5.7", "2026.5.12", "2026.5.14"]
    assert choose(version_range="2026.5.7..2026.5.14", prerelease=True) == [
        "2026.5.7", "2026.5.9-beta.2", "2026.5.12-beta.1", "2026.5.12", "2026.5.14"]
    assert choose(version_range="2026.5.12..latest") == ["2026.5.12", "2026.5.14", "2026.6.1"]  # a tag as an end
    assert choose(version_range="2026.5.8..2026.5.13") == ["2026.5.12"]  # ends need not be published


def test_reversed_range_is_the_same_range() -> None:
    assert choose(version_range="2026.5.14..2026.5.7") == choose(version_range="2026.5.7..2026.5.14")


def test_empty_range_is_refused_clearly() -> None:
    with pytest.raises(UsageError) as refused:
        choose(version_range="2026.5.8..2026.5.10")  # only 2026.5.9-beta.2 in it
    assert str(refused.value) == ("--range '2026.5.8..2026.5.10' holds no published version "
                                  "(prereleases left out; --prerelease takes them)")
    assert choose(version_range="2026.5.8..2026.5.10", prerelease=True) == ["2026.5.9-beta.2"]
    with pytest.raises(UsageError, match=r"holds no published version$"):
        choose(version_range="2027.1.1..2027.2.1", prerelease=True)


@pytest.mark.parametrize(("bad", "says"), [
    ("2026.5.7-2026.5.14", "write OLDEST..NEWEST"),
    ("nightly..2026.5.14", "'nightly' is not a version"),
    ("2026.5.7..", "'' is not a version"),
])
def test_malformed_range_is_refused(bad: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        choose(version_range=bad)


def test_sample_spreads_over_the_range_with_both_ends() -> None:
    published = [f"2026.5.{i}" for i in range(1, 11)]  # ten releases
    picked = choose(version_range="2026.5.1..2026.5.10", sample=4, published=published)
    assert picked == ["2026.5.1", "2026.5.4", "2026.5.7", "2026.5.10"]
    assert choose(version_range="2026.5.1..2026.5.10", sample=2, published=published) == ["2026.5.1", "2026.5.10"]
    assert choose(version_range="2026.5.3..2026.5.5", sample=50, published=published) == [
        "2026.5.3", "2026.5.4", "2026.5.5"]  # more than there are: all of them


def test_nothing_named_is_refused() -> None:
    with pytest.raises(UsageError, match="name the releases"):
        choose()
    with pytest.raises(UsageError, match="name the releases"):
        choose(versions=" , ,")


def test_duplicates_are_removed_and_sorted_oldest_first() -> None:
    assert choose(versions="2026.6.1,2026.5.12,latest,2026.5.12", version_range="2026.5.7..2026.5.12") == [
        "2026.5.7", "2026.5.12", "2026.6.1"]


def test_too_many_releases_are_refused() -> None:
    published = [f"2026.5.{i}" for i in range(MAX_VERSIONS + 1)]
    with pytest.raises(UsageError, match=f"{MAX_VERSIONS + 1} releases selected, more than {MAX_VERSIONS}"):
        choose(version_range=f"2026.5.0..2026.5.{MAX_VERSIONS}", published=published)
    assert len(choose(version_range=f"2026.5.0..2026.5.{MAX_VERSIONS}", sample=5, published=published)) == 5


def test_evenly_spaced() -> None:
    items = [str(i) for i in range(10)]
    assert evenly_spaced(items, 3) == ["0", "4", "9"]
    assert evenly_spaced(items, 2) == ["0", "9"]
    assert evenly_spaced(items, 1) == ["9"]  # one: the newest
    assert evenly_spaced(items, 10) == items and evenly_spaced(items, 11) == items
    assert evenly_spaced([], 3) == []
    for length in range(2, 40):
        items = [str(i) for i in range(length)]
        for count in range(2, length + 1):
            picked = [int(i) for i in evenly_spaced(items, count)]
            assert len(picked) == count and picked[0] == 0 and picked[-1] == length - 1, (length, count)
            gaps = [b - a for a, b in zip(picked, picked[1:])]
            assert max(gaps) - min(gaps) <= 1, (length, count, picked)  # evenly: gaps differ by one at most


# -- cells as JSON ------------------------------------------------------------------------------------

def full_cell() -> Cell:
    return cell("2026.5.12", FAIL, probes=[
        probe_outcome(), probe_outcome("concurrent:n=12,c=3,sessions=1", FAIL, counts={"real": 9, "stale": 3},
                                       log_counts={"ReplyRunAlreadyActiveError": 2}, median_ms={"real": 980.0})],
        install_s=12.5, registry_refresh_s=0.4, ready_s=3.2, protocol=4, gateway_version="2026.5.12",
        node_version="22.23.3", elapsed_s=60.1, run_dir="/tmp/run/2026.5.12")


def test_cell_json_round_trip() -> None:
    original = full_cell()
    data = json.loads(json.dumps(original.to_json()))
    assert data["record"] == CELL_RECORD and data["schema_version"] == CELL_SCHEMA_VERSION
    assert Cell.from_json(data, "x.json") == original
    broken = cell("2026.5.3", BROKEN, reason="npm install failed: E404")
    assert Cell.from_json(json.loads(json.dumps(broken.to_json())), "y.json") == broken


def with_changes(**changes: Any) -> dict[str, Any]:
    data = full_cell().to_json()
    data.update(changes)
    return data


@pytest.mark.parametrize(("data", "says"), [
    ([], "not a matrix cell"),
    ("cell", "not a matrix cell"),
    ({"version": "2026.5.3", "status": "pass"}, "not a matrix cell"),
    (with_changes(record="matrix"), "not a matrix cell"),
    (with_changes(schema_version=2), "matrix cell schema 2, this ocprobe reads 1"),
    (with_changes(schema_version=None), "matrix cell schema None"),
    (with_changes(version="../x"), "malformed matrix cell (version or status)"),
    (with_changes(version=2026), "malformed matrix cell (version or status)"),
    (with_changes(status="skipped"), "malformed matrix cell (version or status)"),
    (with_changes(colour="red"), "malformed matrix cell: "),
    (with_changes(probes=[{"probe": "sequential:n=1"}]), "malformed matrix cell: "),
    (with_changes(probes=3), "malformed matrix cell: "),
])
def test_from_json_refuses_what_is_not_a_cell(data: Any, says: str) -> None:
    with pytest.raises(UsageError) as refused:
        Cell.from_json(data, "cells/bad.json")
    assert str(refused.value).startswith("cells/bad.json: ") and says in str(refused.value)


# -- cells on disk --------------------------------------------------------------------------------------

def test_write_cell_then_read_a_report_dir(tmp_path: Path) -> None:
    cells = [cell("2026.5.12", FAIL), cell("2026.4.26"), cell("2026.5.3", BROKEN, reason="no /readyz in 60 s")]
    paths = [write_cell(tmp_path, c) for c in cells]
    assert paths[0] == tmp_path / CELL_DIR / "2026.5.12.json"
    assert sorted(p.name for p in (tmp_path / CELL_DIR).iterdir()) == ["2026.4.26.json", "2026.5.12.json",
                                                                         "2026.5.3.json"]  # no temp file left
    (tmp_path / "stray.json").write_text("not read: the cells are under cells/")
    (tmp_path / CELL_DIR / "notes.txt").write_text("not a .json file")
    assert read_cells([tmp_path]) == sorted(cells, key=lambda c: [int(p) for p in c.version.split(".")])


def test_read_cell_files_and_plain_dirs(tmp_path: Path) -> None:
    first = write_cell(tmp_path / "job1", cell("2026.5.7"))
    second = write_cell(tmp_path / "job2", cell("2026.5.3", FAIL))
    assert [c.version for c in read_cells([first, second])] == ["2026.5.3", "2026.5.7"]
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.json").write_text(json.dumps(cell("2026.6.1").to_json()))
    (plain / MATRIX_JSON).write_text(json.dumps({"record": "matrix", "cells": []}))  # a summary is skipped
    assert [c.version for c in read_cells([plain, tmp_path / "job1"])] == ["2026.5.7", "2026.6.1"]


def test_the_newest_file_wins_for_a_version(tmp_path: Path) -> None:
    old = tmp_path / "b-old.json"
    new = tmp_path / "a-new.json"  # sorts first, so only its mtime can make it win
    old.write_text(json.dumps(cell("2026.5.7", FAIL).to_json()))
    new.write_text(json.dumps(cell("2026.5.7", PASS, elapsed_s=9.0).to_json()))
    os.utime(old, (1_700_000_000, 1_700_000_000))
    os.utime(new, (1_700_000_100, 1_700_000_100))
    merged = read_cells([tmp_path])
    assert len(merged) == 1 and merged[0].status == PASS and merged[0].elapsed_s == 9.0
    os.utime(old, (1_700_000_200, 1_700_000_200))  # rerun: now the other file is newer
    assert [c.status for c in read_cells([tmp_path])] == [FAIL]
    assert [c.status for c in read_cells([new, old])] == [FAIL]  # the order given does not matter


def test_bad_cell_files_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(UsageError, match="garbage.json: not JSON$"):
        read_cells([garbage])
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UsageError, match="deep.json: "):
        read_cells([deep])
    huge = tmp_path / "huge.json"
    with huge.open("wb") as f:
        f.truncate(MAX_CELL_BYTES + 1)  # sparse: nothing is written, the size is what is checked
    with pytest.raises(UsageError, match=f"huge.json: {MAX_CELL_BYTES + 1} bytes, too large for a matrix cell"):
        read_cells([huge])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"record": "matrix-summary"}))
    with pytest.raises(UsageError, match="other.json: not a matrix cell"):
        read_cells([other])
    with pytest.raises(UsageError, match="cannot read .*missing.json: No such file or directory"):
        read_cells([tmp_path / "missing.json"])


def test_an_empty_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no matrix cells in it \(expected cells/VERSION.json\)"):
        read_cells([tmp_path])
    (tmp_path / CELL_DIR).mkdir()
    (tmp_path / "1.2.3.json").write_text(json.dumps(cell("1.2.3").to_json()))  # not under cells/: not read
    with pytest.raises(UsageError, match="no matrix cells in it"):
        read_cells([tmp_path])


def test_a_dir_with_only_a_summary_is_refused(tmp_path: Path) -> None:
    (tmp_path / MATRIX_JSON).write_text(json.dumps({"record": "matrix", "cells": []}))
    with pytest.raises(UsageError, match="no matrix cells in it"):
        read_cells([tmp_path])


# -- Markdown and exit code ---------------------------------------------------------------------------

def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ")]


def unescaped_bars(line: str) -> int:
    return line.count("|") - line.count("\\|")


def test_markdown_has_a_row_per_probe_and_lists_broken_releases() -> None:
    cells = [full_cell(), cell("2026.5.3", BROKEN, reason="npm install failed | E404\nretry later"),
             cell("2026.6.1", install_s=4.04, ready_s=2.0, protocol=4)]
    text = markdown(cells, title="Nightly")
    assert text.startswith("# Nightly\n")
    header, *rows = table_lines(text)
    assert header == "| " + " | ".join(COLUMNS) + " |"
    assert [r.split(" | ")[0] for r in rows] == ["| 2026.5.12", "| 2026.5.12", "| 2026.5.3", "| 2026.6.1"]
    assert all(unescaped_bars(r) == len(COLUMNS) + 1 for r in rows)  # the '|' in the reason is escaped
    assert "sequential:n=10,gap=0" in rows[0] and "concurrent:n=12,c=3,sessions=1" in rows[1]
    assert rows[1].endswith(" | fail |") and "real 9, stale 3" in rows[1] and "ReplyRunAlreadyActiveError 2" in rows[1]
    assert "npm install failed \\| E404 retry later" in rows[2]  # the reason is the verdict; newline flattened
    assert "| 4.0 s | 2.0 s | 4 |" in rows[3]
    assert "Releases that could not be probed:" in text
    assert "- 2026.5.3: npm install failed \\| E404 retry later\n" in text


def test_markdown_without_broken_releases_has_no_list() -> None:
    text = markdown([cell("2026.5.3"), cell("2026.5.7")])
    assert text.startswith("# OpenClaw compatibility matrix\n")
    assert len(table_lines(text)) == 3 and "could not be probed" not in text


def test_exit_code() -> None:
    assert exit_code([cell("2026.5.3"), cell("2026.5.7")]) == 0
    assert exit_code([cell("2026.5.3"), cell("2026.5.7", FAIL)]) == 1
    assert exit_code([cell("2026.5.3"), cell("2026.5.7", BROKEN, reason="no node")]) == 1
    assert exit_code(iter([cell("2026.5.3", FAIL)])) == 1


# -- ocprobe matrix merge -----------------------------------------------------------------------------------

def merge(*args: str) -> Result:
    return CliRunner().invoke(app, ["matrix", "merge", *args], env={"COLUMNS": "200"})


def test_merge_writes_markdown_and_fails_on_a_failed_cell(tmp_path: Path) -> None:
    write_cell(tmp_path / "r", cell("2026.5.3"))
    write_cell(tmp_path / "r", cell("2026.5.7", FAIL))
    md = tmp_path / "out" / "matrix.md"
    result = merge(str(tmp_path / "r"), "--markdown", str(md), "--title", "Two releases")
    assert result.exit_code == 1, result.output
    assert md.read_text(encoding="utf-8") == markdown(read_cells([tmp_path / "r"]), "Two releases")
    assert [r.split(" | ")[0] for r in table_lines(md.read_text(encoding="utf-8"))[1:]] == ["| 2026.5.3", "| 2026.5.7"]


def test_merge_passes_when_every_cell_passed(tmp_path: Path) -> None:
    files = [write_cell(tmp_path / "a", cell("2026.5.3")), write_cell(tmp_path / "b", cell("2026.5.7"))]
    md = tmp_path / "matrix.md"
    result = merge(*map(str, files), "--markdown", str(md))
    assert result.exit_code == 0, result.output
    assert "2026.5.3" in result.stdout and "2026.5.7" in result.stdout
    assert len(table_lines(md.read_text(encoding="utf-8"))) == 3


def test_merge_of_a_missing_path_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = merge(str(missing))
    assert result.exit_code == 2
    assert result.stderr == f"error: cannot read {missing}: No such file or directory\n"
    assert result.stdout == ""

"""``ocprobe openclaw`` commands on a cache populated through the npm stand-in (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from ocprobe.cli.openclaw import app
from tests.openclaw.fakes import make_manager


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    root = tmp_path / "cache"
    manager, _ = make_manager(root)
    for version in ("2026.4.26", "2026.5.3", "2026.5.4"):
        manager.install(version)
    return root


def run(cache: Path, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"OCPROBE_CACHE": str(cache), "COLUMNS": "200"})


def json_lines(result: Result) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_list_shows_installs(cache: Path) -> None:
    result = run(cache, "list")
    assert result.exit_code == 0, result.output
    for version in ("2026.4.26", "2026.5.3", "2026.5.4"):
        assert version in result.stdout
    assert "(system)" in result.stdout and " MB" in result.stdout
    records = json_lines(run(cache, "list", "--json"))
    assert [r["version"] for r in records] == ["2026.4.26", "2026.5.3", "2026.5.4"]
    assert all(r["record"] == "installed" and r["node_source"] == "system" for r in records)


def test_install_of_an_installed_version_is_a_no_op_and_the_cap_evicts_the_others(cache: Path) -> None:
    result = run(cache, "install", "2026.5.3", "--cache-max-gb", "0.000001", "--json")
    assert result.exit_code == 0, result.output
    records = json_lines(result)
    assert records[0]["record"] == "install" and records[0]["result"] == "cached"
    assert sorted(str(r["version"]) for r in records if r["record"] == "evicted") == ["2026.4.26", "2026.5.4"]
    assert "still holds" in result.stderr  # the version just installed stays even over the cap
    assert [r["version"] for r in json_lines(run(cache, "list", "--json"))] == ["2026.5.3"]


def test_install_table(cache: Path) -> None:
    result = run(cache, "install", "2026.5.4")
    assert result.exit_code == 0, result.output
    assert "already installed" in result.stdout and "2026.5.4" in result.stdout


def test_install_refuses_an_unknown_version(cache: Path) -> None:  # asks the real registry
    result = run(cache, "install", "2026.5.3", "0.0.0-doesnotexist")
    assert result.exit_code == 2
    assert "unknown openclaw version '0.0.0-doesnotexist'" in result.stderr


def test_remove(cache: Path) -> None:
    result = run(cache, "remove", "2026.5.3")
    assert result.exit_code == 0, result.output
    assert "removed openclaw 2026.5.3" in result.stdout
    missing = run(cache, "remove", "2026.5.3", "2026.5.4")
    assert missing.exit_code == 2 and "not installed: 2026.5.3" in missing.stderr
    assert "2026.5.4" in run(cache, "list").stdout  # refused before removing anything
    for bad in ((), ("2026.5.4", "--all")):
        assert run(cache, "remove", *bad).exit_code == 2
    everything = run(cache, "remove", "--all", "--json")
    assert everything.exit_code == 0
    assert sorted(str(r["version"]) for r in json_lines(everything)) == ["2026.4.26", "2026.5.4"]
    assert json_lines(run(cache, "list", "--json")) == []

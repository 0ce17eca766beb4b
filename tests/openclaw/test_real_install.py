"""A real install of openclaw@2026.5.3 from npm, with the Node 22 it needs fetched from npm (the machine's
is older). Cold: ~50 s (Node fetch ~7 s, npm install ~40 s); set OCPROBE_TEST_CACHE to keep the downloads
between runs."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ocprobe.cli.openclaw import app
from ocprobe.openclaw.installs import Install, InstallManager
from ocprobe.openclaw.semver import Range
from tests.openclaw.fakes import leftovers

pytestmark = pytest.mark.openclaw

VERSION = "2026.5.3"


@pytest.fixture(scope="session")
def installed(real_cache: Path) -> Install:
    return InstallManager(real_cache).install(VERSION)


def test_installed_binary_runs_on_the_fetched_node(installed: Install, real_cache: Path) -> None:
    assert installed.node_version in Range.parse(">=22.14.0")  # 2026.5.3's engines.node
    assert installed.node_bin.is_relative_to(real_cache)  # the machine's Node 20 was not used nor changed
    proc = subprocess.run(installed.command("--version"), env=installed.env(os.environ), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"OpenClaw {VERSION}" in proc.stdout
    assert 200e6 < installed.size_bytes < 2e9
    assert leftovers(real_cache) == []


def test_second_install_is_a_fast_no_op(installed: Install, real_cache: Path) -> None:
    started = time.monotonic()
    again = InstallManager(real_cache).install(VERSION)
    assert time.monotonic() - started < 2
    assert (again.prefix, again.installed_at, again.node_bin) == (installed.prefix, installed.installed_at, installed.node_bin)


def test_cli_lists_and_reinstalls_it(installed: Install, real_cache: Path) -> None:
    env = {"OCPROBE_CACHE": str(real_cache), "COLUMNS": "200"}
    listing = CliRunner().invoke(app, ["list"], env=env)
    assert listing.exit_code == 0 and VERSION in listing.stdout and f"{installed.node_version} (cache)" in listing.stdout
    again = CliRunner().invoke(app, ["install", VERSION], env=env)
    assert again.exit_code == 0 and "already installed" in again.stdout

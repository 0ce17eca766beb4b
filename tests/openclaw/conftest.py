"""Fixtures for the OpenClaw install tests: a manager on the npm stand-in, a shared cache for real installs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocprobe.openclaw.installs import InstallManager
from tests.openclaw.fakes import FakeNpm, make_manager


@pytest.fixture
def fake(tmp_path: Path) -> tuple[InstallManager, FakeNpm]:
    return make_manager(tmp_path / "cache")


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where real installs go: $OCPROBE_TEST_CACHE (reuse downloads between runs) or a session temp dir."""
    reuse = os.environ.get("OCPROBE_TEST_CACHE")
    return Path(reuse) if reuse else tmp_path_factory.mktemp("ocprobe-cache")

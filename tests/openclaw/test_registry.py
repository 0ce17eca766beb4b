"""Against the real npm registry, without installing anything big: listings, unknown versions, and an
npm install that fails (its error text must reach the caller, and no prefix may remain)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ocprobe.errors import UsageError
from ocprobe.openclaw.installs import InstallError, InstallManager
from ocprobe.openclaw.npm import Npm
from ocprobe.openclaw.semver import Version
from tests.openclaw.fakes import leftovers

MISSING = "0.0.0-doesnotexist"


def test_available_lists_releases_in_semver_order_with_dist_tags(tmp_path: Path) -> None:
    versions, tags = InstallManager(tmp_path).available()
    assert {"2026.4.26", "2026.5.3", "2026.5.3-1"} <= set(versions)
    assert versions == sorted(versions, key=Version.parse)
    assert versions.index("2026.5.3-1") < versions.index("2026.5.3")
    assert tags["latest"] in versions


def test_an_unpublished_version_is_refused_by_name(tmp_path: Path) -> None:
    manager = InstallManager(tmp_path)
    with pytest.raises(UsageError, match=MISSING):
        manager.install(MISSING)
    assert manager.installed() == [] and not (tmp_path / "openclaw").exists()


class PretendPublished(Npm):
    """The registry's answers, except that MISSING passes for published: so the real `npm install` runs
    and fails."""

    def view(self, spec: str, *fields: str) -> Any:
        if spec == "openclaw":
            return {"versions": [MISSING], "dist-tags": {}}
        if spec == f"openclaw@{MISSING}":
            return None  # no engines: the machine's Node
        return super().view(spec, *fields)


def test_a_failed_npm_install_reports_npm_error_and_leaves_no_prefix(tmp_path: Path) -> None:
    manager = InstallManager(tmp_path, npm=PretendPublished(tmp_path))
    with pytest.raises(InstallError) as failure:
        manager.install(MISSING)
    message = str(failure.value)
    assert f"npm install openclaw@{MISSING} failed" in message
    assert "code ETARGET" in message and f"No matching version found for openclaw@{MISSING}" in message
    assert manager.installed() == [] and not (tmp_path / "openclaw" / MISSING).exists()
    assert leftovers(tmp_path) == []

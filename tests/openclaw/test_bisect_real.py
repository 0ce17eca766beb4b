"""``ocprobe bisect`` over real published OpenClaw versions (slow: installs from npm, launches gateways).

Bounded to the 2026.5.x pair, which start in seconds (2026.4.x takes ~1 min per batch here): about 2 min
with a warm cache ($OCPROBE_TEST_CACHE holding 2026.5.3 and 2026.5.4), plus ~2 min to install both cold.
docs/bisect.md describes the full bisect over 2026.4.26 .. 2026.5.4 (not yet measured)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.openclaw

PAIR = ("2026.5.3", "2026.5.4")


def ocprobe(real_cache: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ocprobe", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OCPROBE_CACHE": str(real_cache), "COLUMNS": "200"})


@pytest.fixture(scope="module")
def pair_installed(real_cache: Path) -> Path:
    proc = ocprobe(real_cache, "openclaw", "install", *PAIR, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    return real_cache


def test_a_gateway_probe_that_cannot_tell_two_versions_apart_stops_at_the_endpoints(pair_installed: Path,
                                                                                     tmp_path: Path) -> None:
    """Both versions still alternate at gap 0 (the shared notes): each is launched once, probed in batches
    up to --max-calls, and the bisect stops with exit 1 and one line saying so."""
    run = tmp_path / "run"
    proc = ocprobe(pair_installed, "bisect", "--good", PAIR[1], "--bad", PAIR[0], "--versions", ",".join(PAIR),
                   "-n", "5", "--max-calls", "10", "--run-dir", str(run))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and ("does not tell" in last or "fails more" in last or "does not fail" in last)
    state = json.loads((run / "bisect.json").read_text())
    assert state["status"] == "aborted"
    for record in state["records"]:
        assert record["sessions"] == 1 and record["batches"]  # one launch per version, its batches on it
        assert all(b["calls"] == 5 for b in record["batches"])
    bad = state["records"][0]
    assert bad["version"] == PAIR[0] and sum(b["failed"] for b in bad["batches"]) > 0
    assert (run / PAIR[0] / "session-1" / "gateway.stderr.log").exists()
    token = (run / PAIR[0] / "session-1" / "gateway.token").read_text().strip()
    assert token not in proc.stdout + proc.stderr + (run / "bisect.json").read_text()


def test_a_command_bisect_over_the_registry_finds_the_fix_with_its_changelog(pair_installed: Path,
                                                                             tmp_path: Path) -> None:
    """The range comes from the registry (2026.5.3-1 precedes 2026.5.3, so nothing lies between); the
    command checks each installed package's own changelog for the fix of #77485. --good is the newer
    version: the bisect looks for a fix, and git's terms say so."""
    check = ("sh -c 'grep -q \"Fixes #77485\" "
             f"{pair_installed}/openclaw/{{version}}/node_modules/openclaw/CHANGELOG.md'")
    proc = ocprobe(pair_installed, "bisect", "--good", PAIR[1], "--bad", PAIR[0], "--cmd", check,
                   "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"RESULT: first good {PAIR[1]}, last bad {PAIR[0]}" in proc.stdout
    assert "git clone https://github.com/openclaw/openclaw.git && cd openclaw" in proc.stdout
    assert f"git bisect start --term-old=broken --term-new=fixed v{PAIR[1]} v{PAIR[0]}" in proc.stdout
    report = (tmp_path / "run" / "report.md").read_text()
    assert f"### {PAIR[1]}" in report and "clear the active reply-run guard" in report

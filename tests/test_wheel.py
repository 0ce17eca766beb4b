"""A normal install, as pipx or `pip install .` makes it (not the editable one CI and developers use): the
shipped scenarios come with it and everything it imports is declared. Slow: a fresh venv and a build."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def test_a_normal_install_has_its_scenarios_and_every_dependency(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: building in place would leave build/ in the checkout
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                                                                ".hypothesis", ".pytest_cache"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python, ocprobe = venv / "bin" / "python", venv / "bin" / "ocprobe"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(source)], capture_output=True, text=True,
                             timeout=900)
    assert install.returncode == 0, install.stderr[-2000:]
    listed = subprocess.run([str(ocprobe), "scenarios", "list", "--json"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    names = {json.loads(line)["name"] for line in listed.stdout.splitlines()}
    assert {"issue-77485", "race-window-sweep", "same-session-contention", "many-sessions"} <= names, listed.stderr
    checked = subprocess.run([str(ocprobe), "run", "--check", "issue-77485"], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    # Every module imports with only the declared dependencies installed (json5 once did not).
    every = ("import importlib, pkgutil, ocprobe\n"
             "for m in pkgutil.walk_packages(ocprobe.__path__, 'ocprobe.'):\n"
             "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
             "import json5, re2\n")
    imported = subprocess.run([str(python), "-c", every], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr[-2000:]

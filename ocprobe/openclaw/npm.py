"""The machine's npm, as ocprobe drives it: registry queries, ``npm pack`` and prefix installs. A failure
raises InstallError carrying npm's own error lines."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ocprobe.errors import OcprobeError

VIEW_TIMEOUT = 120.0
# A cold OpenClaw install took ~40 s here and a Node fetch ~7 s: a slow mirror gets ample room.
FETCH_TIMEOUT = 1800.0
ERROR_LINES = 3

_NPM_ERROR = re.compile(r"npm (?:error|ERR!)\s?(.*)")


class InstallError(OcprobeError):
    """npm or a download did not produce a working install; the message carries npm's error text."""


def npm_error_summary(stderr: str, returncode: int) -> str:
    """npm's error lines in one line: the first few (npm states the cause first, boilerplate after),
    then where its debug log went."""
    lines: list[str] = []
    log = ""
    for raw in stderr.splitlines():
        match = _NPM_ERROR.fullmatch(raw.strip())
        if not match:
            continue  # warnings, progress
        text = " ".join(match.group(1).split())
        if text.startswith("A complete log of this run can be found in"):
            log = text.partition(":")[2].strip()
        elif text and not re.fullmatch(r"\d{3}", text) and text not in lines:  # '404' alone is a spacer
            lines.append(text)
    if not lines:
        lines = [line.strip() for line in stderr.splitlines() if line.strip()][-ERROR_LINES:]
    summary = "; ".join(lines[:ERROR_LINES]) or f"exit code {returncode}, no output"
    return f"{summary} (npm log {log})" if log else summary


class Npm:
    """Runs npm from ``workdir`` (inside ocprobe's cache), so no project ``.npmrc`` or ``package.json``
    in the user's current directory changes what gets resolved."""

    def __init__(self, workdir: Path, executable: str | None = None) -> None:
        self.workdir = workdir
        self._executable = executable

    def _run(self, what: str, args: Sequence[str], *, timeout: float, cwd: Path | None = None,
             path_first: Path | None = None) -> str:
        executable = self._executable or shutil.which("npm")
        if not executable:
            raise InstallError("npm not found on PATH: ocprobe installs OpenClaw with the machine's npm")
        env = dict(os.environ)
        if path_first:
            env["PATH"] = f"{path_first}{os.pathsep}{env.get('PATH', '')}"
        cwd = cwd or self.workdir
        cwd.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.run([executable, *args, "--loglevel=error"], cwd=cwd, env=env, timeout=timeout,
                                  capture_output=True, text=True, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise InstallError(f"{what} timed out after {timeout:.0f} s") from None
        if proc.returncode:
            raise InstallError(f"{what} failed: {npm_error_summary(proc.stderr, proc.returncode)}")
        return proc.stdout

    def view(self, spec: str, *fields: str) -> Any:
        """``npm view SPEC FIELDS --json``, parsed; None when the fields are absent (npm prints nothing)."""
        out = self._run(f"npm view {spec}", ["view", spec, *fields, "--json"], timeout=VIEW_TIMEOUT)
        return json.loads(out) if out.strip() else None

    def pack(self, spec: str, dest: Path) -> Path:
        """Download the tarball of ``spec`` into ``dest``; returns its path."""
        out = self._run(f"npm pack {spec}", ["pack", spec, "--pack-destination", str(dest), "--json"], timeout=FETCH_TIMEOUT)
        return dest / str(json.loads(out)[0]["filename"])

    def install(self, spec: str, prefix: Path, path_first: Path) -> None:
        """Install ``spec`` into ``prefix``, npm running on the Node in ``path_first`` (npm's shebang is
        ``env node``), so engine checks and platform-specific optional packages match the Node that runs it."""
        self._run(f"npm install {spec}", ["install", "--prefix", str(prefix), spec, "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"],
                  timeout=FETCH_TIMEOUT, cwd=prefix, path_first=path_first)

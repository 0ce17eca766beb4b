"""Node runtimes: the machine's ``node`` when it satisfies a version's ``engines.node``, else one fetched
from npm (``node-<os>-<arch>``) into ``<cache>/node/<version>/`` and shared by every install that needs
it. The system Node is never changed."""

from __future__ import annotations

import functools
import json
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ocprobe.openclaw.fsutil import clear_leftovers, discard, disk_usage, file_lock, staged_dir
from ocprobe.openclaw.npm import InstallError, Npm
from ocprobe.openclaw.semver import Range, Version

MARKER = ".ocprobe-node.json"
BIN = Path("package") / "bin" / "node"  # where the npm package keeps the binary


@dataclass(frozen=True)
class NodeRuntime:
    version: str
    bin: Path
    size_bytes: int = 0  # only fetched runtimes count against the cache


def node_package() -> str:
    """The npm package holding a Node binary for this machine."""
    system = {"linux": "linux", "darwin": "darwin"}.get(sys.platform)
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    if not system or not arch:
        raise InstallError(f"no Node package on npm for {sys.platform}/{platform.machine()}")
    return f"node-{system}-{arch}"


def node_version(binary: Path) -> str:
    """``node --version`` without the 'v'; InstallError when the binary does not run here."""
    try:
        proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"{binary} does not run: {exc}") from None
    if proc.returncode:
        raise InstallError(f"{binary} --version failed: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout.strip().removeprefix("v")


def choose_node_version(wanted: Range, published: Sequence[str], cached: Sequence[str]) -> str | None:
    """The newest release in the lowest major that satisfies the range, an already fetched one first.

    Not simply the newest satisfying release: '>=22.14.0' would then pick a Node major the OpenClaw
    release was never built against (and change as Node ships); its floor major is what it supports.
    """
    matching = [v for v in map(Version.parse, published) if v in wanted]
    if not matching:
        return None
    major = min(v.major for v in matching)
    candidates = [v for v in matching if v.major == major]
    fetched = [v for v in candidates if str(v) in cached]
    return str(max(fetched or candidates))


class NodeStore:
    def __init__(self, root: Path, locks: Path, npm: Npm) -> None:
        self.root = root
        self.locks = locks
        self.npm = npm

    @functools.cached_property
    def system(self) -> NodeRuntime | None:
        found = shutil.which("node")
        return NodeRuntime(node_version(Path(found)), Path(found)) if found else None

    def cached(self) -> list[NodeRuntime]:
        found = (self._read(path) for path in self.root.iterdir()) if self.root.is_dir() else iter(())
        return sorted((r for r in found if r), key=lambda r: Version.parse(r.version))

    def total_bytes(self) -> int:
        return sum(r.size_bytes for r in self.cached())

    def _lock(self, version: str) -> Path:
        return self.locks / f"node-{version}.lock"

    @contextmanager
    def runtime_for(self, wanted: Range | None, on_fetch: Callable[[str], None]) -> Iterator[NodeRuntime]:
        """A Node in ``wanted`` (any, if None), held in use for the duration of the block: a fetched one
        under a shared lock, so no eviction removes it while an install runs on it."""
        system = self.system
        if system is not None and (wanted is None or system.version in wanted):
            yield system
            return
        if wanted is None:
            raise InstallError("no node on PATH, and the package declares no engines.node to pick one by")
        published = self.npm.view(node_package(), "versions")
        version = choose_node_version(wanted, published if isinstance(published, list) else [published],
                                      [r.version for r in self.cached()])
        if version is None:
            raise InstallError(f"no {node_package()} release on npm satisfies node {wanted}")
        if self._read(self.root / version) is None:
            on_fetch(version)
            with file_lock(self._lock(version)):
                if self._read(self.root / version) is None:
                    self._fetch(version)
        with file_lock(self._lock(version), shared=True):
            runtime = self._read(self.root / version)
            if runtime is None:  # pruned by another process between the fetch and the shared lock
                raise InstallError(f"node {version} was removed by another ocprobe during the install: run it again")
            yield runtime

    def _fetch(self, version: str) -> None:
        final = self.root / version
        clear_leftovers(final)
        with staged_dir(final) as tmp:
            tarball = self.npm.pack(f"{node_package()}@{version}", tmp)
            with tarfile.open(tarball) as tar:
                tar.extractall(tmp, filter="data")  # refuses absolute paths, '..' and links leaving tmp
            tarball.unlink()
            ran = node_version(tmp / BIN)
            if ran != version:
                raise InstallError(f"{node_package()}@{version} holds node {ran}")
            marker = {"version": version, "size_bytes": disk_usage(tmp), "fetched_at": time.time()}
            (tmp / MARKER).write_text(json.dumps(marker, indent=1) + "\n")

    def _read(self, path: Path) -> NodeRuntime | None:
        try:
            marker = json.loads((path / MARKER).read_text())
            return NodeRuntime(marker["version"], path / BIN, int(marker["size_bytes"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def prune(self, keep: set[Path]) -> list[NodeRuntime]:
        """Remove fetched runtimes whose binary is not in ``keep`` and that nobody is using right now."""
        removed = []
        for runtime in self.cached():
            if runtime.bin in keep:
                continue
            try:
                with file_lock(self._lock(runtime.version), wait=False):
                    discard(self.root / runtime.version)
                removed.append(runtime)
            except BlockingIOError:
                continue  # an install is using (or fetching) it
        return removed

"""Managed installs of real OpenClaw versions from npm, one prefix per version under
``<cache>/openclaw/<version>/``, each runnable with a Node its ``engines.node`` accepts.

Every prefix is built beside its final place and renamed into it after its marker is written, under a
per-version lock, so two processes never install into the same prefix and nobody ever sees half an
install. The core never prints: progress goes to an optional callback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ocprobe.errors import OcprobeError, UsageError
from ocprobe.openclaw.fsutil import clear_leftovers, discard, disk_usage, file_lock, staged_dir
from ocprobe.openclaw.node import NodeStore
from ocprobe.openclaw.npm import InstallError, Npm
from ocprobe.openclaw.releases import traits
from ocprobe.openclaw.semver import Range, Version, is_version, sort_versions

PACKAGE = "openclaw"
MARKER = ".ocprobe-install.json"
LAST_USED = ".ocprobe-last-used"  # its mtime is the last use: touching it is cheap and atomic
OPENCLAW_BIN = Path("node_modules") / ".bin" / "openclaw"
# From 2026.8.2 the package ships this marker (releases.py): the install scripts npm skipped (--ignore-scripts) are run by
# the first ``openclaw`` command, which writes into the package dir and may install a native addon.
LIFECYCLE_PENDING = ".openclaw-lifecycle-pending"
LIFECYCLE_TIMEOUT = 600.0

__all__ = ["Install", "InstallBusy", "InstallError", "InstallManager", "Stage"]


class InstallBusy(OcprobeError):
    """The version is being used or installed by another process, so it cannot be removed now."""


class Stage(str, Enum):
    WAITING = "waiting for another process installing it"
    ENGINES = "reading engines.node"
    NODE = "fetching Node"
    INSTALLING = "npm install"
    LIFECYCLE = "completing the package lifecycle"
    INSTALLED = "installed"
    CACHED = "already installed"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (Stage.INSTALLED, Stage.CACHED, Stage.FAILED)


# (version, stage, detail): detail is the Node version for NODE, the error for FAILED, else "".
ProgressFn = Callable[[str, Stage, str], None]


@dataclass(frozen=True)
class Install:
    version: str
    prefix: Path
    openclaw_bin: Path
    node_bin: Path
    node_version: str
    size_bytes: int
    installed_at: float  # epoch seconds
    last_used_at: float
    install_seconds: float | None = None  # how long the install took (None: installed by an older ocprobe)

    @property
    def package_dir(self) -> Path:
        """The installed package itself: its package.json and CHANGELOG.md."""
        return self.prefix / "node_modules" / PACKAGE

    def command(self, *args: str) -> list[str]:
        """argv running this OpenClaw on its own Node (the bin's shebang would pick the PATH's node)."""
        return [str(self.node_bin), str(self.openclaw_bin), *args]

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` with this install's Node first on PATH, for the node/npm processes OpenClaw spawns."""
        return {**base, "PATH": f"{self.node_bin.parent}{os.pathsep}{base.get('PATH', '')}"}


def _report(on_progress: ProgressFn | None, version: str) -> Callable[..., None]:
    def report(stage: Stage, detail: str = "") -> None:
        if on_progress:
            on_progress(version, stage, detail)
    return report


class InstallManager:
    def __init__(self, cache_root: Path | None = None, npm: Npm | None = None) -> None:
        from ocprobe.targets import cache_dir  # the targets import the probe core: not for `ocprobe openclaw list`

        self.root = (cache_root or cache_dir()).absolute()  # npm runs in other directories
        self.openclaw_root = self.root / "openclaw"
        self.locks = self.root / "locks"
        self.npm = npm or Npm(self.root)
        self.nodes = NodeStore(self.root / "node", self.locks, self.npm)

    # -- registry --------------------------------------------------------------------------
    def available(self) -> tuple[list[str], dict[str, str]]:
        """Published versions in release order (semver precedence, oldest first) and the dist-tags."""
        data = self.npm.view(PACKAGE, "versions", "dist-tags") or {}
        versions = data.get("versions", [])
        versions = [versions] if isinstance(versions, str) else versions  # npm unwraps a single value
        return sort_versions(v for v in versions if is_version(v)), dict(data.get("dist-tags", {}))

    def engines_node(self, version: str) -> str | None:
        engines = self.npm.view(f"{PACKAGE}@{version}", "engines")
        return engines.get("node") if isinstance(engines, dict) else None

    def resolve(self, specs: Sequence[str]) -> list[str]:
        """Versions for ``specs`` (versions or dist-tags), duplicates dropped; UsageError naming any
        unknown one. Installed versions resolve without asking the registry, so they work offline."""
        published: tuple[list[str], dict[str, str]] | None = None
        resolved: list[str] = []
        for spec in specs:
            version = spec.strip()
            if not (is_version(version) and self.get(version)):
                published = published or self.available()
                versions, tags = published
                if version in tags:
                    version = tags[version]
                elif version not in versions:
                    raise UsageError(
                        f"unknown openclaw version {spec!r}: not published on npm (latest is "
                        f"{tags.get('latest', '?')}; `ocprobe openclaw list --available` shows them all)")
            if version not in resolved:
                resolved.append(version)
        return resolved

    # -- installed versions ----------------------------------------------------------------
    def _prefix(self, version: str) -> Path:
        if not is_version(version):  # also keeps '../x' out of the cache paths
            raise UsageError(f"{version!r} is not an openclaw version (e.g. 2026.5.3)")
        return self.openclaw_root / version

    def _lock(self, version: str) -> Path:
        return self.locks / f"openclaw-{version}.lock"

    def _read(self, prefix: Path) -> Install | None:
        try:
            marker = json.loads((prefix / MARKER).read_text())
            return Install(
                version=marker["version"], prefix=prefix, openclaw_bin=prefix / OPENCLAW_BIN,
                # relative to the cache root for a fetched Node, so a moved cache keeps working
                node_bin=self.root / marker["node_bin"], node_version=marker["node_version"],
                size_bytes=int(marker["size_bytes"]), installed_at=float(marker["installed_at"]),
                install_seconds=float(marker["install_seconds"]) if "install_seconds" in marker else None,
                last_used_at=(prefix / LAST_USED).stat().st_mtime,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def get(self, version: str) -> Install | None:
        return self._read(self._prefix(version))

    def installed(self) -> list[Install]:
        """Installed versions in release order (staging and trash dirs start with a dot and are skipped)."""
        if not self.openclaw_root.is_dir():
            return []
        found = [self._read(p) for p in self.openclaw_root.iterdir() if is_version(p.name)]
        return sorted((i for i in found if i), key=lambda i: Version.parse(i.version))

    def total_bytes(self) -> int:
        """What the cap counts: every installed prefix and every fetched Node."""
        return sum(i.size_bytes for i in self.installed()) + self.nodes.total_bytes()

    def _touch(self, install: Install) -> Install:
        (install.prefix / LAST_USED).touch()
        return self._read(install.prefix) or install

    @contextmanager
    def use(self, version: str) -> Iterator[Install]:
        """Hold ``version`` in use (shared lock: remove and eviction leave it alone) and mark it used."""
        prefix = self._prefix(version)
        with file_lock(self._lock(version), shared=True):
            install = self._read(prefix)
            if install is None:
                raise UsageError(f"openclaw {version} is not installed (`ocprobe openclaw install {version}`)")
            yield self._touch(install)

    # -- installing ------------------------------------------------------------------------
    def install(self, spec: str, on_progress: ProgressFn | None = None) -> Install:
        """Install one version (or dist-tag); an installed one only gets its last use touched."""
        return self._install(self.resolve([spec])[0], on_progress)

    def install_many(self, specs: Sequence[str], max_parallel: int = 2,
                     on_progress: ProgressFn | None = None) -> dict[str, Install | InstallError]:
        """Install several versions, ``max_parallel`` at a time; every spec is resolved (UsageError for an
        unknown one) before anything installs, and one failure does not stop the others."""
        versions = self.resolve(specs)
        pool = ThreadPoolExecutor(max_workers=max(1, max_parallel))
        try:
            futures = {v: pool.submit(self._install, v, on_progress) for v in versions}
            results: dict[str, Install | InstallError] = {}
            for version, future in futures.items():
                try:
                    results[version] = future.result()
                except InstallError as exc:
                    results[version] = exc
            return results
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # on Ctrl-C, start nothing new

    def _install(self, version: str, on_progress: ProgressFn | None) -> Install:
        report = _report(on_progress, version)
        prefix = self._prefix(version)
        # An install that is complete is only read: under a shared lock, which other processes using it (a
        # gateway launched from it holds one for its whole life) do not block. The exclusive lock is taken only
        # to change the prefix; before, a second probe of a version in use waited until the first one ended.
        with file_lock(self._lock(version), shared=True, on_wait=lambda: report(Stage.WAITING)):
            ready = self.get(version)
            if ready is not None and not self._lifecycle_pending(ready.version, ready.package_dir):
                report(Stage.CACHED)
                self._npm_beside_node(ready.node_bin)
                return self._touch(ready)
        try:
            with file_lock(self._lock(version), on_wait=lambda: report(Stage.WAITING)):
                existing = self.get(version)  # also after waiting: the other process may have installed it
                if existing:
                    report(Stage.CACHED)
                    self._npm_beside_node(existing.node_bin)
                    # Installed by an ocprobe that left the lifecycle to the first launch: done once, here.
                    self._complete_lifecycle(version, existing.package_dir, existing.node_bin, report)
                    return self._touch(existing)
                clear_leftovers(prefix)
                install = self._build(version, prefix, report)
        except InstallError as exc:
            report(Stage.FAILED, str(exc))
            raise
        except (OSError, tarfile.TarError) as exc:  # disk full, permissions, a corrupt Node tarball
            error = InstallError(f"openclaw {version}: {exc}")
            report(Stage.FAILED, str(error))
            raise error from exc
        report(Stage.INSTALLED)
        return install

    def _build(self, version: str, prefix: Path, report: Callable[..., None]) -> Install:
        started = time.monotonic()
        report(Stage.ENGINES)
        engines = self.engines_node(version)
        try:
            wanted = Range.parse(engines) if engines else None
        except ValueError as exc:
            raise InstallError(f"openclaw {version}: cannot read engines.node {engines!r}: {exc}") from None
        with self.nodes.runtime_for(wanted, on_fetch=lambda v: report(Stage.NODE, v)) as node, \
                staged_dir(prefix) as tmp:
            report(Stage.INSTALLING)
            self.npm.install(f"{PACKAGE}@{version}", tmp, path_first=node.bin.parent)
            got = json.loads((tmp / "node_modules" / PACKAGE / "package.json").read_text()).get("version")
            if got != version:
                raise InstallError(f"npm installed openclaw {got} instead of {version}")
            if not (tmp / OPENCLAW_BIN).exists():
                raise InstallError(f"openclaw {version} installed without {OPENCLAW_BIN}")
            self._npm_beside_node(node.bin)
            self._complete_lifecycle(version, tmp / "node_modules" / PACKAGE, node.bin, report)
            node_bin = node.bin.relative_to(self.root) if node.bin.is_relative_to(self.root) else node.bin
            (tmp / LAST_USED).touch()
            marker = {"version": version, "node_bin": str(node_bin), "node_version": node.version,
                      "engines_node": engines, "size_bytes": disk_usage(tmp),
                      "installed_at": (tmp / LAST_USED).stat().st_mtime,  # the clock last use is read from
                      "install_seconds": round(time.monotonic() - started, 1)}
            (tmp / MARKER).write_text(json.dumps(marker, indent=1) + "\n")  # last: it makes the prefix an install
        install = self._read(prefix)
        if install is None:
            raise InstallError(f"openclaw {version}: the install vanished after it was renamed into place")
        return install

    @staticmethod
    def _lifecycle_pending(version: str, package_dir: Path) -> bool:
        return traits(version).lifecycle_pending and (package_dir / LIFECYCLE_PENDING).exists()

    @staticmethod
    def _complete_lifecycle(version: str, package_dir: Path, node_bin: Path, report: Callable[..., None]) -> None:
        """Run the install scripts that ``--ignore-scripts`` skipped, once at install time rather than inside
        the first launch (where it costs start-up time and can fail mid-probe): ``openclaw --version``
        completes them first, in a throwaway home, on the install's own Node."""
        if not InstallManager._lifecycle_pending(version, package_dir):
            return
        report(Stage.LIFECYCLE)
        with tempfile.TemporaryDirectory(prefix="ocprobe-lifecycle-") as home:
            env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
            env.update(HOME=home, OPENCLAW_HOME=home, OPENCLAW_STATE_DIR=home, NO_COLOR="1", DO_NOT_TRACK="1",
                       OPENCLAW_NO_AUTO_UPDATE="1", PATH=f"{node_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}")
            try:
                proc = subprocess.run([str(node_bin), str(package_dir / "openclaw.mjs"), "--version"], env=env,
                                      cwd=home, capture_output=True, text=True, timeout=LIFECYCLE_TIMEOUT,
                                      stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                raise InstallError(f"openclaw {version}: completing the package lifecycle took over "
                                   f"{LIFECYCLE_TIMEOUT:.0f} s") from None
        if proc.returncode or (package_dir / LIFECYCLE_PENDING).exists():
            last = next((line.strip() for line in reversed(proc.stderr.splitlines()) if line.strip()), "")
            raise InstallError(f"openclaw {version}: completing the package lifecycle failed (exit "
                               f"{proc.returncode}){f': {last[:300]}' if last else ''}")

    def _npm_beside_node(self, node_bin: Path) -> None:
        """From 2026.4.29 OpenClaw stages its plugins' runtime deps on the first turn with the npm found
        beside its Node (``<bin>/npm`` or ``../lib/node_modules/npm``), never on PATH, and fails every turn
        ("Unable to resolve a safe npm executable") without one. A Node fetched from npm ships no npm: link
        the machine's there (its ``env node`` shebang runs on the install's Node, first on the PATH)."""
        link = node_bin.parent / "npm"
        machine_npm = shutil.which("npm")
        if not node_bin.is_relative_to(self.root) or link.exists() or machine_npm is None:
            return  # the machine's own Node has its npm; never touch it
        if link.is_symlink():  # it dangles: the machine's npm moved since it was linked
            link.unlink(missing_ok=True)
        try:
            link.symlink_to(os.path.abspath(machine_npm))
        except FileExistsError:
            pass  # another process linked it first

    # -- removing --------------------------------------------------------------------------
    def remove(self, version: str) -> Install:
        """Remove an installed version; InstallBusy if another process uses or installs it."""
        install = self.get(version)
        if install is None:
            raise UsageError(f"openclaw {version} is not installed")
        try:
            with file_lock(self._lock(version), wait=False):
                discard(install.prefix)
        except BlockingIOError:
            raise InstallBusy(f"openclaw {version} is in use or being installed by another process") from None
        return install

    def remove_all(self) -> tuple[list[Install], list[str]]:
        """Remove every install and fetched Node nobody is using; returns what went and the busy versions."""
        removed: list[Install] = []
        busy: list[str] = []
        for install in self.installed():
            try:
                removed.append(self.remove(install.version))
            except InstallBusy:
                busy.append(install.version)
        self._prune_nodes()
        return removed, busy

    def _prune_nodes(self) -> None:
        self.nodes.prune(keep={i.node_bin for i in self.installed()})

    def evict_to(self, max_bytes: int, keep: Iterable[str] = ()) -> list[Install]:
        """Remove least recently used installs (never ``keep``, nor busy ones) until the cache holds at most
        ``max_bytes``; a fetched Node goes with the last install that used it. Returns what was evicted."""
        keep = set(keep)
        evicted: list[Install] = []
        for install in sorted(self.installed(), key=lambda i: i.last_used_at):
            if self.total_bytes() <= max_bytes:
                break
            if install.version in keep:
                continue
            try:
                evicted.append(self.remove(install.version))
            except InstallBusy:
                continue
            self._prune_nodes()
        return evicted

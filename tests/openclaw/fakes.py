"""An npm stand-in for the fast install tests, and helpers shared by the OpenClaw install tests."""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ocprobe.openclaw.installs import InstallManager
from ocprobe.openclaw.npm import InstallError, Npm

VERSIONS = ("2026.4.26", "2026.5.3", "2026.5.4")
NODE_RELEASES = ["98.0.0", "99.1.0", "99.2.0", "100.0.0"]


def node_tarball(dest: Path, version: str, extra: Iterable[tuple[str, bytes]] = ()) -> Path:
    """A stand-in for the node-<os>-<arch> npm tarball: package/bin/node is a script printing its version."""
    path = dest / f"node-fake-{version}.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("package/bin/node", f"#!/bin/sh\necho v{version}\n".encode()), *extra):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return path


class FakeNpm(Npm):
    """npm without a registry: publishes VERSIONS, installs a minimal package (plus ``payload`` bytes so
    sizes differ from zero), fails the versions in ``fail``, and serves fake Node releases."""

    def __init__(self, workdir: Path, *, engines: str = ">=18", fail: Iterable[str] = (), delay: float = 0.0,
                 payload: int = 64 * 1024, tarball_extra: Iterable[tuple[str, bytes]] = ()) -> None:
        super().__init__(workdir)
        self.engines, self.fail, self.delay, self.payload = engines, set(fail), delay, payload
        self.tarball_extra = list(tarball_extra)
        self.installs: list[str] = []
        self.packs: list[str] = []
        self._lock = threading.Lock()

    def view(self, spec: str, *fields: str) -> Any:
        if spec == "openclaw":
            return {"versions": list(VERSIONS), "dist-tags": {"latest": VERSIONS[-1], "beta": VERSIONS[0]}}
        if spec.startswith("openclaw@"):
            return {"node": self.engines}
        if spec.startswith("node-"):
            return NODE_RELEASES
        raise AssertionError(f"unexpected npm view {spec}")

    def pack(self, spec: str, dest: Path) -> Path:
        with self._lock:
            self.packs.append(spec)
        return node_tarball(dest, spec.rpartition("@")[2], self.tarball_extra)

    def install(self, spec: str, prefix: Path, path_first: Path) -> None:
        with self._lock:
            self.installs.append(spec)
        time.sleep(self.delay)
        version = spec.rpartition("@")[2]
        package = prefix / "node_modules" / "openclaw"
        package.mkdir(parents=True)  # partial work a failure must not leave behind
        if version in self.fail:
            raise InstallError(f"npm install {spec} failed: code E404; 404 No match found for version {version}")
        (package / "package.json").write_text(json.dumps({"name": "openclaw", "version": version}))
        (prefix / "node_modules" / ".bin").mkdir()
        (prefix / "node_modules" / ".bin" / "openclaw").write_text("#!/bin/sh\n")
        (prefix / "payload").write_bytes(b"x" * self.payload)


def make_manager(root: Path, **fake: Any) -> tuple[InstallManager, FakeNpm]:
    npm = FakeNpm(root, **fake)
    return InstallManager(root, npm=npm), npm


def leftovers(root: Path) -> list[str]:
    """Staging or trash directories left in the cache."""
    return sorted(p.name for sub in ("openclaw", "node") if (root / sub).is_dir() for p in (root / sub).iterdir()
                  if p.name.startswith("."))

"""InstallManager with an npm stand-in: idempotence, locking, failures, removal, LRU eviction, Node fetch."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from ocprobe.errors import UsageError
from ocprobe.openclaw.installs import Install, InstallBusy, InstallError, InstallManager, Stage
from tests.openclaw.fakes import FakeNpm, leftovers, make_manager

Fake = tuple[InstallManager, FakeNpm]


def age(install: Install, seconds_ago: float) -> None:
    """Pretend the install was last used a while ago."""
    used = install.prefix / ".ocprobe-last-used"
    at = used.stat().st_mtime - seconds_ago
    os.utime(used, (at, at))


def test_install_then_again_only_touches_last_use(fake: Fake) -> None:
    manager, npm = fake
    first = manager.install("2026.5.3")
    assert first.version == "2026.5.3" and first.prefix == manager.root / "openclaw" / "2026.5.3"
    assert first.openclaw_bin.exists() and first.size_bytes >= 64 * 1024
    system = manager.nodes.system
    assert system is not None and first.node_version == system.version  # engines >=18: the machine's Node does
    age(first, 3600)
    stages: list[Stage] = []
    second = manager.install("2026.5.3", on_progress=lambda v, stage, detail: stages.append(stage))
    assert npm.installs == ["openclaw@2026.5.3"]
    assert stages == [Stage.CACHED]
    assert second.installed_at == first.installed_at
    assert second.last_used_at > first.last_used_at - 60  # aged by an hour, touched back to now
    assert manager.get("2026.5.3") == second and manager.installed() == [second]


def test_dist_tag_resolves_to_its_version(fake: Fake) -> None:
    manager, npm = fake
    assert manager.install("latest").version == "2026.5.4"
    assert manager.resolve(["beta", "2026.4.26", "latest"]) == ["2026.4.26", "2026.5.4"]


def test_unknown_version_is_refused_before_anything_installs(fake: Fake) -> None:
    manager, npm = fake
    with pytest.raises(UsageError, match="'9.9.9'"):
        manager.install_many(["2026.5.3", "9.9.9"])
    assert npm.installs == [] and not (manager.root / "openclaw").exists()


def test_paths_never_come_from_unchecked_strings(fake: Fake) -> None:
    manager, _ = fake
    for bad in ("../../etc", "latest"):
        with pytest.raises(UsageError, match="not an openclaw version"):
            manager.get(bad)
        with pytest.raises(UsageError):
            manager.remove(bad)


def test_two_threads_installing_one_version_install_it_once(tmp_path: Path) -> None:
    manager, npm = make_manager(tmp_path / "cache", delay=0.5)
    stages: dict[str, list[Stage]] = {}
    results: list[Install] = []

    def worker(name: str) -> None:
        results.append(manager.install("2026.5.3", on_progress=lambda v, s, d: stages.setdefault(name, []).append(s)))

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert npm.installs == ["openclaw@2026.5.3"]
    assert results[0].installed_at == results[1].installed_at and results[0].prefix == results[1].prefix
    # one built it, the other waited on the lock and then found it installed
    assert sorted(s[-1] for s in stages.values()) == [Stage.CACHED, Stage.INSTALLED]
    assert [Stage.WAITING, Stage.CACHED] in stages.values()


def test_one_failure_does_not_stop_the_others_and_leaves_nothing(tmp_path: Path) -> None:
    manager, npm = make_manager(tmp_path / "cache", fail={"2026.5.4"})
    results = manager.install_many(["2026.4.26", "2026.5.4", "2026.5.3"], max_parallel=2)
    assert list(results) == ["2026.4.26", "2026.5.4", "2026.5.3"]
    error = results["2026.5.4"]
    assert isinstance(error, InstallError) and "E404" in str(error)
    assert [i.version for i in manager.installed()] == ["2026.4.26", "2026.5.3"]
    assert not (manager.root / "openclaw" / "2026.5.4").exists()
    assert leftovers(manager.root) == []


def test_leftovers_of_a_killed_install_are_cleared(fake: Fake) -> None:
    manager, _ = fake
    openclaw = manager.root / "openclaw"
    (openclaw / ".2026.5.3.tmp-killed" / "node_modules").mkdir(parents=True)
    (openclaw / "2026.5.3" / "node_modules").mkdir(parents=True)  # no marker: not an install
    assert manager.installed() == []
    assert manager.install("2026.5.3").version == "2026.5.3"
    assert leftovers(manager.root) == []


def test_remove_and_remove_all(fake: Fake) -> None:
    manager, _ = fake
    for version in ("2026.4.26", "2026.5.3", "2026.5.4"):
        manager.install(version)
    assert manager.remove("2026.5.3").version == "2026.5.3"
    assert [i.version for i in manager.installed()] == ["2026.4.26", "2026.5.4"]
    with pytest.raises(UsageError, match="not installed"):
        manager.remove("2026.5.3")
    removed, busy = manager.remove_all()
    assert [i.version for i in removed] == ["2026.4.26", "2026.5.4"] and busy == []
    assert manager.installed() == [] and leftovers(manager.root) == []


def test_an_install_in_use_is_neither_removed_nor_evicted(fake: Fake) -> None:
    manager, _ = fake
    manager.install("2026.5.3")
    with manager.use("2026.5.3") as install:
        with pytest.raises(InstallBusy):
            manager.remove("2026.5.3")
        assert manager.evict_to(0) == []
        assert manager.remove_all() == ([], ["2026.5.3"])
        assert install.openclaw_bin.exists()
    assert manager.remove("2026.5.3").version == "2026.5.3"


def test_evict_least_recently_used_first(tmp_path: Path) -> None:
    manager, _ = make_manager(tmp_path / "cache", payload=1_000_000)
    installs = {v: manager.install(v) for v in ("2026.4.26", "2026.5.3", "2026.5.4")}
    age(installs["2026.5.3"], 300)  # used 5 min ago: least recently
    age(installs["2026.4.26"], 200)
    total = manager.total_bytes()
    assert total == sum(i.size_bytes for i in installs.values())
    assert [i.version for i in manager.evict_to(total - 1)] == ["2026.5.3"]
    assert [i.version for i in manager.evict_to(total)] == []  # already under the cap
    assert [i.version for i in manager.evict_to(0, keep=["2026.4.26"])] == ["2026.5.4"]
    assert [i.version for i in manager.installed()] == ["2026.4.26"]


def test_a_fetched_node_is_shared_and_goes_with_its_last_install(tmp_path: Path) -> None:
    # engines the machine's Node cannot meet: a Node is fetched (npm pack), extracted and run
    manager, npm = make_manager(tmp_path / "cache", engines=">=99")
    fetched: list[str] = []

    def progress(version: str, stage: Stage, detail: str) -> None:
        if stage is Stage.NODE:
            fetched.append(detail)

    results = manager.install_many(["2026.5.3", "2026.5.4"], on_progress=progress)
    assert npm.packs.count(npm.packs[0]) == len(npm.packs) == 1 and npm.packs[0].endswith("@99.2.0")
    assert fetched and set(fetched) == {"99.2.0"}
    node_bin = manager.root / "node" / "99.2.0" / "package" / "bin" / "node"
    for install in results.values():
        assert isinstance(install, Install)
        assert (install.node_version, install.node_bin) == ("99.2.0", node_bin)
        # stored relative to the cache root, so a moved cache still finds its Node
        assert json.loads((install.prefix / ".ocprobe-install.json").read_text())["node_bin"] == "node/99.2.0/package/bin/node"
    assert manager.total_bytes() == sum(i.size_bytes for i in manager.installed()) + manager.nodes.total_bytes()
    manager.remove("2026.5.3")
    assert node_bin.exists()  # still used by 2026.5.4
    assert [i.version for i in manager.evict_to(0)] == ["2026.5.4"]
    assert manager.nodes.cached() == [] and manager.total_bytes() == 0 and leftovers(manager.root) == []


def test_a_node_tarball_reaching_outside_its_directory_is_refused(tmp_path: Path) -> None:
    manager, _ = make_manager(tmp_path / "cache", engines=">=99", tarball_extra=[("../escaped", b"x")])
    with pytest.raises(InstallError, match="outside"):
        manager.install("2026.5.3")
    assert not (tmp_path / "cache" / "node" / "escaped").exists() and not (tmp_path / "cache" / "escaped").exists()
    assert manager.nodes.cached() == [] and manager.installed() == [] and leftovers(manager.root) == []


def test_a_range_without_any_node_release_fails_cleanly(tmp_path: Path) -> None:
    manager, _ = make_manager(tmp_path / "cache", engines=">=200")
    with pytest.raises(InstallError, match="satisfies node >=200"):
        manager.install("2026.5.3")
    assert manager.installed() == []


@pytest.mark.skipif(shutil.which("npm") is None, reason="needs the machine's npm to link")
def test_a_fetched_node_gets_the_machines_npm_beside_it_and_a_dangling_link_is_mended(tmp_path: Path) -> None:
    manager, _ = make_manager(tmp_path / "cache", engines=">=99")
    install = manager.install("2026.5.3")
    link = install.node_bin.parent / "npm"
    assert link.resolve() == Path(shutil.which("npm") or "").resolve()
    link.unlink()
    link.symlink_to(tmp_path / "npm-that-moved")  # the machine's npm is elsewhere now
    again = manager.install("2026.5.3")  # cached: the link is checked again
    assert link.resolve() == Path(shutil.which("npm") or "").resolve() and again.version == "2026.5.3"


def test_an_install_in_use_is_installed_again_at_once(fake: Fake) -> None:
    """A launched gateway holds its version's lock (shared) for its whole life. Before, a second probe of the
    same version (e.g. 'openclaw up V' in one terminal, '--target openclaw@V' in another, or a bisect's
    prefetch) took the exclusive lock even to find it installed, and waited until the first one ended."""
    manager, _ = fake
    manager.install("2026.5.3")
    with manager.use("2026.5.3"):
        done = threading.Event()
        stages: list[Stage] = []

        def again() -> None:
            manager.install("2026.5.3", on_progress=lambda v, stage, detail: stages.append(stage))
            done.set()

        threading.Thread(target=again, daemon=True).start()
        assert done.wait(10), "the install of a version in use waited for its user"
    assert stages == [Stage.CACHED]

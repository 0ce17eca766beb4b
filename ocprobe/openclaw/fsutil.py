"""Cache-directory discipline shared by OpenClaw prefixes and fetched Node runtimes: one lock file per
item, directories built beside their final place and renamed into it, removal by rename first, so a
reader sees an item whole or not at all."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(path: Path, *, shared: bool = False, wait: bool = True,
              on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """``flock`` on ``path``: exclusive for whoever builds or removes the item, shared for its users.

    Each call opens the file anew, so two threads of one process exclude each other too. With
    ``wait=False`` a held lock raises BlockingIOError; ``on_wait`` is called once if the call must wait.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    with open(path, "a+b") as handle:  # "a": never truncates a lock file someone else holds
        try:
            fcntl.flock(handle.fileno(), mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise
            if on_wait:
                on_wait()
            fcntl.flock(handle.fileno(), mode)
        yield  # closing the file releases the lock, also on error


@contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """A fresh directory beside ``final`` (same filesystem, so the rename is atomic); renamed into
    place when the block succeeds, deleted whatever else happens (error, Ctrl-C)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def discard(path: Path) -> None:
    """Take ``path`` out of sight with one rename, then delete it: never a half-deleted item in a listing."""
    trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.trash-", dir=path.parent))
    os.rename(path, trash / path.name)
    shutil.rmtree(trash, ignore_errors=True)


def clear_leftovers(final: Path) -> None:
    """Remove what a killed process left for this item: its staging and trash dirs, and ``final`` itself
    when it exists without being a complete item. Call only under the item's exclusive lock."""
    for pattern in (f".{final.name}.tmp-*", f".{final.name}.trash-*"):
        for leftover in final.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)
    if final.exists():
        discard(final)


def disk_usage(path: Path) -> int:
    """Bytes allocated under ``path``, like ``du`` (symlinks not followed)."""
    total = path.lstat().st_blocks * 512
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total

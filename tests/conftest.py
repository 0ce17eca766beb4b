"""Fixtures shared by every test package."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager

import pytest

ServerFactory = Callable[[], AbstractAsyncContextManager[str]]


@pytest.fixture
def in_thread() -> Iterator[Callable[[ServerFactory], str]]:
    """Runs a loopback server (an async context manager yielding its URL) on its own event loop in a thread,
    for tests that drive ocprobe as a separate process against it; every server is stopped at the end."""
    loops: list[asyncio.AbstractEventLoop] = []
    threads: list[threading.Thread] = []

    def start(factory: ServerFactory) -> str:
        ready, url = threading.Event(), []

        async def main() -> None:
            async with factory() as address:
                url.append(address)
                loops.append(asyncio.get_running_loop())
                ready.set()
                await asyncio.Event().wait()

        def run() -> None:
            try:
                asyncio.run(main())
            except RuntimeError:
                pass  # stopped from the test's thread

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        assert ready.wait(10), "the server did not start"
        return url[0]

    yield start
    for loop in loops:
        loop.call_soon_threadsafe(loop.stop)
    for thread in threads:
        thread.join(timeout=10)


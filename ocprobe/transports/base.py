"""The seam between the probe engine and a gateway: one ``chat.send`` in, one ``ChatOutcome`` out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ocprobe.models import ChatEvent, ChatOutcome


class Transport(ABC):
    """A connection to a gateway. Implementations never print; they raise ``OcprobeError``s."""

    #: ``server.version`` reported by the gateway, once connected
    server_version: str | None = None
    #: the protocol version negotiated in the handshake, where the transport has one (the WebSocket)
    protocol: int | None = None

    @abstractmethod
    async def open(self) -> None:
        """Connect (and authenticate). Raises AuthFailed or TargetUnreachable."""

    @abstractmethod
    async def send(self, session_key: str, message: str, idempotency_key: str, timeout: float) -> ChatOutcome:
        """Send one chat turn and wait for its end (final, error, aborted) or the timeout."""

    async def wait_run(self, run_id: str, timeout: float) -> None:
        """Wait until the server-side run has fully ended; transports without the notion return at once."""

    async def history(self, session_key: str, limit: int = 50) -> list[dict[str, Any]]:
        """Messages of a session, when the gateway exposes them."""
        return []

    def take_foreign_events(self) -> list[ChatEvent]:
        """Terminal chat events for runs this transport did not start (queued turns running late)."""
        return []

    @abstractmethod
    async def close(self) -> None:
        """Close; idempotent."""

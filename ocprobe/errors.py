"""Errors that end a run with a clear one-line message and exit code 2 (usage, connection, auth)."""

from __future__ import annotations


class OcprobeError(Exception):
    """Base: the message is shown to the user as one line."""

    exit_code = 2


class UsageError(OcprobeError):
    """Bad option, file or value: refused before anything runs."""


class TargetUnreachable(OcprobeError):
    """The gateway could not be reached, or the connection could not be re-established."""


class AuthFailed(OcprobeError):
    """The gateway refused the credentials."""


class ProtocolError(OcprobeError):
    """The gateway answered something the protocol does not allow."""


class ProtocolMismatch(OcprobeError):
    """The gateway speaks no protocol version ocprobe offers: retrying cannot help."""

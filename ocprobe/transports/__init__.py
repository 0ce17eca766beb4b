"""Transports behind one interface (``Transport``): ``ws`` (the OpenClaw WebSocket protocol), ``relay``
(HTTP POST of a JSON body) and ``openai`` (``POST /v1/chat/completions``)."""

from ocprobe.transports.base import Transport

TRANSPORT_NAMES = ("ws", "relay", "openai")

__all__ = ["TRANSPORT_NAMES", "Transport"]

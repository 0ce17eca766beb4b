"""What a relay is sent and where its reply is: the body template and the reply path. Kept apart from the
HTTP transports so that checking a target's options does not import an HTTP client."""

from __future__ import annotations

import json
import re
from typing import Any

from ocprobe.errors import UsageError

#: The body the reporter's relay took. ``{name}`` placeholders outside a JSON string become JSON strings,
#: inside one they become the escaped text (``"hello {message}"`` works too).
DEFAULT_RELAY_BODY = '{"sessionKey": {session_key}, "message": {message}}'
RELAY_FIELDS = ("session_key", "message", "idempotency_key")
DEFAULT_REPLY_PATH = "reply"
DEFAULT_OPENAI_MODEL = "openclaw"
_PLACEHOLDER = re.compile(r"\{(" + "|".join(RELAY_FIELDS) + r")\}")
_DUMMIES = {"session_key": 'agent:x:"main"', "message": 'dummy "quoted" \\ text\nline two é', "idempotency_key": "k-1"}


# -- relay body template ---------------------------------------------------------------------------
class RelayBody:
    """A JSON text with ``{session_key}``, ``{message}``, ``{idempotency_key}`` placeholders, checked once."""

    def __init__(self, template: str) -> None:
        self.template = template
        self._parts: list[str | tuple[str, bool]] = []  # literal text, or (field, inside a JSON string)
        literal: list[str] = []
        in_string = escaped = False
        i = 0
        while i < len(template):
            ch = template[i]
            match = _PLACEHOLDER.match(template, i) if ch == "{" else None
            if match:
                self._parts.append("".join(literal))
                literal = []
                self._parts.append((match.group(1), in_string))
                i = match.end()
                continue
            literal.append(ch)
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            i += 1
        self._parts.append("".join(literal))
        self.fields = {p[0] for p in self._parts if isinstance(p, tuple)}
        if "message" not in self.fields:
            raise UsageError(f"bad relay body template (--relay-body) {template!r}: it must contain {{message}}")
        try:
            json.loads(self.render(**_DUMMIES))
        except ValueError as exc:
            raise UsageError(f"bad relay body template (--relay-body) {template!r}: not JSON once filled in ({exc})") from None

    def render(self, *, session_key: str, message: str, idempotency_key: str) -> str:
        values = {"session_key": session_key, "message": message, "idempotency_key": idempotency_key}
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
            else:
                encoded = json.dumps(values[part[0]], ensure_ascii=False)
                out.append(encoded[1:-1] if part[1] else encoded)
        return "".join(out)


# -- reply path ------------------------------------------------------------------------------------
class ReplyPathError(Exception):
    pass


def parse_reply_path(path: str) -> tuple[str, ...]:
    """``reply``, ``data.text``, ``choices.0.message.content``: keys, and list indexes as numbers."""
    segments = tuple(path.strip().split("."))
    if not path.strip() or any(not s.strip() for s in segments):
        raise UsageError(f"bad reply path (--reply-path) {path!r}: use dotted keys like reply, data.text or choices.0.message.content")
    return tuple(s.strip() for s in segments)


def extract_reply(body: Any, segments: tuple[str, ...]) -> str:
    """The text at ``segments``; ``null`` there is an empty reply. Raises ReplyPathError saying where it broke."""
    current = body
    for depth, segment in enumerate(segments):
        where = ".".join(segments[:depth]) or "the top level"
        if isinstance(current, dict):
            if segment not in current:
                keys = ", ".join(sorted(map(str, current))[:8]) or "none"
                raise ReplyPathError(f"no key {segment!r} at {where} (keys there: {keys})")
            current = current[segment]
        elif isinstance(current, list):
            if not segment.lstrip("-").isdigit():
                raise ReplyPathError(f"{where} is a list: {segment!r} is not an index")
            index = int(segment)
            if not -len(current) <= index < len(current):
                raise ReplyPathError(f"index {index} out of range at {where} (a list of {len(current)})")
            current = current[index]
        else:
            raise ReplyPathError(f"{where} is {_kind(current)}, not an object or list: cannot take {segment!r}")
    if current is None:
        return ""
    if not isinstance(current, str):
        raise ReplyPathError(f"{'.'.join(segments)} holds {_kind(current)}, not text")
    return current


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )

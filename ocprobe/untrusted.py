"""Text that came from outside (a gateway's frames and bodies, log lines, file names) made safe for every sink.

JSON may carry a lone UTF-16 surrogate (``"\\ud800"`` is legal JSON; a Node gateway emits one when it cuts a
reply inside an emoji). Python decodes it into a ``str`` that no UTF-8 file, terminal or XML writer can take,
so one such reply would abort the run and lose every record after it. Decoding replaces each lone surrogate
with U+FFFD, as a UTF-8 decoder does with a broken sequence; well-formed pairs are left as they are.
"""

from __future__ import annotations

import json
import re
from typing import Any

# A JSON escape of a surrogate code unit: only then can the decoded value hold a lone one (raw text decoded
# from UTF-8 holds none itself). Looked for as text or bytes, as the input comes.
_ESCAPED = r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}"
_ESCAPED_SURROGATE = re.compile(_ESCAPED)
_ESCAPED_SURROGATE_BYTES = re.compile(_ESCAPED.encode())
_SURROGATE = re.compile("[\ud800-\udfff]")


def scrub(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (a valid pair becomes its character)."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def scrub_tree(value: Any) -> Any:
    """Every string in a decoded JSON value (keys too) scrubbed, in place where it can be; iterative, so
    a value as deep as the parser allows does not overflow the stack."""
    if isinstance(value, str):
        return scrub(value)
    stack = [value] if isinstance(value, (dict, list)) else []
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            for i, item in enumerate(node):
                if isinstance(item, str):
                    node[i] = scrub(item)
                elif isinstance(item, (dict, list)):
                    stack.append(item)
            continue
        for key in list(node):
            item = node[key]
            if isinstance(item, str):
                node[key] = scrub(item)
            elif isinstance(item, (dict, list)):
                stack.append(item)
            if _SURROGATE.search(key):
                node[scrub(key)] = node.pop(key)
    return value


def loads(raw: str | bytes) -> Any:
    """``json.loads`` for outside input: the same value, every lone surrogate replaced. Raises what
    ``json.loads`` raises (ValueError, RecursionError)."""
    value = json.loads(raw)
    escaped = _ESCAPED_SURROGATE.search(raw) if isinstance(raw, str) else _ESCAPED_SURROGATE_BYTES.search(raw)
    return scrub_tree(value) if escaped else value


# C0 controls but tab and newline, DEL, C1 controls: an escape sequence in a reply must not reach the
# terminal (clear the screen, set the title, move the cursor), nor a carriage return hide a line.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def for_terminal(text: str) -> str:
    """``text`` with every control character shown as its escape (``\\x1b``), as a person should see it."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text) if _CONTROL.search(text) else text

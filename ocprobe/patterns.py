"""Log patterns, compiled with RE2: matching takes time linear in the line, whatever the pattern.

A user's pattern runs against every line a gateway logs, on the same machine that times the calls: with
Python's backtracking engine, ``(a+)+$`` against a line of 28 ``a`` and a ``!`` froze a probe for ~25 s. RE2
(Google's engine, the ``google-re2`` binding) has no backtracking, so no pattern can do that; the price is
its syntax, which has no backreferences or lookaround: such a pattern is refused with RE2's own reason.
"""

from __future__ import annotations

from typing import Any, Protocol

import re2


class Matcher(Protocol):
    pattern: Any

    def search(self, text: str) -> Any: ...


class PatternError(ValueError):
    """A pattern RE2 refuses; the message is RE2's reason."""


_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the reason is raised, not also written to stderr


def compile_pattern(pattern: str) -> Matcher:
    try:
        return re2.compile(pattern, _OPTIONS)  # type: ignore[no-any-return]
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        raise PatternError(reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)) from None
    except (TypeError, ValueError) as exc:
        raise PatternError(str(exc)) from None

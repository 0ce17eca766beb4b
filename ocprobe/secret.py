"""Secrets (gateway tokens, provider keys): compared in constant time, and removed from what ocprobe shows
or stores."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import fields, is_dataclass, replace
from enum import Enum
from typing import Any, TypeVar

REDACTED = "***"
T = TypeVar("T")


def same_secret(presented: str, expected: str) -> bool:
    """Constant-time equality. Text from the wire may hold lone surrogates, which plain UTF-8 refuses to
    encode: they must make a mismatch, not an exception."""
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


class Redactor:
    """Replaces every secret it knows, whatever its length: a short token is still a token (redacting it may
    mangle text that happens to contain it, which is the lesser harm)."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def add(self, secret: str | None) -> None:
        if secret and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def __call__(self, value: T) -> T:
        """A copy of ``value`` (strings, dataclasses, lists, tuples, dicts) with every secret replaced."""
        result: Any = value
        if not self._secrets or isinstance(value, Enum):  # before str: str enums (call classes) stay enums
            pass
        elif isinstance(value, str):
            for secret in self._secrets:
                result = result.replace(secret, REDACTED)
        elif is_dataclass(value) and not isinstance(value, type):
            result = replace(value, **{f.name: self(getattr(value, f.name)) for f in fields(value) if f.init})
        elif isinstance(value, (list, tuple)):
            result = type(value)(self(item) for item in value)
        elif isinstance(value, dict):
            result = {self(k): self(v) for k, v in value.items()}
        return result  # type: ignore[no-any-return]

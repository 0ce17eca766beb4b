"""npm's semver, as far as ocprobe needs it: release order of published versions and the range forms
``engines.node`` uses (``>=a.b.c``, ``^``, ``~``, exact, x-ranges and partial versions, space-joined
conjunctions, ``||`` alternatives). Hyphen ranges are refused rather than guessed."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

_VERSION = re.compile(
    r"v?(\d+)\.(\d+)\.(\d+)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"  # build metadata: no part in precedence
)
_PART = r"(\*|[xX]|\d+)"
_COMPARATOR = re.compile(
    rf"(<=|>=|<|>|=|\^|~>?)?v?{_PART}(?:\.{_PART})?(?:\.{_PART})?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?"
)


@functools.total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Version:
        match = _VERSION.fullmatch(text.strip())
        if not match:
            raise ValueError(f"not a semver version: {text!r}")
        major, minor, patch, pre = match.groups()
        return cls(int(major), int(minor), int(patch), tuple(pre.split(".")) if pre else ())

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # A prerelease sorts before its release; its identifiers compare numerically when numeric,
        # numeric ones before alphanumeric ones, and a shorter list first when one is a prefix.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        return f"{core}-{'.'.join(self.prerelease)}" if self.prerelease else core


def is_version(text: str) -> bool:
    return _VERSION.fullmatch(text.strip()) is not None


def sort_versions(versions: Iterable[str]) -> list[str]:
    """Release order (semver precedence), oldest first."""
    return sorted(versions, key=Version.parse)


Comparator = tuple[str, Version]


def _part(text: str | None) -> int | None:
    return None if text is None or text in ("*", "x", "X") else int(text)


def _comparators(token: str) -> list[Comparator]:
    """One range token (``^22.14``, ``>=24.16.0``, ``22.x`` ...) as plain comparisons, npm's desugaring."""
    match = _COMPARATOR.fullmatch(token)
    if not match:
        raise ValueError(f"unsupported range part {token!r}")
    op, raw_major, raw_minor, raw_patch, pre = match.groups()
    op = op or "="
    major, minor, patch = _part(raw_major), _part(raw_minor), _part(raw_patch)
    if minor is None:
        patch = None  # 22.x.3 means 22.x
    if major is None:
        return [] if op in ("=", ">=", "^", "~", "~>", "<=") else [("<", Version(0, 0, 0))]
    prerelease = tuple(pre.split(".")) if pre and patch is not None else ()
    low = Version(major, minor or 0, patch or 0, prerelease)
    next_major, next_minor = Version(major + 1, 0, 0), Version(major, (minor or 0) + 1, 0)
    if op == "=":
        if patch is not None:
            return [("=", low)]
        return [(">=", low), ("<", next_major if minor is None else next_minor)]
    if op == "^":
        if major or minor is None:
            high = next_major
        elif minor or patch is None:
            high = next_minor
        else:
            high = Version(0, 0, patch + 1)
        return [(">=", low), ("<", high)]
    if op in ("~", "~>"):
        return [(">=", low), ("<", next_major if minor is None else next_minor)]
    if patch is not None or op in (">=", "<"):
        return [(op, low)]
    # '>22' is '>=23.0.0' and '<=22.14' is '<22.15.0': a partial bound covers its whole last part.
    return [(">=" if op == ">" else "<", next_major if minor is None else next_minor)]


_OPS = {
    "=": lambda v, c: v == c,
    "<": lambda v, c: v < c,
    "<=": lambda v, c: v <= c,
    ">": lambda v, c: v > c,
    ">=": lambda v, c: v >= c,
}


@dataclass(frozen=True)
class Range:
    """An npm range: any alternative whose comparators all hold. ``version in Range.parse('>=22.14')``."""

    text: str
    alternatives: tuple[tuple[Comparator, ...], ...]

    @classmethod
    def parse(cls, text: str) -> Range:
        """Raises ValueError for a form this module does not support."""
        alternatives = []
        for alternative in text.split("||"):
            # npm allows a space between operator and version ('>= 22'); glue them before splitting.
            tokens = re.sub(r"(<=|>=|<|>|=|\^|~>?)\s+", r"\1", alternative.strip()).split()
            alternatives.append(tuple(c for token in tokens for c in _comparators(token)))
        return cls(text, tuple(alternatives))

    def __contains__(self, version: object) -> bool:
        v = version if isinstance(version, Version) else Version.parse(str(version))
        for comparators in self.alternatives:
            # npm: a prerelease matches only a range naming a prerelease of the same major.minor.patch.
            if v.prerelease and not any(
                c.prerelease and (c.major, c.minor, c.patch) == (v.major, v.minor, v.patch) for _, c in comparators
            ):
                continue
            if all(_OPS[op](v, c) for op, c in comparators):
                return True
        return False

    def __str__(self) -> str:
        return self.text

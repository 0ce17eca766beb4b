"""CI gates: small comparisons of a probe metric with a number, e.g. ``real.rate >= 0.95``.

Gates come from the command line, so they are parsed by a hand-written tokenizer and parser, never
``eval``. Grammar (whitespace is allowed between any two tokens)::

    gate   := metric OP number
    metric := NAME ("." NAME)*
            | "log" "[" STRING "]"
    NAME   := [A-Za-z_][A-Za-z0-9_]*
    STRING := '"' any characters but '"' '"'
            | "'" any characters but "'" "'"
    OP     := "==" | "!=" | "<" | "<=" | ">" | ">="
    number := ["-"] DIGITS ["." DIGITS]        (DIGITS := [0-9]+)

Strings have no escapes: a log pattern is a regex source, full of backslashes meant literally; a
pattern containing a double quote is written in single quotes. ``log["X"]`` names the metric key
``log[X]``.

Examples: ``fast_fail.count == 0``, ``fail.rate.upper95 < 0.05``, ``real.p95_ms < 3000``,
``log["ReplyRunAlreadyActiveError"] == 0``.

A syntax error raises :class:`GateSyntaxError` naming the gate, the offending token and its column
(1-based): ``bad gate 'real.rate >> 1': unexpected '>>' at column 11``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ocprobe.models import CallClass, Fate, ProbeSummary
from ocprobe.stats import wilson_interval

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_OPERATOR_CHARS = "<>=!"
_QUOTES = "\"'"
_PUNCTUATION = {".": "dot", "[": "lbracket", "]": "rbracket"}


class GateSyntaxError(ValueError):
    pass


class UnknownMetricError(ValueError):
    def __init__(self, gate: Gate, known: Iterable[str]) -> None:
        self.gate = gate
        self.known = sorted(_display(key) for key in known)
        super().__init__(
            f"unknown metric {_display(gate.metric)!r} in gate {gate.text!r}; "
            f"known metrics: {', '.join(self.known) or '(none)'}"
        )


def _display(key: str) -> str:
    """A metric key as it is written in a gate: ``log[X]`` becomes ``log["X"]``."""
    if key.startswith("log[") and key.endswith("]"):
        pattern = key[4:-1]
        quote = "'" if '"' in pattern else '"'
        return f"log[{quote}{pattern}{quote}]"
    return key


@dataclass(frozen=True)
class _Token:
    kind: str  # name | dot | lbracket | rbracket | string | op | number | end
    text: str  # as written, quotes included
    column: int  # 1-based


def _is_name_start(ch: str) -> bool:
    return ch == "_" or ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def _is_digit(ch: str) -> bool:
    return "0" <= ch <= "9"  # not str.isdigit: that accepts non-ASCII digits


def _tokenize(text: str) -> list[_Token]:
    def fail(message: str) -> GateSyntaxError:
        return GateSyntaxError(f"bad gate {text!r}: {message}")

    def scan(i: int, accept: Callable[[str], bool]) -> int:
        while i < len(text) and accept(text[i]):
            i += 1
        return i

    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        ch, start = text[i], i
        if ch.isspace():
            i += 1
            continue
        if _is_name_start(ch):
            i = scan(i, lambda c: _is_name_start(c) or _is_digit(c))
            kind = "name"
        elif ch in _PUNCTUATION:
            i += 1
            kind = _PUNCTUATION[ch]
        elif ch in _QUOTES:
            end = text.find(ch, i + 1)
            if end < 0:
                raise fail(f"unterminated string {text[i:]!r} at column {i + 1}")
            i = end + 1
            kind = "string"
        elif ch in _OPERATOR_CHARS:
            # The whole run, so that '>>' or '=<' is reported as one bad operator.
            i = scan(i, lambda c: c in _OPERATOR_CHARS)
            if text[start:i] not in OPERATORS:
                raise fail(f"unexpected {text[start:i]!r} at column {start + 1}")
            kind = "op"
        elif _is_digit(ch) or (ch == "-" and i + 1 < len(text) and _is_digit(text[i + 1])):
            i = scan(i + 1, _is_digit)
            if i + 1 < len(text) and text[i] == "." and _is_digit(text[i + 1]):
                i = scan(i + 1, _is_digit)
            kind = "number"
        else:
            raise fail(f"unexpected {ch!r} at column {i + 1}")
        tokens.append(_Token(kind, text[start:i], start + 1))
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def expect(self, kind: str, expected: str) -> _Token:
        token = self.peek()
        if token.kind != kind:
            found = "end of gate" if token.kind == "end" else repr(token.text)
            raise GateSyntaxError(
                f"bad gate {self.text!r}: unexpected {found} at column {token.column} (expected {expected})"
            )
        self.pos += 1
        return token

    def gate(self) -> Gate:
        metric = self.metric()
        op = self.expect("op", "an operator").text
        value = float(self.expect("number", "a number").text)
        self.expect("end", "end of gate")
        return Gate(text=self.text.strip(), metric=metric, op=op, value=value)

    def metric(self) -> str:
        name = self.expect("name", "a metric").text
        if name == "log" and self.peek().kind == "lbracket":
            self.pos += 1
            pattern = self.expect("string", "a quoted log pattern").text[1:-1]
            self.expect("rbracket", "']'")
            return f"log[{pattern}]"
        parts = [name]
        while self.peek().kind == "dot":
            self.pos += 1
            parts.append(self.expect("name", "a name after '.'").text)
        return ".".join(parts)


@dataclass(frozen=True)
class Gate:
    text: str
    metric: str  # key into the metrics mapping; log gates use ``log[PATTERN]``
    op: str
    value: float

    def evaluate(self, metrics: Mapping[str, float | None]) -> GateResult:
        if self.metric not in metrics:
            raise UnknownMetricError(self, metrics.keys())
        actual = metrics[self.metric]
        if actual is None:
            return GateResult(gate=self, actual=None, status="inconclusive")
        passed = OPERATORS[self.op](actual, self.value)
        if not passed and self.metric.endswith((".lower95", ".upper95")):
            point = metrics.get(self.metric.rsplit(".", 1)[0])
            if point is not None and OPERATORS[self.op](point, self.value):
                # The observed rate meets the gate but its 95% interval is still too wide: too few
                # calls to decide, which is not the same as a regression.
                return GateResult(gate=self, actual=actual, status="inconclusive")
        return GateResult(gate=self, actual=actual, status="pass" if passed else "fail")


@dataclass
class GateResult:
    gate: Gate
    actual: float | None
    # pass | fail | inconclusive: the metric has no value (a rate over no calls), or a 95% bound misses
    # the gate while the observed rate meets it
    status: str


def parse_gate(text: str) -> Gate:
    return _Parser(text).gate()


def parse_gates(texts: Iterable[str]) -> list[Gate]:
    return [parse_gate(text) for text in texts]


def probe_metrics(summary: ProbeSummary) -> dict[str, float | None]:
    """Every metric a gate can name, for one probe run.

    ``None`` marks a metric without a value (a rate over no calls, the latency of a class with no
    calls): gates on it are inconclusive rather than passing or failing on a made-up number. Every
    class and fate is present even at zero, so a gate on it is valid whatever the run produced.
    """
    calls = summary.calls
    metrics: dict[str, float | None] = {"calls": calls}

    def rate(count: int) -> float | None:
        return count / calls if calls else None

    for cls in CallClass:
        count = summary.counts.get(cls.value, 0)
        latency = summary.latency.get(cls.value)
        timed = latency if count and latency is not None and latency.count else None
        metrics[f"{cls.value}.count"] = count
        metrics[f"{cls.value}.rate"] = rate(count)
        metrics[f"{cls.value}.median_ms"] = timed.median_ms if timed else None
        metrics[f"{cls.value}.p95_ms"] = timed.p95_ms if timed else None

    real = summary.counts.get(CallClass.REAL.value, 0)
    fail = calls - real
    metrics["fail.count"] = fail
    metrics["fail.rate"] = rate(fail)
    for name, count in (("fail", fail), ("real", real)):
        interval = wilson_interval(count, calls) if calls else None
        metrics[f"{name}.rate.lower95"] = interval[0] if interval else None
        metrics[f"{name}.rate.upper95"] = interval[1] if interval else None

    for fate, count in ({f.value: 0 for f in Fate} | summary.fates).items():
        metrics[f"fate.{fate}.count"] = count
    for pattern, count in summary.log_counts.items():
        metrics[f"log[{pattern}]"] = count
    return metrics


def overall_status(results: Iterable[GateResult]) -> str:
    statuses = {result.status for result in results}
    if "fail" in statuses:
        return "fail"
    if "inconclusive" in statuses:
        return "inconclusive"
    return "pass"

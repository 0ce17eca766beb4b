"""Gate parsing, evaluation and the metrics a probe summary offers to gates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocprobe.gates import (
    Gate,
    GateResult,
    GateSyntaxError,
    UnknownMetricError,
    overall_status,
    parse_gate,
    parse_gates,
    probe_metrics,
)
from ocprobe.models import CallClass, Fate, LatencyStats, ProbeSummary

BUSY = "ReplyRunAlreadyActiveError"


@pytest.mark.parametrize(
    ("text", "actual", "status"),
    [
        ("m == 0", 0.0, "pass"),
        ("m == 0", 1.0, "fail"),
        ("m != 0", 1.0, "pass"),
        ("m != 0", 0.0, "fail"),
        ("m < 3000", 2999.9, "pass"),
        ("m < 3000", 3000.0, "fail"),
        ("m <= 0.05", 0.05, "pass"),
        ("m <= 0.05", 0.051, "fail"),
        ("m > -1", 0.0, "pass"),
        ("m > -1", -1.0, "fail"),
        ("m >= 0.95", 0.95, "pass"),
        ("m >= 0.95", 0.949, "fail"),
    ],
)
def test_every_operator(text: str, actual: float, status: str) -> None:
    gate = parse_gate(text)
    assert gate.evaluate({"m": actual}) == GateResult(gate=gate, actual=actual, status=status)


@pytest.mark.parametrize(
    ("text", "metric", "op", "value"),
    [
        ("fast_fail.count == 0", "fast_fail.count", "==", 0.0),
        ("fail.rate.upper95<0.05", "fail.rate.upper95", "<", 0.05),
        ("  real.p95_ms\t<  3000 ", "real.p95_ms", "<", 3000.0),
        ("real . rate >= 0.95", "real.rate", ">=", 0.95),
        ("x_1.y2 != -2.5", "x_1.y2", "!=", -2.5),
        (f'log["{BUSY}"] == 0', f"log[{BUSY}]", "==", 0.0),
        (f"log['{BUSY}']==0", f"log[{BUSY}]", "==", 0.0),
        ("log [ 'a\"b' ] > 1", 'log[a"b]', ">", 1.0),  # single quotes hold a double quote
        (r'log["error\s+\d"] <= 2', r"log[error\s+\d]", "<=", 2.0),  # no escapes: regex text as written
        ("log.count == 1", "log.count", "==", 1.0),  # "log" is a plain name unless "[" follows
    ],
)
def test_parse(text: str, metric: str, op: str, value: float) -> None:
    assert parse_gate(text) == Gate(text=text.strip(), metric=metric, op=op, value=value)


def test_parse_gates_keeps_order() -> None:
    assert [g.metric for g in parse_gates(["b.x > 1", "a.y < 2"])] == ["b.x", "a.y"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("real.rate >> 1", "bad gate 'real.rate >> 1': unexpected '>>' at column 11"),
        ("real.rate 0.95", "unexpected '0.95' at column 11 (expected an operator)"),  # missing operator
        ("real.rate = 1", "unexpected '=' at column 11"),
        ("real.rate >=", "unexpected end of gate at column 13 (expected a number)"),  # missing value
        ("real.rate >= x", "unexpected 'x' at column 14 (expected a number)"),
        ("real.rate >= 1 ms", "unexpected 'ms' at column 16 (expected end of gate)"),  # trailing junk
        ("real.rate >= 1.2.3", "unexpected '.' at column 17 (expected end of gate)"),
        ('log["abc] == 0', "unterminated string '\"abc] == 0' at column 5"),
        ("real.rate @ 1", "unexpected '@' at column 11"),  # bad character
        ("real.rate >= - 1", "unexpected '-' at column 14"),
        ("", "bad gate '': unexpected end of gate at column 1 (expected a metric)"),  # empty
        ("   ", "unexpected end of gate at column 4 (expected a metric)"),
        ("== 1", "unexpected '==' at column 1 (expected a metric)"),
        ("real. == 1", "unexpected '==' at column 7 (expected a name after '.')"),
        ("log[abc] == 1", "unexpected 'abc' at column 5 (expected a quoted log pattern)"),
        ('log["abc" == 1', "unexpected '==' at column 11 (expected ']')"),
    ],
)
def test_syntax_errors_name_gate_token_and_column(text: str, message: str) -> None:
    with pytest.raises(GateSyntaxError) as info:
        parse_gate(text)
    assert message in str(info.value)
    assert str(info.value).startswith(f"bad gate {text!r}: ")


def test_unknown_metric_lists_known_ones_in_gate_syntax() -> None:
    gate = parse_gate("reel.rate >= 0.95")
    with pytest.raises(UnknownMetricError) as info:
        gate.evaluate({"real.rate": 1.0, "calls": 3, f"log[{BUSY}]": 0})
    assert str(info.value) == (
        "unknown metric 'reel.rate' in gate 'reel.rate >= 0.95'; "
        f'known metrics: calls, log["{BUSY}"], real.rate'
    )


def test_unknown_log_metric_is_shown_as_written() -> None:
    with pytest.raises(UnknownMetricError, match=r"""unknown metric 'log\["nope"\]'"""):
        parse_gate('log["nope"] == 0').evaluate({})


def test_none_is_inconclusive() -> None:
    gate = parse_gate("real.p95_ms < 3000")
    assert gate.evaluate({"real.p95_ms": None}) == GateResult(gate=gate, actual=None, status="inconclusive")


@pytest.mark.parametrize(
    ("statuses", "overall"),
    [
        ([], "pass"),
        (["pass", "pass"], "pass"),
        (["pass", "inconclusive"], "inconclusive"),
        (["inconclusive", "fail", "pass"], "fail"),
    ],
)
def test_overall_status(statuses: list[str], overall: str) -> None:
    gate = parse_gate("m == 0")
    assert overall_status([GateResult(gate=gate, actual=0.0, status=s) for s in statuses]) == overall


def summary(**overrides: object) -> ProbeSummary:
    fields: dict[str, object] = {
        "calls": 20,
        "counts": {"real": 16, "fast_fail": 3, "timeout": 1},
        "latency": {
            "real": LatencyStats(count=16, median_ms=850.0, p95_ms=2100.0),
            "fast_fail": LatencyStats(count=3, median_ms=4.0, p95_ms=6.5),
            "timeout": LatencyStats(count=1, median_ms=30000.0, p95_ms=30000.0),
        },
        "log_counts": {BUSY: 3, "drain failed": 0},
        "strip": "none",
        "pattern": "sequential",
        "fates": {"lost": 3, "ran_late": 1},
        "floor_ms": 50.0,
    }
    fields.update(overrides)
    return ProbeSummary(**fields)  # type: ignore[arg-type]


def test_probe_metrics() -> None:
    metrics = probe_metrics(summary())
    assert metrics["calls"] == 20
    assert (metrics["real.count"], metrics["real.rate"]) == (16, 0.8)
    assert (metrics["real.median_ms"], metrics["real.p95_ms"]) == (850.0, 2100.0)
    assert (metrics["fast_fail.count"], metrics["fast_fail.rate"], metrics["fast_fail.p95_ms"]) == (3, 0.15, 6.5)
    # A class without calls has a count and rate, but no latency to gate on.
    assert (metrics["empty.count"], metrics["empty.rate"], metrics["empty.median_ms"], metrics["empty.p95_ms"]) == (
        0,
        0.0,
        None,
        None,
    )
    assert (metrics["fail.count"], metrics["fail.rate"]) == (4, 0.2)
    # Wilson 4/20 (values from scipy); 16/20 mirrors it.
    assert metrics["fail.rate.lower95"] == pytest.approx(0.08065766257979806)
    assert metrics["fail.rate.upper95"] == pytest.approx(0.4160174322518936)
    assert metrics["real.rate.lower95"] == pytest.approx(1 - 0.4160174322518936)
    assert metrics["real.rate.upper95"] == pytest.approx(1 - 0.08065766257979806)
    assert (metrics["fate.lost.count"], metrics["fate.ran_late.count"], metrics["fate.unknown.count"]) == (3, 1, 0)
    assert (metrics[f"log[{BUSY}]"], metrics["log[drain failed]"]) == (3, 0)
    expected_keys = {f"{c.value}.{m}" for c in CallClass for m in ("count", "rate", "median_ms", "p95_ms")}
    expected_keys |= {f"fate.{f.value}.count" for f in Fate}
    expected_keys |= {"calls", "fail.count", "fail.rate", f"log[{BUSY}]", "log[drain failed]"}
    expected_keys |= {f"{n}.rate.{b}95" for n in ("fail", "real") for b in ("lower", "upper")}
    assert set(metrics) == expected_keys


def test_probe_metrics_without_calls_are_inconclusive() -> None:
    metrics = probe_metrics(summary(calls=0, counts={}, latency={}, fates={}))
    assert metrics["real.count"] == 0 and metrics["fail.count"] == 0
    for key in ("real.rate", "fail.rate", "fail.rate.upper95", "real.rate.lower95", "real.p95_ms"):
        assert metrics[key] is None
    results = [parse_gate(g).evaluate(metrics) for g in ("fail.count == 0", "real.rate >= 0.95")]
    assert [r.status for r in results] == ["pass", "inconclusive"]
    assert overall_status(results) == "inconclusive"


def test_gates_against_probe_metrics() -> None:
    metrics = probe_metrics(summary())
    gates = parse_gates(["fast_fail.count == 0", "real.p95_ms < 3000", f'log["{BUSY}"] == 0', "calls >= 20"])
    assert [g.evaluate(metrics).status for g in gates] == ["fail", "pass", "fail", "pass"]


# Arbitrary text, plus text from the grammar's own characters, which reaches deeper into the parser.
@given(st.text() | st.text(alphabet="log[]'\". _az09-<>=! \t", max_size=30))
def test_parse_gate_returns_a_gate_or_raises_gate_syntax_error(text: str) -> None:
    try:
        gate = parse_gate(text)
    except GateSyntaxError:
        return
    assert isinstance(gate, Gate)


def test_a_bound_that_misses_while_the_rate_meets_the_gate_is_inconclusive() -> None:
    """0 failures in 10 calls: the rate meets `< 0.05` but its Wilson upper bound (0.28) does not."""
    gate = parse_gate("fail.rate.upper95 < 0.05")
    few = {"fail.rate": 0.0, "fail.rate.upper95": 0.2775}
    assert gate.evaluate(few).status == "inconclusive"
    many = {"fail.rate": 0.0, "fail.rate.upper95": 0.0370}
    assert gate.evaluate(many).status == "pass"
    failing = {"fail.rate": 0.5, "fail.rate.upper95": 0.7}
    assert gate.evaluate(failing).status == "fail"

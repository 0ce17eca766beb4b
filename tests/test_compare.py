"""Verdicts of ``compare`` and the results files it reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocprobe.compare import Sample, calls_to_decide, compare_markdown, compare_pair, exit_code, load_sample
from ocprobe.errors import UsageError


def sample(label: str, real: int, failed: int, latency: float = 250.0) -> Sample:
    return Sample(label, ["real"] * real + ["fast_fail"] * failed, [latency + i for i in range(real)])


def test_alternation_against_clean_is_a_regression() -> None:
    c = compare_pair(sample("good", 20, 0), sample("bad", 10, 10))
    assert (c.verdict, c.direction) == ("DIFFERENT", "regressed")
    assert c.fisher_p == pytest.approx(0.000436, rel=0.01)
    assert exit_code([c]) == 1


def test_the_other_way_is_an_improvement() -> None:
    c = compare_pair(sample("bad", 10, 10), sample("good", 20, 0))
    assert (c.verdict, c.direction) == ("DIFFERENT", "improved")
    assert exit_code([c]) == 0


def test_too_few_calls_is_unknown_with_the_calls_that_would_decide() -> None:
    c = compare_pair(sample("good", 4, 0), sample("bad", 2, 2))
    assert c.verdict == "UNKNOWN" and c.calls_to_decide == 10
    assert exit_code([c]) == 3


def test_equal_and_clean_needs_enough_calls_to_be_same() -> None:
    assert compare_pair(sample("a", 5, 0), sample("b", 5, 0)).verdict == "UNKNOWN"
    same = compare_pair(sample("a", 40, 0), sample("b", 39, 1))
    assert same.verdict == "SAME" and exit_code([same]) == 0


def test_calls_to_decide_is_the_smallest_deciding_count() -> None:
    n = calls_to_decide(0.0, 0.5)
    assert n == 10
    assert calls_to_decide(0.1, 0.1) is None


def test_markdown_has_a_table_and_the_verdict() -> None:
    samples = [sample("a|x", 20, 0), sample("b", 10, 10)]
    text = compare_markdown(samples, [compare_pair(*samples)])
    assert "| a\\|x | b |" in text and "DIFFERENT (regressed)" in text


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_load_sample_reads_calls_and_summary(tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", [
        json.dumps({"record": "start"}),
        json.dumps({"record": "call", "class": "real", "latency_ms": 250.0}),
        json.dumps({"record": "call", "class": "fast_fail", "latency_ms": 300.0}),
        json.dumps({"record": "summary", "log_counts": {"X": 2}, "target": {"gateway_version": "v1"}}),
    ])
    s = load_sample(path)
    assert s.classes == ["real", "fast_fail"] and s.real_latencies_ms == [250.0]
    assert s.log_counts == {"X": 2} and s.gateway_version == "v1"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"record": "call", "class": "real", "latency_ms": 1}', '{"record": "ca'], "not JSON"),
        (['{"name": "something else"}'], "not an ocprobe record"),
        (['{"record": "call", "class": "bogus", "latency_ms": 1}'], "without a valid class"),
        ([json.dumps({"record": "summary"})], "no call records"),
    ],
)
def test_bad_results_files_are_refused(tmp_path: Path, lines: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_sample(write(tmp_path / "r.jsonl", lines))

"""Statistics against published values and values computed once with scipy 1.17 (not a dependency)."""

from __future__ import annotations

import pytest

from ocprobe.stats import (
    fisher_exact_two_sided,
    mann_whitney_u,
    one_sided_binomial_greater,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("successes", "n", "confidence", "expected"),
    [
        (0, 20, 0.95, (0.0, 0.16112515805281935)),
        (10, 20, 0.95, (0.2992980081982123, 0.7007019918017877)),
        (20, 20, 0.95, (0.8388748419471806, 1.0)),
        (3, 7, 0.99, (0.11637368051613817, 0.8102850959116125)),  # via statistics.NormalDist
    ],
)
def test_wilson_interval(successes: int, n: int, confidence: float, expected: tuple[float, float]) -> None:
    assert wilson_interval(successes, n, confidence) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_wilson_published_rounding() -> None:
    assert round(wilson_interval(0, 20)[1], 4) == 0.1611
    assert tuple(round(v, 4) for v in wilson_interval(10, 20)) == (0.2993, 0.7007)


def test_wilson_no_calls_knows_nothing() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(("successes", "n", "confidence"), [(3, 2, 0.95), (-1, 5, 0.95), (1, 5, 1.0), (1, 5, 0.0)])
def test_wilson_rejects_bad_input(successes: int, n: int, confidence: float) -> None:
    with pytest.raises(ValueError):
        wilson_interval(successes, n, confidence)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ((0, 20, 10, 10), 0.00043591979075850045),  # 0/20 vs 10/20 failures: 2 * C(20,10) / C(40,10)
        ((8, 2, 1, 5), 0.03496503496503497),  # the textbook example, p = 0.03497
        ((3, 1, 1, 3), 0.48571428571428565),  # tea tasting
        ((5, 0, 0, 5), 0.007936507936507938),
        ((1000, 1000, 990, 1010), 0.7759482463888064),  # large counts stay exact and fast
        ((0, 0, 0, 0), 1.0),
        ((2, 3, 2, 3), 1.0),
    ],
)
def test_fisher_exact(table: tuple[int, int, int, int], expected: float) -> None:
    assert fisher_exact_two_sided(*table) == pytest.approx(expected, rel=1e-12)


def test_fisher_is_symmetric_in_rows_and_columns() -> None:
    assert fisher_exact_two_sided(8, 2, 1, 5) == pytest.approx(fisher_exact_two_sided(1, 5, 8, 2), rel=1e-12)
    assert fisher_exact_two_sided(8, 2, 1, 5) == pytest.approx(fisher_exact_two_sided(8, 1, 2, 5), rel=1e-12)


def test_fisher_rejects_negative_cells() -> None:
    with pytest.raises(ValueError):
        fisher_exact_two_sided(1, -1, 2, 3)


@pytest.mark.parametrize(
    ("k", "n", "p0", "expected"),
    [
        (5, 20, 0.05, 0.0025739403346522792),
        (1, 10, 0.1, 0.6513215599000001),  # 1 - 0.9^10
        (10, 10, 0.5, 0.0009765625),  # 2^-10
        (3, 5000, 0.001, 0.8754743458022521),  # large n: log space, no overflow
        (0, 10, 0.3, 1.0),
        (11, 10, 0.3, 0.0),
        (1, 10, 0.0, 0.0),
        (10, 10, 1.0, 1.0),
    ],
)
def test_one_sided_binomial_greater(k: int, n: int, p0: float, expected: float) -> None:
    assert one_sided_binomial_greater(k, n, p0) == pytest.approx(expected, rel=1e-10)


def test_binomial_rejects_bad_probability() -> None:
    with pytest.raises(ValueError):
        one_sided_binomial_greater(1, 10, 1.5)


@pytest.mark.parametrize(
    ("x", "y", "u", "p", "method"),
    [
        ([1.1, 2.3, 3.5, 4.0, 5.2], [6.1, 7.4, 8.0, 9.9, 10.5, 11.2], 0.0, 0.004329004329004329, "exact"),
        ([19, 22, 16, 29, 24], [20, 11, 17, 12], 17.0, 0.1111111111111111, "exact"),
        (
            [120.0, 135.5, 150.2, 99.1, 180.3, 141.7, 133.3, 160.8, 111.4, 127.9, 149.0, 155.5],
            [210.4, 190.2, 175.6, 230.9, 205.1, 160.3, 199.9, 220.0, 185.7, 240.2],
            3.0,
            2.165017644893806e-05,
            "exact",  # both samples above scipy's own exact limit of 8, still exact here
        ),
        ([1, 2, 2, 3, 3, 3, 4, 5], [3, 4, 4, 5, 5, 6, 7, 7, 8], 7.5, 0.006373133838085873, "asymptotic"),  # ties
        (list(range(0, 50, 2)), [v + 0.5 for v in range(10, 60, 2)], 190.0, 0.017925777357406476, "asymptotic"),
    ],
)
def test_mann_whitney_u(x: list[float], y: list[float], u: float, p: float, method: str) -> None:
    result = mann_whitney_u(x, y)
    assert (result.u, result.n1, result.n2, result.method) == (u, len(x), len(y), method)
    assert result.p_two_sided == pytest.approx(p, rel=1e-12)
    assert result.effect_size == pytest.approx(u / (len(x) * len(y)))


def test_mann_whitney_swapping_samples_mirrors_u() -> None:
    x, y = [19, 22, 16, 29, 24], [20, 11, 17, 12]
    forward, backward = mann_whitney_u(x, y), mann_whitney_u(y, x)
    assert backward.u == len(x) * len(y) - forward.u
    assert backward.effect_size == pytest.approx(1 - forward.effect_size)
    assert backward.p_two_sided == pytest.approx(forward.p_two_sided)


def test_mann_whitney_all_tied_is_no_evidence() -> None:
    result = mann_whitney_u([5.0] * 30, [5.0] * 30)
    assert (result.p_two_sided, result.effect_size) == (1.0, 0.5)


def test_mann_whitney_rejects_empty_sample() -> None:
    with pytest.raises(ValueError):
        mann_whitney_u([], [1.0])

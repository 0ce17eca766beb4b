"""Small-sample statistics for probe results: confidence intervals and two-sample tests.

Standard library only: scipy would cost the CLI hundreds of milliseconds of import time, and these
few tests are short to write exactly. Results match R and scipy (see ``tests/test_stats.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95% normal quantile, the common case, without importing statistics
FISHER_RELATIVE_TOLERANCE = 10**7  # tables within 1 + 1e-7 of the observed probability count as "as extreme", as R and scipy
EXACT_MANN_WHITNEY_MAX_N = 20  # exact U distribution for samples up to this size (each), without ties


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if confidence == 0.95:
        return Z95
    from statistics import NormalDist  # lazily: statistics is slow to import and rarely needed

    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; stays sensible at 0/n and n/n."""
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    z = _z(confidence)
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n)) / denominator
    return (max(0.0, center - half), min(1.0, center + half))


def fisher_exact_two_sided(a: int, b: int, c: int, d: int) -> float:
    """Two-sided Fisher exact test p-value for the 2x2 table ``[[a, b], [c, d]]``.

    Sums the hypergeometric probabilities of all tables with the observed margins that are no more
    likely than the observed one. Works on exact integer weights (binomial-coefficient products), so
    there is no rounding until the final division.
    """
    if min(a, b, c, d) < 0:
        raise ValueError(f"table cells must be >= 0, got {[[a, b], [c, d]]}")
    row1, row2, col1 = a + b, c + d, a + c
    lo, hi = max(0, col1 - row2), min(row1, col1)

    # weight(x) = C(row1, x) * C(row2, col1 - x) for the table whose top-left cell is x, built by
    # the ratio weight(x + 1) / weight(x): the division is exact, and each step is cheap.
    weight = math.comb(row1, lo) * math.comb(row2, col1 - lo)
    weights = [weight]
    for x in range(lo, hi):
        weight = weight * (row1 - x) * (col1 - x) // ((x + 1) * (row2 - col1 + x + 1))
        weights.append(weight)

    observed = weights[a - lo] * (FISHER_RELATIVE_TOLERANCE + 1)
    extreme = sum(w for w in weights if w * FISHER_RELATIVE_TOLERANCE <= observed)
    return min(1.0, extreme / math.comb(row1 + row2, col1))  # int / int division is correctly rounded


def fisher_exact_greater(a_failed: int, a_trials: int, b_failed: int, b_trials: int) -> float:
    """One-sided Fisher exact test: if ``a`` and ``b`` failed at one rate, the probability that ``a`` would
    hold at least its share of the pooled failures (the hypergeometric upper tail). Small when ``a`` fails
    more than ``b``. Exact integer weights until the one division; 1.0 when either side has no trials."""
    if not a_trials or not b_trials:
        return 1.0
    pooled = a_failed + b_failed
    tail = sum(math.comb(a_trials, x) * math.comb(b_trials, pooled - x)
               for x in range(a_failed, min(a_trials, pooled) + 1))
    return tail / math.comb(a_trials + b_trials, pooled)


def one_sided_binomial_greater(k: int, n: int, p0: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p0): the p-value of "more than p0 of the calls failed"."""
    if n < 0 or not 0.0 <= p0 <= 1.0:
        raise ValueError(f"need n >= 0 and 0 <= p0 <= 1, got n={n}, p0={p0}")
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p0 in (0.0, 1.0):
        return p0  # all mass at X = 0 (and k > 0) or at X = n (and k <= n)
    # Log space: binomial coefficients of large n overflow floats.
    log_p, log_q = math.log(p0), math.log1p(-p0)
    log_n_fact = math.lgamma(n + 1)
    total = math.fsum(
        math.exp(log_n_fact - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q)
        for i in range(k, n + 1)
    )
    return min(1.0, total)


@dataclass(frozen=True)
class MannWhitney:
    """Mann-Whitney U test of two independent samples.

    ``u`` is the U statistic of ``x``: the number of pairs (x_i, y_j) with x_i > y_j, ties counting
    one half. ``effect_size`` is the common-language effect size ``u / (n1 * n2)``: the probability
    that a random x exceeds a random y (ties count half), 0.5 meaning no difference. ``method`` is
    "exact" or "asymptotic", whichever gave ``p_two_sided``.
    """

    u: float
    p_two_sided: float
    effect_size: float
    n1: int
    n2: int
    method: str


def _midranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Ranks from 1, ties sharing their average rank; also the sizes of the tie groups."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    tie_sizes = []
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in range(start, end + 1):
            ranks[order[i]] = (start + end) / 2.0 + 1.0
        tie_sizes.append(end - start + 1)
        start = end + 1
    return ranks, tie_sizes


def _u_counts(n1: int, n2: int) -> list[int]:
    """Number of orderings of n1 x's and n2 y's (no ties) with U = 0, 1, ..., n1 * n2.

    These are the coefficients of the Gaussian binomial coefficient, the product over i = 1..n1 of
    (1 - q^(n2 + i)) / (1 - q^i); every partial product is a polynomial, so integer arithmetic
    stays exact. Coefficients past n1 * n2 are dropped: they never feed back into lower ones.
    """
    top = n1 * n2
    counts = [1] + [0] * top
    for i in range(1, n1 + 1):
        shift = n2 + i
        for j in range(top, shift - 1, -1):  # multiply by (1 - q^shift)
            counts[j] -= counts[j - shift]
        for j in range(i, top + 1):  # divide by (1 - q^i)
            counts[j] += counts[j - i]
    return counts


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> MannWhitney:
    """Two-sided Mann-Whitney U test, as scipy's ``mannwhitneyu`` with continuity correction.

    Exact p-value when there are no ties and both samples have at most 20 values; otherwise the
    normal approximation with tie and continuity corrections.
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples must be non-empty")
    ranks, tie_sizes = _midranks([*x, *y])
    u1 = sum(ranks[:n1]) - n1 * (n1 + 1) / 2.0
    pairs = n1 * n2
    u_big = max(u1, pairs - u1)  # the larger U; the distribution is symmetric about pairs / 2
    ties = any(t > 1 for t in tie_sizes)

    if not ties and max(n1, n2) <= EXACT_MANN_WHITNEY_MAX_N:
        counts = _u_counts(n1, n2)
        upper_tail = sum(counts[int(u_big) :])
        p = min(1.0, 2 * upper_tail / math.comb(n1 + n2, n1))
        method = "exact"
    else:
        n = n1 + n2
        tie_term = sum(t**3 - t for t in tie_sizes) / (n * (n - 1))
        sigma = math.sqrt(pairs / 12.0 * ((n + 1) - tie_term))
        if sigma == 0.0:
            p = 1.0  # every value tied: no evidence of any difference
        else:
            z = (u_big - pairs / 2.0 - 0.5) / sigma
            p = min(1.0, math.erfc(z / math.sqrt(2.0)))  # erfc(z / sqrt 2) = 2 * P(Z > z)
        method = "asymptotic"
    return MannWhitney(u=u1, p_two_sided=p, effect_size=u1 / pairs, n1=n1, n2=n2, method=method)

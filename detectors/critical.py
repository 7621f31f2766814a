"""Critical values: what a test's statistic must pass to fire at a per-check level.

One place for each: the asymptotic two-sample Kolmogorov-Smirnov value, the two-sided
normal quantile (the rank-sum z-score), the chi-square upper quantile, and the count of
bad requests an SLO burn tier's window must reach (an exact binomial tail). A detector
looks one up at every check, for the level it has then (``alpha`` changes with the
false-alarm budget), so nothing here depends on a detector's state. The chi-square
quantile costs about five times a cache lookup (an iterative inverse in scipy) and the
same few degrees of freedom and levels come back at every check of every feature, so
it is cached, in one bounded cache shared by all detectors; the other two cost about
what a lookup would.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

from scipy import special

__all__ = ["chi_square_critical_value", "ks_critical_value", "normal_critical_value"]


def ks_critical_value(n: int, m: int, alpha: float) -> float:
    """The asymptotic two-sample KS critical value at level ``alpha`` for samples of
    ``n`` and ``m`` values.

    >>> round(ks_critical_value(1000, 500, 0.05), 4)
    0.0744
    """
    return math.sqrt(-0.5 * math.log(alpha / 2.0)) * math.sqrt((n + m) / (n * m))


def normal_critical_value(level: float) -> float:
    """The two-sided standard normal critical value: ``|z|`` past it has probability ``level``.

    >>> round(normal_critical_value(0.05), 4)
    1.96
    """
    return float(special.ndtri(1.0 - level / 2.0))


@functools.lru_cache(maxsize=4096)  # bounded: levels change with the budget, old ones are dropped
def chi_square_critical_value(dof: int, level: float) -> float:
    """The chi-square value with ``dof`` degrees of freedom exceeded with probability
    ``level``; infinite without degrees of freedom (one category cannot show a change).

    >>> round(chi_square_critical_value(2, 1e-6), 3), chi_square_critical_value(0, 1e-6)
    (27.631, inf)
    """
    if dof <= 0:
        return math.inf
    return float(special.chdtri(dof, level))


@functools.lru_cache(maxsize=1024)  # bounded: rates change with the budget, old ones are dropped
def critical_count(window: int, limit: Fraction, rate: float) -> int:
    """The fewest bad requests of a full ``window`` on which a tier whose burn ``factor``
    makes a share ``limit`` of bad requests may fire, spending at most ``rate`` false
    alarms per request under a steady burn of at most ``factor``; ``window + 1``: never.

    Cached (in one bounded cache): computed once per window, limit and rate, and looked
    up at every batch, so no detector keeps a critical value of its own (rates change
    when the model's budget is shared again, not per batch).

    >>> critical_count(2000, Fraction(1, 100), 1e-6)  # 20 bad expected at the factor
    40
    >>> critical_count(2000, Fraction(1, 100), 0.5)  # no significance asked: just above 20
    21
    """
    least = math.floor(limit * window) + 1  # strictly above the factor's share
    if least > window:
        return window + 1
    p = float(limit)
    level = rate / p  # one check per bad request, of which there are p per request
    lo, hi = least, window + 1
    while lo < hi:  # the smallest c with P(Binomial(window - 1, p) >= c - 1) <= level
        mid = (lo + hi) // 2
        if special.bdtrc(mid - 2, window - 1, p) <= level:  # bdtrc(k, n, p) = P(X > k)
            hi = mid
        else:
            lo = mid + 1
    return lo

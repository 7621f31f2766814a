"""Critical values: what a test's statistic must pass to fire at a per-check level.

One place for each: the asymptotic two-sample Kolmogorov-Smirnov value, the two-sided
normal quantile (the rank-sum z-score) and the chi-square upper quantile. A detector
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

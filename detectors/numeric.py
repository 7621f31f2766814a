"""Drift of a numeric stream against a reference: three two-sample tests, each on what
the others miss.

* ``ks``: Kolmogorov-Smirnov, the largest gap between the two empirical CDFs; best on
  a shift of location.
* ``folded_ks``: KS on the distances from the reference's median; best on a change of
  spread or shape that keeps the location (variance, tails, a uniform instead of a
  normal with the same mean and variance), where plain KS is nearly blind.
* ``binned_chi2``: chi-square on ten bins cut at the reference's deciles (the test
  behind PSI and Jensen-Shannon, with a threshold that is a real p-value); best on
  integer-valued features with many ties and on the tails.

The detector fires when any of them passes its critical value at ``alpha / 3``
(Bonferroni), so the per-check false-alarm probability stays ``alpha``. The choice
was measured: ``python -m benchmarks.detection.numeric_tests`` (benchmarks/RESULTS.md).
Ties are handled exactly: both CDFs are compared at every observed point from the right.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from detectors.base import require
from detectors.categorical import chi_square_homogeneity
from detectors.windowed import ReferenceWindowTest

TESTS = ("ks", "folded_ks", "binned_chi2")
BINS = 10


def ks_statistic(reference_sorted: np.ndarray, sample: np.ndarray) -> float:
    """Largest gap between the two empirical CDFs; ties handled exactly.

    >>> ks_statistic(np.array([1.0, 1.0, 2.0, 2.0]), np.array([1.0, 2.0]))
    0.0
    >>> ks_statistic(np.array([0.0, 1.0]), np.array([2.0, 3.0]))
    1.0
    """
    s = np.sort(sample)
    points = np.concatenate((reference_sorted, s))
    cdf_ref = np.searchsorted(reference_sorted, points, side="right") / len(reference_sorted)
    cdf_s = np.searchsorted(s, points, side="right") / len(s)
    return float(np.max(np.abs(cdf_ref - cdf_s)))


def ks_critical_value(n: int, m: int, alpha: float) -> float:
    """The asymptotic two-sample KS critical value at level ``alpha``.

    >>> round(ks_critical_value(1000, 500, 0.05), 4)
    0.0744
    """
    return math.sqrt(-0.5 * math.log(alpha / 2.0)) * math.sqrt((n + m) / (n * m))


def decile_edges(reference: np.ndarray) -> np.ndarray:
    """Inner bin edges at the reference's deciles, merged where ties make them equal."""
    return np.unique(np.quantile(reference, np.linspace(0.0, 1.0, BINS + 1)[1:-1]))


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)


class NumericDrift(ReferenceWindowTest):
    """Sliding-window drift test of numeric values: KS, folded KS and binned chi-square.

    ``reference`` fixes the first reference (e.g. the training set) instead of the
    warm-up window; ``tests`` chooses among ``TESTS``.

    >>> rng = np.random.default_rng(7)
    >>> detector = NumericDrift(reference_size=500, window_size=200, check_every=50)
    >>> same_mean_wider = np.concatenate([rng.normal(0, 1, 2000), rng.normal(0, 1.6, 1000)])
    >>> [(f.index, f.test) for f in detector.update_many(same_mean_wider)]
    [(2149, 'folded_ks')]
    """

    name = "numeric"

    def __init__(
        self,
        reference_size: int = 1000,
        window_size: int = 500,
        check_every: int = 100,
        alpha: float = 1e-6,
        reference: np.ndarray | None = None,
        tests: tuple[str, ...] = TESTS,
    ) -> None:
        super().__init__(reference_size, window_size, check_every, alpha)
        require(bool(tests) and set(tests) <= set(TESTS), f"tests must be some of {TESTS}, got {tests}")
        self.reference = reference
        self.tests = tuple(tests)
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._on_alpha()
        if self.reference is not None:
            self._set_reference(np.asarray(self.reference, dtype=np.float64))

    def _on_alpha(self) -> None:
        self._chi2_critical: dict[int, float] = {}
        self._ks_critical: float | None = None

    def _learn(self, reference: np.ndarray) -> None:
        self._ref_sorted = np.sort(reference)
        self._center = float(np.median(reference))
        self._ref_folded = np.sort(np.abs(reference - self._center))
        self._edges = decile_edges(reference)
        self._ref_bins = bin_counts(reference, self._edges)
        self._ks_critical = None

    def _test(self, window: np.ndarray) -> tuple[float, float]:
        level = self.alpha / len(self.tests)
        if self._ks_critical is None:
            self._ks_critical = ks_critical_value(len(self._ref_sorted), self.window_size, level)
        best = (-math.inf, 0.0, 1.0, "")  # (ratio, score, threshold, test)
        for test in self.tests:
            if test == "ks":
                score, threshold = ks_statistic(self._ref_sorted, window), self._ks_critical
            elif test == "folded_ks":
                score, threshold = ks_statistic(self._ref_folded, np.abs(window - self._center)), self._ks_critical
            else:
                score, dof = chi_square_homogeneity(self._ref_bins, bin_counts(window, self._edges))
                threshold = self._chi2_critical.get(dof) or math.inf
                if dof and threshold == math.inf:
                    threshold = self._chi2_critical[dof] = float(special.chdtri(dof, level))
            if score / threshold > best[0]:
                best = (score / threshold, score, threshold, test)
        self._test_name = best[3]
        return best[1], best[2]


class KSDrift(NumericDrift):
    """The KS test alone (``NumericDrift(tests=("ks",))``).

    >>> rng = np.random.default_rng(7)
    >>> detector = KSDrift(reference_size=500, window_size=200, check_every=50)
    >>> stream = np.concatenate([rng.normal(0, 1, 2000), rng.normal(0.8, 1, 1000)])
    >>> [(f.index, round(f.score, 3)) for f in detector.update_many(stream)]
    [(2149, 0.304)]
    """

    name = "ks"

    def __init__(self, reference_size: int = 1000, window_size: int = 500, check_every: int = 100,
                 alpha: float = 1e-6, reference: np.ndarray | None = None) -> None:
        super().__init__(reference_size, window_size, check_every, alpha, reference, tests=("ks",))

"""The two-sample Kolmogorov-Smirnov test, exactly, and a detector on it alone.

``NumericDrift`` (``detectors.binned``) is what the daemon runs: this KS, plus the
tests that see what KS misses, from bin counts. ``KSDrift`` is the plain test on the
raw values, for river users and as the yardstick the binned version is checked
against. Ties are handled exactly: both CDFs are compared at every observed point
from the right.
"""

from __future__ import annotations

import numpy as np

from detectors.binned import NumericDrift
from detectors.critical import ks_critical_value
from detectors.windowed import ReferenceWindowTest

__all__ = ["KSDrift", "NumericDrift", "ks_statistic"]


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


class KSDrift(ReferenceWindowTest):
    """Two-sample KS test of a sliding window against a reference, on the raw values.

    ``reference`` fixes the first reference (e.g. the training set) instead of the
    warm-up window.

    >>> rng = np.random.default_rng(7)
    >>> detector = KSDrift(reference_size=500, window_size=200, check_every=50)
    >>> stream = np.concatenate([rng.normal(0, 1, 2000), rng.normal(0.8, 1, 1000)])
    >>> [(f.index, round(f.score, 3)) for f in detector.update_many(stream)]
    [(2149, 0.304)]
    """

    name = "ks"

    def __init__(
        self,
        reference_size: int = 1000,
        window_size: int = 500,
        check_every: int = 100,
        alpha: float = 1e-6,
        reference: np.ndarray | None = None,
    ) -> None:
        super().__init__(reference_size, window_size, check_every, alpha)
        self.reference = reference
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        if self.reference is not None:
            self._set_reference(np.asarray(self.reference, dtype=np.float64))

    def _learn(self, reference: np.ndarray) -> None:
        self._ref_sorted = np.sort(reference)

    def _test(self, window: np.ndarray) -> tuple[float, float]:
        critical = ks_critical_value(len(self._ref_sorted), self.window_size, self.alpha)
        return ks_statistic(self._ref_sorted, window), critical

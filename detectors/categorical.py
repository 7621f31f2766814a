"""Drift of a categorical stream: chi-square test of homogeneity against a reference.

Values are integer category codes (the caller owns the mapping from strings);
codes at or above ``max_categories - 1`` share the last, "other", bucket so memory
is bounded. The test is the two-sample (reference vs. window) chi-square test on
the categories seen in either, so a category the reference never saw counts as
evidence of drift rather than breaking the test.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from detectors.base import require
from detectors.windowed import ReferenceWindowTest


def chi_square_homogeneity(ref_counts: np.ndarray, win_counts: np.ndarray) -> tuple[float, int]:
    """Chi-square statistic and degrees of freedom for two count vectors.

    >>> chi_square_homogeneity(np.array([50, 50]), np.array([25, 25]))
    (0.0, 1)
    >>> round(chi_square_homogeneity(np.array([100, 0]), np.array([50, 50]))[0], 1)
    66.7
    """
    seen = (ref_counts + win_counts) > 0
    k = int(seen.sum())
    if k < 2:
        return 0.0, 0
    table = np.vstack((ref_counts[seen], win_counts[seen])).astype(np.float64)
    rows = table.sum(axis=1, keepdims=True)
    cols = table.sum(axis=0, keepdims=True)
    expected = rows * cols / table.sum()
    return float(((table - expected) ** 2 / expected).sum()), k - 1


class ChiSquareDrift(ReferenceWindowTest):
    """Chi-square drift test of a sliding window of category codes against a reference.

    >>> rng = np.random.default_rng(3)
    >>> detector = ChiSquareDrift(reference_size=500, window_size=200, check_every=50)
    >>> before = rng.choice(3, size=2000, p=[0.6, 0.3, 0.1])
    >>> after = rng.choice(4, size=1000, p=[0.4, 0.3, 0.1, 0.2])  # a new category 3
    >>> [f.index for f in detector.update_many(np.concatenate([before, after]))]
    [2049]
    """

    name = "chi_square"
    dtype = np.int64

    def __init__(
        self,
        reference_size: int = 1000,
        window_size: int = 500,
        check_every: int = 100,
        alpha: float = 1e-6,
        max_categories: int = 50,
    ) -> None:
        super().__init__(reference_size, window_size, check_every, alpha)
        require(max_categories >= 2, f"max_categories must be >= 2, got {max_categories}")
        self.max_categories = max_categories
        self._reset()

    def _on_alpha(self) -> None:
        self._critical: dict[int, float] = {}

    def _reset(self) -> None:
        super()._reset()
        self._on_alpha()

    def _prepare(self, values: np.ndarray) -> np.ndarray:
        if not np.all(values >= 0):  # also catches NaN
            raise ValueError("category codes must be integers >= 0")
        return np.minimum(values.astype(np.int64), self.max_categories - 1)

    def _counts(self, codes: np.ndarray) -> np.ndarray:
        return np.bincount(codes, minlength=self.max_categories)

    def _learn(self, reference: np.ndarray) -> None:
        self._ref_counts = self._counts(reference)

    def _test(self, window: np.ndarray) -> tuple[float, float]:
        stat, dof = chi_square_homogeneity(self._ref_counts, self._counts(window))
        if dof == 0:
            return stat, math.inf
        critical = self._critical.get(dof)
        if critical is None:
            critical = self._critical[dof] = float(special.chdtri(dof, self.alpha))  # chi2.isf, lighter import
        return stat, critical

"""The chi-square test of homogeneity of two count vectors.

``ChiSquareDrift``, the detector built on it, computes it from bin counts for many
checks at once: see ``detectors.binned``.
"""

from __future__ import annotations

import numpy as np

from detectors.binned import ChiSquareDrift

__all__ = ["ChiSquareDrift", "chi_square_homogeneity"]


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

"""The chi-square test of homogeneity of two count vectors.

``ChiSquareDrift``, the detector built on it, computes it from bin counts for many
checks at once with ``chi_square_rows`` (``detectors.binned``); this is the same
computation for one pair of count vectors.
"""

from __future__ import annotations

import numpy as np

from detectors.binned import ChiSquareDrift, chi_square_rows

__all__ = ["ChiSquareDrift", "chi_square_homogeneity"]


def chi_square_homogeneity(ref_counts: np.ndarray, win_counts: np.ndarray) -> tuple[float, int]:
    """Chi-square statistic and degrees of freedom for two count vectors (categories
    seen in neither are left out; fewer than two seen: no freedom, a statistic of 0).

    >>> chi_square_homogeneity(np.array([50, 50]), np.array([25, 25]))
    (0.0, 1)
    >>> round(chi_square_homogeneity(np.array([100, 0]), np.array([50, 50]))[0], 1)
    66.7
    """
    stat, dof = chi_square_rows(np.asarray(ref_counts), np.asarray(win_counts)[None, :])
    return float(stat[0]), max(int(dof[0]), 0)

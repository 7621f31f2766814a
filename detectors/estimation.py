"""A model's error rate estimated without labels, from its calibrated scores.

Labels often come late or never; the scores come with every prediction. If a score,
once calibrated, is the probability that the label is 1, then a thresholded
prediction is wrong with probability ``1 - c`` when it says positive and ``c`` when
it says negative, and the mean of that over a stretch of predictions estimates their
error rate with no label at all. This is confidence-based performance estimation (as
NannyML's CBPE, there over batch chunks; here per prediction, so a stream can be
averaged over any window or fed to a rate detector).

``CalibratedError`` learns the calibration from the first ``reference_size`` labelled
(score, truth) pairs: equal-count bins of the scores, each bin's rate of 1s, made
monotone in the score by pool-adjacent-violators (a higher score never means a lower
probability), and interpolated linearly between the bins' mean scores (flat beyond
the first and last).

**Assumptions**, on which the estimate stands or falls:

* The scores calibrate after the reference the way they did in it: ``P(y | score)``
  is unchanged (no concept shift). Only covariate shift is seen: the mix of scores
  may move (towards 0.5, say, as inputs drift from what the model knows) and the
  estimate follows it. A model that becomes wrong with the same confidence, because
  the world changed what the right answer is, is invisible to it: that needs labels.
* The reference is representative of the scores' range: scores beyond it get the
  calibration of the nearest bin.
* The labels of the reference are independent draws given the scores.
"""

from __future__ import annotations

import numpy as np

from detectors.base import require

#: Pseudo-observations at the reference's overall rate added to each bin: a little smoothing so a
#: small bin of all 0s or all 1s does not claim certainty (negligible for bins of ~100 pairs).
_PRIOR_WEIGHT = 2.0


def _pool_adjacent_violators(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted least-squares non-decreasing fit to ``values`` (isotonic regression).

    >>> _pool_adjacent_violators(np.array([0.1, 0.3, 0.2, 0.4]), np.ones(4)).round(2).tolist()
    [0.1, 0.25, 0.25, 0.4]
    """
    means: list[float] = []  # a stack of pooled blocks: their mean, weight and length
    sizes: list[float] = []
    lengths: list[int] = []
    for value, weight in zip(values.tolist(), weights.tolist(), strict=True):
        means.append(value)
        sizes.append(weight)
        lengths.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            weight_sum = sizes[-2] + sizes[-1]
            pooled = (means[-2] * sizes[-2] + means[-1] * sizes[-1]) / weight_sum
            length = lengths[-2] + lengths[-1]
            del means[-1], sizes[-1], lengths[-1]
            means[-1], sizes[-1], lengths[-1] = pooled, weight_sum, length
    return np.repeat(np.array(means), lengths)


class CalibratedError:
    """Per prediction, the probability its thresholded label is wrong, from its score.

    >>> rng = np.random.default_rng(0)
    >>> scores = rng.random(1000)
    >>> estimator = CalibratedError(reference_size=1000)
    >>> estimator.add_labels(scores, rng.random(1000) < scores)  # a calibrated model
    >>> estimator.fitted
    True
    >>> estimator.expected_error(np.array([0.05, 0.5, 0.95])).round(2).tolist()
    [0.04, 0.46, 0.03]
    """

    name = "cbpe"

    def __init__(self, reference_size: int = 1000, bins: int = 10, decision_threshold: float = 0.5) -> None:
        require(bins >= 2, f"bins must be >= 2, got {bins}")
        require(reference_size >= bins, f"reference_size must be >= bins ({bins}), got {reference_size}")
        self.reference_size = reference_size
        self.bins = bins
        self.decision_threshold = decision_threshold
        self._scores = np.empty(reference_size)
        self._truths = np.empty(reference_size)
        self._held = 0
        self._knots = np.empty(0)  # bins' mean scores, increasing
        self._rates = np.empty(0)  # calibrated probability of a 1 at each knot, non-decreasing

    @property
    def fitted(self) -> bool:
        """Whether the calibration is learnt (``reference_size`` labelled pairs seen)."""
        return len(self._knots) > 0

    @property
    def held(self) -> int:
        """Labelled pairs collected so far (``reference_size`` once fitted)."""
        return self._held

    def add_labels(self, scores: np.ndarray, truths: np.ndarray) -> None:
        """Collect (score, truth) pairs, truth 0/1, until ``reference_size`` are held; then
        fit the calibration. Pairs past that are ignored: the calibration is fixed."""
        scores = np.asarray(scores, dtype=np.float64)
        truths = np.asarray(truths, dtype=np.float64)
        require(scores.shape == truths.shape and scores.ndim == 1, "scores and truths must be 1-d and of one length")
        if self.fitted:
            return
        take = min(len(scores), self.reference_size - self._held)
        self._scores[self._held:self._held + take] = scores[:take]
        self._truths[self._held:self._held + take] = truths[:take] != 0
        self._held += take
        if self._held == self.reference_size:
            self._fit()

    def _fit(self) -> None:
        order = np.argsort(self._scores, kind="stable")
        scores, truths = self._scores[order], self._truths[order]
        starts = np.linspace(0, len(scores), self.bins + 1).astype(np.int64)[:-1]  # equal-count bins
        counts = np.diff(np.append(starts, len(scores))).astype(np.float64)
        score_sums = np.add.reduceat(scores, starts)
        ones = np.add.reduceat(truths, starts)
        # Bins of one repeated score (many tied scores) share a mean score: merge them, as
        # interpolation needs increasing knots.
        knots, which = np.unique(score_sums / counts, return_inverse=True)
        merged_counts = np.bincount(which, weights=counts)
        merged_ones = np.bincount(which, weights=ones)
        prior = float(truths.mean())
        rates = (merged_ones + _PRIOR_WEIGHT * prior) / (merged_counts + _PRIOR_WEIGHT)
        self._rates = _pool_adjacent_violators(rates, merged_counts + _PRIOR_WEIGHT)
        self._knots = knots
        self._scores = self._truths = np.empty(0)  # the reference is no longer needed

    def calibrated(self, scores: np.ndarray) -> np.ndarray:
        """The calibrated probability of a 1 for each score."""
        require(self.fitted, f"not fitted yet: {self._held} of {self.reference_size} labelled pairs")
        result: np.ndarray = np.interp(np.asarray(scores, dtype=np.float64), self._knots, self._rates)
        return result

    def expected_error(self, scores: np.ndarray) -> np.ndarray:
        """For each score, the probability that its prediction (positive when
        ``score >= decision_threshold``) is wrong: ``1 - c`` if positive, else ``c``,
        ``c`` being the calibrated probability. Their mean estimates the error rate."""
        scores = np.asarray(scores, dtype=np.float64)
        c = self.calibrated(scores)
        result: np.ndarray = np.where(scores >= self.decision_threshold, 1.0 - c, c)
        return result

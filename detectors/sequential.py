"""A canary against its baseline on a live stream: an always-valid sequential test.

Fed each value with the arm it came from (canary or baseline), ``SequentialComparison``
keeps the running count, sum and sum of squares of each arm since creation and, after
every value, the mixture sequential probability ratio test (mSPRT) of Johari, Pekelis
and Walsh (2017, "Always valid inference"): with ``D`` the canary's mean minus the
baseline's and ``s2 = var_c / n_c + var_b / n_b`` its variance (normal approximation),
the likelihood ratio of "the difference is ``theta``, with ``theta ~ N(0, tau^2)``"
against "no difference" is

    Lambda = sqrt(s2 / (s2 + tau^2)) * exp(tau^2 D^2 / (2 s2 (s2 + tau^2)))

Under no difference it is a (near) martingale of mean 1, so by Ville's inequality
``P(Lambda ever reaches 1/alpha) <= alpha``: the test may be looked at after every
value, for ever, and still wrongly reject with probability at most ``alpha``. That is
what a daily dashboard of fixed-horizon p-values does not give (peeking at one
inflates its false alarms many times). The same bound gives the always-valid
confidence sequence for the difference, ``{theta: Lambda(theta) < 1/alpha}``, which
holds the true difference at all times together with probability ``1 - alpha``.

The guarantee is for independent values and is approximate in two places: the
normal approximation of each arm's mean, and the variances, which are estimated
(plug-in) rather than known; both are good once each arm holds ``min_samples``
values, which is also when the test starts. The tests check it on simulated streams.

It fires once, the first time the canary is worse with confidence, and the verdict
is then sticky ("fail"); "pass" says the canary is at most ``tolerance`` worse.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from detectors.base import Detector, Fire, require

Direction = Literal["higher_is_worse", "two_sided"]
Verdict = Literal["fail", "pass", "inconclusive"]

#: Smallest variance of a real-valued arm, relative to its squared mean (plus one, for a mean of 0):
#: a constant metric would otherwise make the difference look infinitely sure.
_REAL_VARIANCE_FLOOR = 1e-12
#: Default mixing scale for real-valued metrics, in baseline standard deviations: Cohen's
#: "small" effect (d = 0.2), the smallest shift of a score distribution usually worth a page.
_REAL_TAU_SDS = 0.2


class SequentialComparison(Detector):
    """Always-valid two-sample test: is the canary worse than its baseline?

    ``update_many(values, arms)``: ``arms`` True for a canary value, False for a
    baseline one. Values are 0/1 for a rate (1 is the bad event: an error, a slow
    request, a thumbs-down) or real numbers (a score). With ``direction`` at
    ``"higher_is_worse"`` only a higher canary mean fires; ``"two_sided"`` fires on
    a move either way.

    **Guarantee**: for a canary as good as its baseline (values independent), the
    probability that it *ever* fires, however long the stream and however it is cut
    into batches, is at most ``alpha`` (up to the normal approximation; see the module).

    ``tau`` is the standard deviation of the mixing distribution over the difference,
    in the metric's units. Left at None it is set once, where both arms first hold
    ``min_samples`` values, from the pooled values then: for 0/1 values the rate
    itself (the regression worth catching fast is the rate doubling; the mixture keeps
    good power for effects from about a quarter to four times ``tau``), for real
    values 0.2 standard deviations (Cohen's "small" effect). Once set it never
    changes, so the mixture is a fixed prior as the theory needs.

    >>> rng = np.random.default_rng(7)
    >>> arms = rng.random(20000) < 0.5
    >>> errors = rng.random(20000) < np.where(arms, 0.10, 0.05)
    >>> test = SequentialComparison(alpha=0.01)
    >>> fires = test.update_many(errors, arms)
    >>> len(fires), test.verdict, fires[0].score >= fires[0].threshold
    (1, 'fail', True)
    >>> equal = SequentialComparison(alpha=0.01)
    >>> _ = equal.update_many(rng.random(200000) < 0.05, rng.random(200000) < 0.5)
    >>> equal.verdict
    'pass'
    """

    name = "mixture_sprt"

    def __init__(
        self,
        alpha: float = 0.01,
        min_samples: int = 50,
        tolerance: float = 0.1,
        direction: Direction = "higher_is_worse",
        tau: float | None = None,
    ) -> None:
        super().__init__()
        require(0.0 < alpha < 1.0, f"alpha must be in (0, 1), got {alpha}")
        require(min_samples >= 2, f"min_samples must be >= 2, got {min_samples}")
        require(tolerance >= 0.0, f"tolerance must be >= 0, got {tolerance}")
        require(direction in ("higher_is_worse", "two_sided"), f"unknown direction {direction!r}")
        require(tau is None or tau > 0.0, f"tau must be > 0, got {tau}")
        self.alpha = alpha
        self.min_samples = min_samples
        self.tolerance = tolerance
        self.direction: Direction = direction
        self.tau = tau
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._score = 0.0
        # Per arm, index 0 the baseline and 1 the canary: count, sum, sum of squares.
        self._n = np.zeros(2, dtype=np.int64)
        self._sum = np.zeros(2, dtype=np.float64)
        self._sumsq = np.zeros(2, dtype=np.float64)
        self._binary = True  # every value so far 0 or 1
        self._tau2: float | None = None if self.tau is None else self.tau**2
        self._fired_at = -1  # position in the stream of the fire, -1 before it
        self._seen = 0

    def set_false_alarm_rate(self, rate: float) -> None:
        """Set ``alpha``: here the chance of *ever* firing on an equal canary, not a rate per value."""
        require(0.0 < rate < 1.0, f"rate must be in (0, 1), got {rate}")
        self.alpha = rate

    @property
    def threshold(self) -> float:
        """``log(1/alpha)``: ``score`` (``log Lambda``) must reach it to fire."""
        return math.log(1.0 / self.alpha)

    @property
    def ready(self) -> bool:
        """Whether both arms hold ``min_samples`` values."""
        return bool(self._n.min() >= self.min_samples)

    @property
    def counts(self) -> tuple[int, int]:
        """(baseline values, canary values) seen since creation."""
        return int(self._n[0]), int(self._n[1])

    def _moments(
        self, n: np.ndarray, total: np.ndarray, sumsq: np.ndarray, binary: np.ndarray | bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and floored variance of an arm, elementwise over positions.

        For 0/1 values the variance is ``p(1-p)`` with ``p = (x + 0.5) / (n + 1)``
        (half a pseudo-count of each outcome): a baseline that has seen no error in
        its first values has a sample variance of 0, which would make any canary
        error look like certain proof of a regression. For real values it is the
        sample variance, floored just above 0 for a constant metric.
        """
        safe_n = np.maximum(n, 1)
        mean = total / safe_n
        smoothed = (total + 0.5) / (n + 1.0)
        binary_var = smoothed * (1.0 - smoothed)
        real_var = np.maximum(sumsq - total * mean, 0.0) / np.maximum(n - 1, 1)
        real_var = np.maximum(real_var, _REAL_VARIANCE_FLOOR * (1.0 + mean * mean))
        return mean, np.where(binary, binary_var, real_var)

    def _default_tau2(self, n: np.ndarray, total: np.ndarray, sumsq: np.ndarray, binary: bool) -> float:
        """``tau^2`` from the pooled arms where both first hold ``min_samples`` (see the class)."""
        pooled_n = np.array([n.sum()])
        _, var = self._moments(pooled_n, np.array([total.sum()]), np.array([sumsq.sum()]), binary)
        if binary:
            # The smoothed rate: never 0, so a metric with no errors yet still gets a mixture.
            return float((total.sum() + 0.5) / (pooled_n[0] + 1.0)) ** 2
        return float(_REAL_TAU_SDS**2 * var[0])

    def _log_lambda(self, diff: np.ndarray, s2: np.ndarray, tau2: float) -> np.ndarray:
        result: np.ndarray = 0.5 * np.log(s2 / (s2 + tau2)) + tau2 * diff * diff / (2.0 * s2 * (s2 + tau2))
        return result

    def _half_width(self, s2: float, tau2: float) -> float:
        """Half the width of the always-valid confidence sequence: where ``log Lambda(theta)``
        reaches ``log(1/alpha)``."""
        return math.sqrt(2.0 * s2 * (s2 + tau2) / tau2 * (self.threshold + 0.5 * math.log((s2 + tau2) / s2)))

    def update_many(self, values: Any, arms: Any = None) -> list[Fire]:
        """Feed values in order with their arms (True = canary); return the fire, if any,
        ``index`` being its position in the batch. One value at a time or all at once
        give the same fire at the same place."""
        require(arms is not None, "SequentialComparison needs the arm of every value: update_many(values, arms)")
        fires = self._update_pairs(np.asarray(values, dtype=np.float64), np.asarray(arms, dtype=bool))
        self._drift_detected = bool(fires)
        return fires

    def _update_many(self, values: np.ndarray) -> list[Fire]:
        raise TypeError("SequentialComparison needs the arm of every value: update_many(values, arms)")

    def _update_pairs(self, values: np.ndarray, arms: np.ndarray) -> list[Fire]:
        require(values.shape == arms.shape and values.ndim == 1, "values and arms must be 1-d and of one length")
        size = len(values)
        if size == 0:
            return []
        canary = arms
        # Running totals after each value, per arm. Each cumsum starts from the carried total, so
        # it adds in the same order whatever the cuts: the float sums are bit-identical to one batch.
        ns, sums, sumsqs = [], [], []
        for arm, mask in ((0, ~canary), (1, canary)):
            ns.append(self._n[arm] + np.cumsum(mask, dtype=np.int64))
            x = np.where(mask, values, 0.0)
            sums.append(np.cumsum(np.concatenate(([self._sum[arm]], x)))[1:])
            sumsqs.append(np.cumsum(np.concatenate(([self._sumsq[arm]], x * x)))[1:])
        binary = self._binary & np.logical_and.accumulate((values == 0.0) | (values == 1.0))
        positions = self._seen + np.arange(size)

        fires: list[Fire] = []
        if self._fired_at < 0:
            ready = np.minimum(ns[0], ns[1]) >= self.min_samples
            first = int(np.argmax(ready)) if ready.any() else -1
            if first >= 0 and self._tau2 is None:
                self._tau2 = self._default_tau2(
                    np.array([ns[0][first], ns[1][first]]),
                    np.array([sums[0][first], sums[1][first]]),
                    np.array([sumsqs[0][first], sumsqs[1][first]]),
                    bool(binary[first]),
                )
            if first >= 0 and self._tau2 is not None:
                sl = slice(first, size)
                mean_b, var_b = self._moments(ns[0][sl], sums[0][sl], sumsqs[0][sl], binary[sl])
                mean_c, var_c = self._moments(ns[1][sl], sums[1][sl], sumsqs[1][sl], binary[sl])
                diff = mean_c - mean_b
                s2 = var_c / ns[1][sl] + var_b / ns[0][sl]
                log_lambda = self._log_lambda(diff, s2, self._tau2)
                worse = diff > 0.0 if self.direction == "higher_is_worse" else diff != 0.0
                over = np.flatnonzero((log_lambda >= self.threshold) & worse)
                if len(over):
                    at = first + int(over[0])
                    self._score = float(log_lambda[over[0]])
                    self._fired_at = int(positions[at])
                    fires.append(Fire(at, self._score, self.threshold))
                else:
                    self._score = float(log_lambda[-1])

        self._n = np.array([ns[0][-1], ns[1][-1]], dtype=np.int64)
        self._sum = np.array([sums[0][-1], sums[1][-1]])
        self._sumsq = np.array([sumsqs[0][-1], sumsqs[1][-1]])
        self._binary = bool(binary[-1])
        self._seen += size
        return fires

    def _current(self) -> tuple[float, float, float, float] | None:
        """(difference, its variance, baseline mean, baseline variance) now, or None before ready."""
        if not self.ready:
            return None
        mean, var = self._moments(self._n.astype(np.float64), self._sum, self._sumsq, self._binary)
        s2 = float(var[1] / self._n[1] + var[0] / self._n[0])
        return float(mean[1] - mean[0]), s2, float(mean[0]), float(var[0])

    @property
    def interval(self) -> tuple[float, float]:
        """The always-valid ``1 - alpha`` confidence sequence for canary mean minus baseline
        mean, as of now; ``(-inf, inf)`` before both arms hold ``min_samples`` values."""
        current = self._current()
        if current is None or self._tau2 is None:
            return -math.inf, math.inf
        diff, s2, _, _ = current
        half = self._half_width(s2, self._tau2)
        return diff - half, diff + half

    @property
    def verdict(self) -> Verdict:
        """"fail" once fired (for good); "pass" when the confidence sequence lies wholly
        below ``tolerance`` x the baseline mean ("at most 10% worse", for higher_is_worse)
        or, two-sided, wholly within +-``tolerance`` x the baseline standard deviation;
        "inconclusive" otherwise: too little data is never a failure."""
        if self._fired_at >= 0:
            return "fail"
        current = self._current()
        if current is None:
            return "inconclusive"
        _, _, mean_b, var_b = current
        low, high = self.interval
        if self.direction == "higher_is_worse":
            return "pass" if high < self.tolerance * abs(mean_b) else "inconclusive"
        margin = self.tolerance * math.sqrt(var_b)
        return "pass" if -margin < low and high < margin else "inconclusive"

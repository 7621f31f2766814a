"""The binned drift tests as they were before running counts (detectors/binned.py at 4aa3d36,
unchanged below this note): every check recounted its window's bins from the last values.
Kept, frozen, so that tests/test_running_counts.py can show that the running counts give
bit-identical fires, scores and thresholds. Not used by the daemon.


A value is put in its bins once, when it arrives (one ``searchsorted`` for a whole
batch); a check then only counts the bins of the window and compares small count
vectors with the reference's, and all the checks that fall in a batch are computed
together. That is what keeps a drift test per feature affordable at the throughput
the daemon is built for (measured by ``python -m benchmarks.detection.cost``).

* ``NumericDrift``: four tests, each on what the others miss. ``ks``: Kolmogorov-
  Smirnov on 64 bins cut at the reference's quantiles (location). ``rank_sum``:
  Mann-Whitney's rank sum on the same bins (location, heavy tails). ``folded_ks``: the
  same on the distances from the reference's median (spread, tails, a change of shape
  at equal mean and variance, where plain KS is nearly blind). ``binned_chi2``:
  chi-square on the reference's deciles (integer-valued features with heavy ties,
  tails; the test behind PSI and Jensen-Shannon, with a threshold that is a real
  p-value). It fires when any passes its critical value at ``alpha / 4``.
* ``ChiSquareDrift``: the chi-square test of homogeneity on category codes.

Binning a KS test can only make the statistic smaller (the CDFs are compared at the
bin edges), so the asymptotic critical value keeps the false-alarm level; on integer
data the edges are the values themselves and the statistic is exact, ties included.
The choice of tests was measured (``python -m benchmarks.detection.numeric_tests``).
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from detectors.base import Fire, Window, require
from detectors.critical import chi_square_critical_value, ks_critical_value, normal_critical_value
from detectors.windowed import WindowTest

NUMERIC_TESTS = ("ks", "rank_sum", "folded_ks", "binned_chi2")
KS_BINS, FOLDED_BINS, DECILES = 64, 64, 10


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner edges at the reference's quantiles, merged where ties make them equal.

    >>> quantile_edges(np.array([1.0, 1.0, 1.0, 2.0, 3.0]), 4).tolist()
    [1.0, 2.0]
    """
    return np.unique(np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1]))


def chi_square_rows(reference: np.ndarray, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chi-square homogeneity statistic and degrees of freedom of each window row against
    the reference counts (categories seen in neither are left out).

    >>> chi_square_rows(np.array([100, 0]), np.array([[50, 50], [100, 0]]))
    (array([66.66666667,  0.        ]), array([1, 0]))
    """
    n = reference.sum()
    m = windows.sum(axis=1, keepdims=True)
    cols = reference[None, :] + windows
    seen = cols > 0
    total = n + m
    with np.errstate(divide="ignore", invalid="ignore"):
        e_ref = n * cols / total
        e_win = m * cols / total
        terms = np.where(seen, (reference[None, :] - e_ref) ** 2 / e_ref + (windows - e_win) ** 2 / e_win, 0.0)
    return terms.sum(axis=1), seen.sum(axis=1) - 1


def window_counts(binned: np.ndarray, bins: int, first_end: int, every: int, checks: int, size: int) -> np.ndarray:
    """Bin counts of the windows ``binned[..., end - size:end]`` for the ``checks`` ends
    ``first_end, first_end + every, ...``, all at once.

    Each value counts in the windows whose end lies in (its index, its index + size]: a
    +1 where that run of windows starts and a -1 after it ends, summed along the windows.
    ``binned`` may hold several binnings as rows, each with its own range of the
    ``bins``: they are counted together, in one ``checks x bins`` array.

    >>> window_counts(np.array([0, 1, 1, 2, 0]), 3, first_end=3, every=2, checks=2, size=3).tolist()
    [[1, 2, 0], [1, 1, 1]]
    >>> window_counts(np.array([[0, 1, 1, 0], [2, 2, 3, 3]]), 4, first_end=2, every=2, checks=2, size=2).tolist()
    [[1, 1, 2, 0], [1, 1, 0, 2]]
    """
    start = max(first_end - size, 0)
    positions = np.arange(start, first_end + every * (checks - 1))
    values = binned[..., start:start + len(positions)]
    # The first window ending after a value, and the first ending after the value has left it.
    first = np.clip((positions - first_end) // every + 1, 0, checks)
    after = np.clip((positions + size - first_end) // every + 1, 0, checks)
    rows = checks + 1
    diff = (np.bincount((first * bins + values).ravel(), minlength=rows * bins)
            - np.bincount((after * bins + values).ravel(), minlength=rows * bins))
    return np.cumsum(diff.reshape(rows, bins), axis=0)[:-1]


class BinnedWindowTest(WindowTest):
    """The last ``window_size`` values against the first ``reference_size``, every
    ``check_every`` values, from bin counts; and, if ``long_window`` is set, the last
    ``long_window`` values every ``long_check_every``: a large change shows in the short
    window within a few hundred values, a small one needs the long window's sample.
    ``alpha`` is the per-check level of the short window; the long window's is set so
    that both spend the same false-alarm rate. After a fire the detector learns a new
    reference from what follows: one alert per change, not a storm."""

    def __init__(self, reference_size: int, window_size: int, check_every: int, alpha: float,
                 long_window: int = 0, long_check_every: int = 0) -> None:
        super().__init__(reference_size, window_size, check_every, alpha)
        require(long_window == 0 or long_window > window_size,
                f"long_window must be 0 (none) or > window_size={window_size}, got {long_window}")
        require(long_window == 0 or 1 <= long_check_every <= long_window,
                f"long_check_every must be in [1, long_window={long_window}], got {long_check_every}")
        self.long_window = long_window
        self.long_check_every = long_check_every

    def _windows(self) -> list[tuple[int, int, float]]:
        """(size, check every, per-check level) of each window: an equal false-alarm rate each."""
        windows = [(self.window_size, self.check_every, self.alpha)]
        if self.long_window:
            level = min(0.5, self.alpha * self.long_check_every / self.check_every)
            windows.append((self.long_window, self.long_check_every, level))
        return windows

    # -- what a subclass says ----------------------------------------------------------
    @abc.abstractmethod
    def _learn(self, reference: np.ndarray) -> list[int]:
        """Take ``reference`` as the new normal; return the number of bins of each binning."""

    @abc.abstractmethod
    def _bins(self, values: np.ndarray) -> list[np.ndarray]:
        """Each binning's bin index of every value."""

    @abc.abstractmethod
    def _statistics(self, counts: list[np.ndarray], size: int, level: float) -> tuple[
            np.ndarray, np.ndarray, list[str]]:
        """For window counts (one ``checks x bins`` array per binning) of windows of ``size``
        values, at per-check ``level``: score, threshold and test name of each check (the
        test closest to, or past, its threshold)."""

    # -- machinery ---------------------------------------------------------------------
    def set_false_alarm_rate(self, rate: float) -> None:
        """A check every ``check_every`` values at level alpha makes at most alpha /
        check_every false alarms per value (fewer: overlapping windows make checks agree);
        with a long window too, each window gets half of ``rate``."""
        share = rate / (2 if self.long_window else 1)
        self.set_alpha(min(0.5, max(share * self.check_every, 1e-15)))

    @property
    def ready(self) -> bool:
        return self._sizes is not None and self._seen >= self.window_size

    def _relearn(self) -> None:
        self._warm = Window(self.reference_size)
        self._sizes: list[int] | None = None
        self._tail = np.zeros((0, 0), dtype=np.int64)  # the last values' bins: one row per binning
        self._seen = 0  # values since the reference

    def _set_reference(self, reference: np.ndarray) -> None:
        self._sizes = self._learn(reference)
        # Each binning's bins follow the previous one's: all are counted in one bincount.
        self._starts = np.cumsum([0, *self._sizes[:-1]]).reshape(-1, 1)
        self._tail = np.zeros((len(self._sizes), 0), dtype=np.int64)
        self._seen = 0

    def _update_many(self, values: np.ndarray) -> list[Fire]:
        values = self._prepare(values)
        fires: list[Fire] = []
        i, n = 0, len(values)
        while i < n:
            if self._sizes is None:
                i = self._warm_up(values, i)
                continue
            take = min(n - i, 4096)  # bounds the per-batch arrays
            fire = self._scan(values[i:i + take])
            if fire is None:
                i += take
                continue
            fires.append(fire._replace(index=i + fire.index))
            i += fire.index + 1
            self._relearn()
        return fires

    def _scan(self, values: np.ndarray) -> Fire | None:
        """Checks in ``values`` (after the reference); the first fire, if any (state then
        stops there, and the caller re-learns)."""
        k = len(values)
        full = np.concatenate((self._tail, np.stack(self._bins(values)) + self._starts), axis=1)
        offset = self._tail.shape[1]
        bins = sum(self._sizes or [])
        first: tuple[int, float, float, str] | None = None
        for size, every, level in self._windows():
            # Checks fall on every `every`-th value since the reference, once the window is full.
            checks = np.arange(every - self._seen % every - 1, k, every)
            checks = checks[self._seen + checks + 1 >= size]
            if not len(checks):
                continue
            ends = offset + checks + 1
            counts = np.split(window_counts(full, bins, int(ends[0]), every, len(ends), size),
                              self._starts[1:, 0], axis=1)
            scores, thresholds, tests = self._statistics(counts, size, level)
            over = np.flatnonzero(scores > thresholds)
            at = int(over[0]) if len(over) else len(checks) - 1
            if size == self.window_size or len(over):  # the gauge shows the short window unless the long fired
                self._score, self._threshold = float(scores[at]), float(thresholds[at])
            if len(over) and (first is None or checks[at] < first[0]):
                first = (int(checks[at]), float(scores[at]), float(thresholds[at]), tests[at])
        if first is not None:
            self._score, self._threshold = first[1], first[2]
            return Fire(*first)
        keep = self.long_window or self.window_size
        self._tail = full[:, -keep:]
        self._seen += k
        return None


class NumericDrift(BinnedWindowTest):
    """Sliding-window drift test of numeric values: KS, folded KS and binned chi-square.

    ``reference`` fixes the first reference (e.g. the training set) instead of the
    warm-up window; ``tests`` chooses among ``NUMERIC_TESTS``.

    >>> rng = np.random.default_rng(7)
    >>> detector = NumericDrift(reference_size=500, window_size=200, check_every=50)
    >>> same_mean_wider = np.concatenate([rng.normal(0, 1, 2000), rng.normal(0, 1.6, 1000)])
    >>> [(f.index, f.test) for f in detector.update_many(same_mean_wider)]
    [(2199, 'binned_chi2')]
    """

    name = "numeric"

    def __init__(
        self,
        reference_size: int = 1000,
        window_size: int = 500,
        check_every: int = 100,
        alpha: float = 1e-6,
        reference: np.ndarray | None = None,
        tests: tuple[str, ...] = NUMERIC_TESTS,
        long_window: int = 0,
        long_check_every: int = 0,
    ) -> None:
        super().__init__(reference_size, window_size, check_every, alpha, long_window, long_check_every)
        require(bool(tests) and set(tests) <= set(NUMERIC_TESTS), f"tests must be some of {NUMERIC_TESTS}, got {tests}")
        self.reference = reference
        self.tests = tuple(tests)
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        if self.reference is not None:
            self._set_reference(np.asarray(self.reference, dtype=np.float64))

    def _learn(self, reference: np.ndarray) -> list[int]:
        n = len(reference)
        self._center = float(np.median(reference))
        self._edges = quantile_edges(reference, KS_BINS)
        self._folded_edges = quantile_edges(np.abs(reference - self._center), FOLDED_BINS)
        self._decile_edges = quantile_edges(reference, DECILES)
        self._ref_counts = np.bincount(np.searchsorted(self._edges, reference, side="right"),
                                       minlength=len(self._edges) + 1)
        self._ref_cdf = np.cumsum(self._ref_counts) / n
        # Reference values below each bin, plus half of those in it: a window value's rank
        # contribution for the rank-sum test, ties (a bin) sharing their ranks.
        self._ref_below = np.cumsum(self._ref_counts) - self._ref_counts / 2.0
        self._ref_folded_cdf = np.cumsum(np.bincount(
            np.searchsorted(self._folded_edges, np.abs(reference - self._center), side="right"),
            minlength=len(self._folded_edges) + 1)) / n
        self._ref_deciles = np.bincount(np.searchsorted(self._decile_edges, reference, side="right"),
                                        minlength=len(self._decile_edges) + 1)
        self._n = n
        return [len(self._edges) + 1, len(self._folded_edges) + 1, len(self._decile_edges) + 1]

    def _bins(self, values: np.ndarray) -> list[np.ndarray]:
        return [np.searchsorted(self._edges, values, side="right"),
                np.searchsorted(self._folded_edges, np.abs(values - self._center), side="right"),
                np.searchsorted(self._decile_edges, values, side="right")]

    def _statistics(self, counts: list[np.ndarray], size: int, level: float) -> tuple[
            np.ndarray, np.ndarray, list[str]]:
        main, folded, deciles = counts
        m = size
        level /= len(self.tests)
        ks_critical = ks_critical_value(self._n, m, level)
        candidates: list[tuple[np.ndarray, np.ndarray]] = []
        if "ks" in self.tests:
            d = np.abs(np.cumsum(main, axis=1) / m - self._ref_cdf).max(axis=1)
            candidates.append((d, np.full(len(d), ks_critical)))
        if "rank_sum" in self.tests:
            z = self._rank_sum_z(main, m)
            candidates.append((np.abs(z), np.full(len(z), normal_critical_value(level))))
        if "folded_ks" in self.tests:
            d = np.abs(np.cumsum(folded, axis=1) / m - self._ref_folded_cdf).max(axis=1)
            candidates.append((d, np.full(len(d), ks_critical)))
        if "binned_chi2" in self.tests:
            stat, dof = chi_square_rows(self._ref_deciles, deciles)
            candidates.append((stat, np.array([chi_square_critical_value(int(k), level) for k in dof])))
        ratios = np.stack([s / t for s, t in candidates])
        best = ratios.argmax(axis=0)
        cols = np.arange(ratios.shape[1])
        scores = np.stack([s for s, _ in candidates])[best, cols]
        thresholds = np.stack([t for _, t in candidates])[best, cols]
        return scores, thresholds, [self.tests[b] for b in best]

    def _rank_sum_z(self, window: np.ndarray, m: int) -> np.ndarray:
        """Mann-Whitney's U of each window row against the reference, as a z-score, with the
        tie correction for values sharing a bin. Rank-based, so heavy tails do not fool it,
        and about 1.5 times as efficient as KS on a shift of location."""
        n = self._n
        u = window @ self._ref_below  # for each window value: reference values below it (ties count half)
        ties = self._ref_counts[None, :] + window
        total = n + m
        correction = (ties ** 3 - ties).sum(axis=1) / (total * (total - 1))
        variance = n * m / 12.0 * ((total + 1) - correction)
        z: np.ndarray = (u - n * m / 2.0) / np.sqrt(np.maximum(variance, 1e-12))
        return z


class ChiSquareDrift(BinnedWindowTest):
    """Chi-square drift test of a sliding window of category codes against a reference.

    Values are integer category codes (the caller owns the mapping from strings);
    codes at or above ``max_categories - 1`` share the last, "other", bucket so memory
    is bounded. The test is the two-sample chi-square test on the categories seen in
    either, so a category the reference never saw counts as evidence of drift rather
    than breaking the test.

    >>> rng = np.random.default_rng(3)
    >>> detector = ChiSquareDrift(reference_size=500, window_size=200, check_every=50)
    >>> before = rng.choice(3, size=2000, p=[0.6, 0.3, 0.1])
    >>> after = rng.choice(4, size=1000, p=[0.4, 0.3, 0.1, 0.2])  # a new category 3
    >>> [f.index for f in detector.update_many(np.concatenate([before, after]))]
    [2049]
    """

    name = "chi_square"

    def __init__(
        self,
        reference_size: int = 1000,
        window_size: int = 500,
        check_every: int = 100,
        alpha: float = 1e-6,
        max_categories: int = 50,
        long_window: int = 0,
        long_check_every: int = 0,
        reference: np.ndarray | None = None,
    ) -> None:
        super().__init__(reference_size, window_size, check_every, alpha, long_window, long_check_every)
        require(max_categories >= 2, f"max_categories must be >= 2, got {max_categories}")
        self.max_categories = max_categories
        self.reference = reference
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        if self.reference is not None:
            self._set_reference(self._prepare(np.asarray(self.reference, dtype=np.float64)))

    def _prepare(self, values: np.ndarray) -> np.ndarray:
        if not np.all(values >= 0):  # also catches NaN
            raise ValueError("category codes must be integers >= 0")
        return np.minimum(values.astype(np.int64), self.max_categories - 1)

    def _learn(self, reference: Any) -> list[int]:
        self._ref_counts = np.bincount(reference.astype(np.int64), minlength=self.max_categories)
        return [self.max_categories]

    def _bins(self, values: np.ndarray) -> list[np.ndarray]:
        return [values]

    def _statistics(self, counts: list[np.ndarray], size: int, level: float) -> tuple[
            np.ndarray, np.ndarray, list[str]]:
        stat, dof = chi_square_rows(self._ref_counts, counts[0])
        thresholds = np.array([chi_square_critical_value(int(k), level) for k in dof])
        return stat, thresholds, [""] * len(stat)

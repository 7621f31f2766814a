"""Sliding-window drift tests computed from bin counts: the detectors the daemon runs.

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
import functools
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


def chi_square_critical_values(dof: np.ndarray, levels: list[float], rows: list[int]) -> np.ndarray:
    """The chi-square critical value of each row's degrees of freedom, the first ``rows[0]``
    rows at ``levels[0]``, the next at the next.

    >>> chi_square_critical_values(np.array([1, 2, 1]), [1e-6, 1e-3], [2, 1]).round(3).tolist()
    [23.928, 27.631, 10.828]
    """
    out = np.empty(len(dof))
    top = int(dof.max()) + 1 if len(dof) else 0
    start = 0
    for level, count in zip(levels, rows, strict=True):
        out[start:start + count] = _chi_square_table(top, level)[dof[start:start + count]]
        start += count
    return out


@functools.lru_cache(maxsize=256)  # bounded: levels change with the budget, old ones are dropped
def _chi_square_table(dofs: int, level: float) -> np.ndarray:
    """The chi-square critical values of 0 .. ``dofs - 1`` degrees of freedom at ``level``."""
    table = np.array([chi_square_critical_value(k, level) for k in range(dofs)])
    table.flags.writeable = False
    return table


def per_row(values: list[Any], rows: list[int], dtype: Any = np.float64) -> np.ndarray:
    """``values[0]`` on the first ``rows[0]`` rows, the next on the next (``np.repeat``,
    without making arrays of the lists).

    >>> per_row([300, 2000], [2, 1], np.int64).tolist()
    [300, 300, 2000]
    """
    out = np.empty(sum(rows), dtype=dtype)
    start = 0
    for value, count in zip(values, rows, strict=True):
        out[start:start + count] = value
        start += count
    return out


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


class BinnedWindowTest(WindowTest):
    """The last ``window_size`` values against the first ``reference_size``, every
    ``check_every`` values, from bin counts; and, if ``long_window`` is set, the last
    ``long_window`` values every ``long_check_every``: a large change shows in the short
    window within a few hundred values, a small one needs the long window's sample.
    ``alpha`` is the per-check level of the short window; the long window's is set so
    that both spend the same false-alarm rate. After a fire the detector learns a new
    reference from what follows: one alert per change, not a storm.

    Each window's bin counts are kept running: a call adds the bins of the values that
    come in and takes away those of the values that leave (the last ``long_window``
    values' bins are kept for that), so a check costs O(bins), not O(window); the checks
    of both windows that fall in a call are counted in one ``bincount`` and tested in
    one ``_statistics`` call."""

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
    def _bins(self, values: np.ndarray, out: np.ndarray) -> None:
        """Write each binning's bin index of every value into the rows of ``out``
        (``binnings x len(values)``), each row offset by its binning's start."""

    @abc.abstractmethod
    def _statistics(self, counts: np.ndarray, groups: list[tuple[int, float, int]]) -> tuple[
            np.ndarray, np.ndarray, list[str]]:
        """For window counts (``checks x bins``, the binnings side by side) in ``groups`` of
        ``(size, level, rows)``: the first ``rows`` checks of windows of ``size`` values at
        per-check ``level``, then the next group's: score, threshold and test name of each
        check (the test closest to, or past, its threshold)."""

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
        self._counts = np.zeros((0, 0), dtype=np.int64)  # each window's bin counts now: one row per window
        self._seen = 0  # values since the reference

    def _set_reference(self, reference: np.ndarray) -> None:
        self._sizes = self._learn(reference)
        # Each binning's bins follow the previous one's: all are counted in one bincount.
        self._starts = [sum(self._sizes[:i]) for i in range(len(self._sizes))]
        self._tail = np.zeros((len(self._sizes), 0), dtype=np.int64)
        self._counts = np.zeros((len(self._windows()), sum(self._sizes)), dtype=np.int64)
        self._seen = 0

    def _update_many(self, values: np.ndarray) -> list[Fire]:
        values = self._prepare(values)
        fires: list[Fire] = []
        i, n = 0, len(values)
        while i < n:
            if self._sizes is None:
                i = self._warm_up(values, i)
                continue
            take = min(n - i, 16384)  # bounds the per-call arrays
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
        assert self._sizes is not None
        k = len(values)
        bins = self._counts.shape[1]
        new = np.empty((len(self._sizes), k), dtype=np.int64)
        self._bins(values, new)
        full = np.concatenate((self._tail, new), axis=1) if self._tail.shape[1] else new
        t = full.shape[1] - k  # where the new values start in `full`
        windows = self._windows()
        # Each window's checks in this call (as offsets in `values`): every `every`-th value
        # since the reference, once the window is full.
        checks = []
        for size, every, _ in windows:
            at = np.arange(every - self._seen % every - 1, k, every)
            checks.append(at[self._seen + at + 1 >= size])
        cut = np.unique(np.concatenate(checks)) if len(checks) > 1 else checks[0]
        # The values between two cuts form a segment; a value counts from the next cut on.
        # One bincount: the bins coming in, then, per window, those leaving, per segment.
        segments = len(cut) + 1
        block = segments * bins
        bounds = np.concatenate(([0], cut + 1, [k])) if len(cut) else np.array([0, k])
        entering = np.repeat(np.arange(0, segments * bins, bins), np.diff(bounds))
        parts = [(entering + new).ravel()]
        for w, (size, _, _) in enumerate(windows):
            first = max(size - t, 0)  # the first new value that pushes one out of the window
            if first < k:
                parts.append((entering[first:] + (w + 1) * block + full[:, t + first - size:t + k - size]).ravel())
        delta = np.bincount(np.concatenate(parts) if len(parts) > 1 else parts[0],
                            minlength=(len(windows) + 1) * block).reshape(len(windows) + 1, segments, bins)
        running = np.cumsum(delta[0] - delta[1:], axis=1) + self._counts[:, None, :]
        if len(cut):
            rows = [running[w, np.searchsorted(cut, at)] for w, at in enumerate(checks)]
            counts = np.concatenate(rows) if len(rows) > 1 else rows[0]
            groups = [(size, level, len(at)) for (size, _, level), at in zip(windows, checks, strict=True) if len(at)]
            scores, thresholds, tests = self._statistics(counts, groups)
            first_fire: tuple[int, float, float, str] | None = None
            start = 0
            for w, at in enumerate(checks):
                rows_w = len(at)
                if not rows_w:
                    continue
                s, th = scores[start:start + rows_w], thresholds[start:start + rows_w]
                over = np.flatnonzero(s > th)
                j = int(over[0]) if len(over) else rows_w - 1
                if w == 0 or len(over):  # the gauge shows the short window unless the long fired
                    self._score, self._threshold = float(s[j]), float(th[j])
                if len(over) and (first_fire is None or at[j] < first_fire[0]):
                    first_fire = (int(at[j]), float(s[j]), float(th[j]), tests[start + j])
                start += rows_w
            if first_fire is not None:
                self._score, self._threshold = first_fire[1], first_fire[2]
                return Fire(*first_fire)
        self._counts = running[:, -1]
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

    def _bins(self, values: np.ndarray, out: np.ndarray) -> None:
        _, folded, deciles = self._starts
        out[0] = np.searchsorted(self._edges, values, side="right")
        np.add(np.searchsorted(self._folded_edges, np.abs(values - self._center), side="right"), folded, out=out[1])
        np.add(np.searchsorted(self._decile_edges, values, side="right"), deciles, out=out[2])

    def _statistics(self, counts: np.ndarray, groups: list[tuple[int, float, int]]) -> tuple[
            np.ndarray, np.ndarray, list[str]]:
        _, folded_at, deciles_at = self._starts
        main, folded, deciles = counts[:, :folded_at], counts[:, folded_at:deciles_at], counts[:, deciles_at:]
        tests = len(self.tests)
        rows = [r for _, _, r in groups]
        m = per_row([size for size, _, _ in groups], rows, np.int64)
        levels = [level / tests for _, level, _ in groups]
        ks_critical = per_row([ks_critical_value(self._n, size, level)
                               for (size, _, _), level in zip(groups, levels, strict=True)], rows)
        candidates: list[tuple[np.ndarray, np.ndarray]] = []
        if "ks" in self.tests:
            d = np.abs(np.cumsum(main, axis=1) / m[:, None] - self._ref_cdf).max(axis=1)
            candidates.append((d, ks_critical))
        if "rank_sum" in self.tests:
            z = self._rank_sum_z(main, m)
            candidates.append((np.abs(z), per_row([normal_critical_value(level) for level in levels], rows)))
        if "folded_ks" in self.tests:
            d = np.abs(np.cumsum(folded, axis=1) / m[:, None] - self._ref_folded_cdf).max(axis=1)
            candidates.append((d, ks_critical))
        if "binned_chi2" in self.tests:
            stat, dof = chi_square_rows(self._ref_deciles, deciles)
            candidates.append((stat, chi_square_critical_values(dof, levels, rows)))
        ratios = np.stack([s / t for s, t in candidates])
        best = ratios.argmax(axis=0)
        cols = np.arange(ratios.shape[1])
        scores = np.stack([s for s, _ in candidates])[best, cols]
        thresholds = np.stack([t for _, t in candidates])[best, cols]
        return scores, thresholds, [self.tests[b] for b in best]

    def _rank_sum_z(self, window: np.ndarray, m: np.ndarray) -> np.ndarray:
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

    def _bins(self, values: np.ndarray, out: np.ndarray) -> None:
        out[0] = values

    def _statistics(self, counts: np.ndarray, groups: list[tuple[int, float, int]]) -> tuple[
            np.ndarray, np.ndarray, list[str]]:
        stat, dof = chi_square_rows(self._ref_counts, counts)
        thresholds = chi_square_critical_values(dof, [level for _, level, _ in groups], [r for _, _, r in groups])
        return stat, thresholds, [""] * len(stat)

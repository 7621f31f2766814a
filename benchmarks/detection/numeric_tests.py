"""Which two-sample test for numeric features? Measured, not assumed.

``python -m benchmarks.detection.numeric_tests`` feeds the changed feature of every
feature-level stream (and every numeric feature of the no-change streams) to sliding
window tests at the daemon's cadence (reference: the first ``REF`` values; window:
the last ``WIN``; a test every ``EVERY`` values) and reports, per test, the delay to
the first check past its threshold and the false alarms on the no-change features.

Every test gets the same false-alarm budget: a threshold at the same per-check
level ``ALPHA``. KS and the binned chi-square have exact asymptotic thresholds;
Wasserstein (normalised by the reference's standard deviation), PSI and
Jensen-Shannon do not, so theirs are calibrated by simulating the null on the
reference itself (resampling windows from it), the way a user would have to.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Callable

import numpy as np
from scipy import special, stats

from benchmarks.detection.streams import catalog
from detectors.categorical import chi_square_homogeneity
from detectors.critical import chi_square_critical_value, ks_critical_value
from detectors.numeric import ks_statistic

REF, WIN, EVERY = 1000, 500, 100
LONG = 2000  # the long window of the multi-scale combinations
ALPHA = 1e-5
BINS = 10

Test = Callable[[np.ndarray, np.ndarray], float]  # (reference, window) -> statistic


def ks(ref: np.ndarray, win: np.ndarray) -> float:
    return ks_statistic(np.sort(ref), win)


def folded_ks(ref: np.ndarray, win: np.ndarray) -> float:
    center = np.median(ref)
    return ks_statistic(np.sort(np.abs(ref - center)), np.abs(win - center))


def _edges(ref: np.ndarray, bins: int) -> np.ndarray:
    return np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))


def _counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)


def binned_chi2(ref: np.ndarray, win: np.ndarray) -> float:
    edges = _edges(ref, BINS)
    return chi_square_homogeneity(_counts(ref, edges), _counts(win, edges))[0]


def _proportions(ref: np.ndarray, win: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    edges = _edges(ref, BINS)
    p = (_counts(ref, edges) + 0.5) / (len(ref) + 0.5 * (len(edges) + 1))
    q = (_counts(win, edges) + 0.5) / (len(win) + 0.5 * (len(edges) + 1))
    return p, q


def psi(ref: np.ndarray, win: np.ndarray) -> float:
    p, q = _proportions(ref, win)
    return float(np.sum((q - p) * np.log(q / p)))


def jensen_shannon(ref: np.ndarray, win: np.ndarray) -> float:
    p, q = _proportions(ref, win)
    m = (p + q) / 2
    return float(0.5 * np.sum(p * np.log(p / m)) + 0.5 * np.sum(q * np.log(q / m)))


def wasserstein(ref: np.ndarray, win: np.ndarray) -> float:
    sd = float(np.std(ref)) or 1.0
    r, w = np.sort(ref), np.sort(win)
    grid = np.linspace(0, 1, 512, endpoint=False) + 0.5 / 512  # quantile functions on a common grid
    return float(np.mean(np.abs(np.quantile(r, grid) - np.quantile(w, grid)))) / sd


def calibrated(test: Test, ref: np.ndarray, rng: np.random.Generator, draws: int = 300) -> float:
    """A threshold at level ALPHA for a test with no known null distribution: bootstrap pairs of
    independent samples (reference-sized and window-sized) from the reference, fit a gamma
    distribution to the statistic by its moments, and take its upper ALPHA quantile."""
    null = np.array([test(rng.choice(ref, len(ref)), rng.choice(ref, WIN)) for _ in range(draws)])
    mean, var = float(np.mean(null)), float(np.var(null)) or 1e-12
    shape, scale = mean * mean / var, var / mean
    return float(special.gammainccinv(shape, ALPHA) * scale)


def _ks_p(ref: np.ndarray, win: np.ndarray) -> float:
    d = ks(ref, win)
    n_eff = len(ref) * len(win) / (len(ref) + len(win))
    return float(special.kolmogorov(d * math.sqrt(n_eff)))


def _folded_p(ref: np.ndarray, win: np.ndarray) -> float:
    d = folded_ks(ref, win)
    n_eff = len(ref) * len(win) / (len(ref) + len(win))
    return float(special.kolmogorov(d * math.sqrt(n_eff)))


def _rank_sum_p(ref: np.ndarray, win: np.ndarray) -> float:
    return float(stats.mannwhitneyu(win, ref, alternative="two-sided", method="asymptotic").pvalue)


def _chi2_p(ref: np.ndarray, win: np.ndarray) -> float:
    edges = _edges(ref, BINS)
    stat, dof = chi_square_homogeneity(_counts(ref, edges), _counts(win, edges))
    return float(special.chdtrc(dof, stat)) if dof else 1.0


def combined(*tests: Callable[[np.ndarray, np.ndarray], float]) -> Test:
    """Fires when any test's p-value is below ALPHA / len(tests) (Bonferroni): returned as -log10(min p * k)."""
    def test(ref: np.ndarray, win: np.ndarray) -> float:
        return -math.log10(max(min(t(ref, win) for t in tests) * len(tests), 1e-300))
    return test


def first_fire(values: np.ndarray, test: Test, threshold: float, start: int = 0) -> int | None:
    """Checks every EVERY values once the window is full; a test sees up to LONG recent values
    (the single-window tests look at the last WIN of them)."""
    ref = values[:REF]
    for end in range(REF + WIN, len(values) + 1, EVERY):
        if end <= start:
            continue
        if test(ref, values[max(REF, end - LONG):end]) > threshold:
            return end - 1
    return None


def last(test: Test) -> Test:
    return lambda ref, recent: test(ref, recent[-WIN:])


def multiscale(*tests: Callable[[np.ndarray, np.ndarray], float]) -> Test:
    """Each p-value test on the last WIN values, and (every 500 values, once there are LONG)
    on the last LONG; fires when any p-value is below ALPHA over the number of tests run."""
    def test(ref: np.ndarray, recent: np.ndarray) -> float:
        p_values = [t(ref, recent[-WIN:]) for t in tests]
        if len(recent) >= LONG:
            p_values += [t(ref, recent[-LONG:]) for t in tests]
        return -math.log10(max(min(p_values) * 2 * len(tests), 1e-300))
    return test


TESTS: dict[str, tuple[Test, Callable[[np.ndarray], float] | None]] = {
    "ks+rank_sum+folded_ks+binned_chi2": (last(combined(_ks_p, _rank_sum_p, _folded_p, _chi2_p)),
                                          lambda ref: -math.log10(ALPHA)),
    "rank_sum": (last(combined(_rank_sum_p)), lambda ref: -math.log10(ALPHA)),
    "ks+folded_ks+binned_chi2 @500+2000": (multiscale(_ks_p, _folded_p, _chi2_p), lambda ref: -math.log10(ALPHA)),
    "ks+folded_ks @500+2000": (multiscale(_ks_p, _folded_p), lambda ref: -math.log10(ALPHA)),
    "ks+binned_chi2": (last(combined(_ks_p, _chi2_p)), lambda ref: -math.log10(ALPHA)),
    "ks+folded_ks": (last(combined(_ks_p, _folded_p)), lambda ref: -math.log10(ALPHA)),
    "ks+folded_ks+binned_chi2": (last(combined(_ks_p, _folded_p, _chi2_p)), lambda ref: -math.log10(ALPHA)),
    "ks": (last(ks), lambda ref: ks_critical_value(len(ref), WIN, ALPHA)),
    "folded_ks": (last(folded_ks), lambda ref: ks_critical_value(len(ref), WIN, ALPHA)),
    "binned_chi2": (last(binned_chi2), lambda ref: chi_square_critical_value(len(_edges(ref, BINS)), ALPHA)),
    "psi": (last(psi), None),
    "jensen_shannon": (last(jensen_shannon), None),
    "wasserstein": (last(wasserstein), None),
}


def main() -> int:
    rng = np.random.default_rng(0)
    changed: list[tuple[str, np.ndarray, int]] = []
    null: list[tuple[str, np.ndarray]] = []
    for name, make in catalog():
        stream = make()
        if stream.family not in ("feature", "none") or stream.notes:  # river's streams have notes
            continue
        columns: dict[str, list[tuple[int, float]]] = {}
        n = 0
        for e in stream.events:
            if e["type"] != "prediction":
                continue
            for k, v in e["features"].items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    columns.setdefault(k, []).append((n, float(v)))
            n += 1
        if stream.changed:
            change_pred = sum(1 for e in stream.events[:stream.change_at] if e["type"] == "prediction")
            for feature in stream.expect_features & columns.keys():
                idx = [i for i, _ in columns[feature]]
                values = np.array([v for _, v in columns[feature]])
                changed.append((f"{name}:{feature}", values, int(np.searchsorted(idx, change_pred))))
        else:
            for feature, pairs in columns.items():
                null.append((f"{name}:{feature}", np.array([v for _, v in pairs])))
        print(f"  read {name}", file=sys.stderr, flush=True)
    print(f"{len(changed)} changed features, {len(null)} no-change features; reference {REF}, window {WIN}, "
          f"a test every {EVERY} values, per-check level {ALPHA:g}\n")
    print("| test | detected | median delay (values) | delays | false alarms on no-change features |")
    print("|---|---|---|---|---|")
    for test_name, (test, exact) in TESTS.items():
        delays: list[int] = []
        cells = []
        for label, values, change in changed:
            threshold = exact(values[:REF]) if exact else calibrated(test, values[:REF], rng)
            fire = first_fire(values, test, threshold, start=change + 1)
            if fire is not None and fire >= change:
                delays.append(fire - change)
                cells.append(f"{label.split(':')[0]} {fire - change}")
            else:
                cells.append(f"{label.split(':')[0]} -")
        false_alarms = 0
        for _, values in null:
            threshold = exact(values[:REF]) if exact else calibrated(test, values[:REF], rng)
            false_alarms += first_fire(values, test, threshold) is not None
        median = statistics.median(delays) if delays else math.nan
        print(f"| {test_name} | {len(delays)}/{len(changed)} | {median:,.0f} | {'; '.join(cells)} | "
              f"{false_alarms}/{len(null)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

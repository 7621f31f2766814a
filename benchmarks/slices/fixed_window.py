"""The fixed-window fairness check a team would write without us: Fairlearn's ``MetricFrame``.

Per model and protected attribute, tumbling windows of ``WINDOW`` decisions (the model's
predictions in stream order): the selection rate (score >= 0.5, the favourable outcome) of
each group by ``MetricFrame(metrics=selection_rate, ...)``; a group with at least
``MIN_GROUP`` decisions in the window whose rate is outside 0.8-1.25 times the rate of the
window's largest group (the four-fifths rule, as Aequitas and Arize draw it) is flagged:
one ``fairness_gap`` alert (detector ``demographic_parity``) at the window's last decision.
No confidence interval: that is the difference under test.

Without fairlearn (not installed) the same check runs in numpy; ``ENGINE`` says which.
"""

from __future__ import annotations

from typing import Any

import numpy as np

WINDOW = 5000
MIN_GROUP = 100
BAND = (0.8, 1.25)

try:
    from fairlearn.metrics import MetricFrame, selection_rate

    ENGINE = "fairlearn"
except ImportError:  # pragma: no cover - depends on the virtualenv
    ENGINE = "numpy"


def _rates(favourable: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    if ENGINE == "fairlearn":
        frame = MetricFrame(metrics=selection_rate, y_true=np.zeros(len(favourable)), y_pred=favourable,
                            sensitive_features=groups)
        return {str(k): float(v) for k, v in frame.by_group.items()}
    return {str(g): float(favourable[groups == g].mean()) for g in np.unique(groups)}


def alerts(events: list[dict[str, Any]], attributes: list[str]) -> list[dict[str, Any]]:
    """Every flag of the fixed-window check on ``events``, as alert records."""
    decisions: dict[str, list[tuple[int, int, dict[str, Any]]]] = {}
    for pos, e in enumerate(events):
        if e["type"] == "prediction" and "score" in e.get("prediction", {}):
            decisions.setdefault(e["model"], []).append((pos, int(e["prediction"]["score"] >= 0.5), e["segment"]))
    out: list[dict[str, Any]] = []
    for model, rows in decisions.items():
        for start in range(0, len(rows) - WINDOW + 1, WINDOW):
            window = rows[start:start + WINDOW]
            favourable = np.array([f for _, f, _ in window])
            for attribute in attributes:
                values = [seg.get(attribute) for _, _, seg in window]
                if all(v is None for v in values):
                    continue
                groups = np.array([str(v) for v in values], dtype=object)
                names, counts = np.unique(groups, return_counts=True)
                size = dict(zip(names.tolist(), counts.tolist(), strict=True))
                rates = _rates(favourable, groups)
                reference = max(size, key=lambda g: size[g])
                if rates[reference] == 0:
                    continue
                for group, rate in rates.items():
                    ratio = rate / rates[reference]
                    if group != reference and size[group] >= MIN_GROUP and not BAND[0] <= ratio <= BAND[1]:
                        out.append({"kind": "fairness_gap", "model": model, "model_version": None,
                                    "feature": attribute, "detector": "demographic_parity",
                                    "score": round(ratio, 4), "threshold": BAND[0], "at_event": window[-1][0],
                                    "segment": {attribute: group}, "baseline_version": None})
    return out

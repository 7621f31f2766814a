"""Dataset-level drift: a share of a model's features drifting at once.

Per-feature alerts say which feature moved; when many move within a short span the
cause is usually upstream (a new data source, a pipeline change, a new population)
and one summary says so. ``DriftShare`` watches the feature alerts and fires once
when at least ``share`` of the features (and at least ``min_features``) alerted
within the last ``window`` events, then stays quiet for a window. It only counts
alerts the detectors already raised, so it adds no false alarm of its own beyond
theirs.
"""

from __future__ import annotations

import math

from detectors.base import Fire, require


class DriftShare:
    """Fires when ``share`` of ``n_features`` alerted within ``window`` events.

    >>> share = DriftShare(share=0.5, window=1000)
    >>> [share.observe(p, f, n_features=4) for p, f in [(100, "a"), (300, "b"), (2000, "c")]]
    [None, Fire(index=300, score=0.5, threshold=0.5, test=''), None]
    """

    def __init__(self, share: float = 0.5, window: int = 5000, min_features: int = 2) -> None:
        require(0.0 < share <= 1.0, f"share must be in (0, 1], got {share}")
        require(window >= 1, f"window must be >= 1, got {window}")
        require(min_features >= 1, f"min_features must be >= 1, got {min_features}")
        self.share = share
        self.window = window
        self.min_features = min_features
        self._last: dict[str, int] = {}
        self._quiet_until = -1

    def observe(self, position: int, feature: str, n_features: int) -> Fire | None:
        """A feature alerted at ``position``: a dataset-level fire, or None."""
        self._last[feature] = position
        horizon = position - self.window
        self._last = {f: p for f, p in self._last.items() if p > horizon}
        needed = max(self.min_features, math.ceil(self.share * n_features))
        if len(self._last) < needed or position < self._quiet_until:
            return None
        self._quiet_until = position + self.window
        return Fire(position, len(self._last) / n_features, self.share)

"""Which slices of a model's traffic are watched: segment keys and values, bounded.

Every key of an event's ``segment`` is a slice dimension (``segments.keys`` restricts
them), at most ``segments.max_keys`` keys per model, first come. Per key at most
``segments.max_values`` values are watched, the heaviest by traffic: a value is watched
from its first prediction while there is room; later ones are counted by a
Space-Saving sketch (Metwally et al., 2005) and fold into ``__other__``. Every
``rebalance_every`` predictions of the model, a folded value whose count (less the
sketch's error) is more than twice the lightest watched value's takes its place, and all
counts are halved, so "heaviest" follows recent traffic. Each decision happens at an
event of the stream, never at a batch boundary, so every runner and every cut of the
stream into batches watches the same slices.

>>> index = SegmentIndex(keys=(), max_keys=1, max_values=2, rebalance_every=1000)
>>> index.admit((("region", "east"), ("tier", "gold")))
[('region', 'east')]
>>> index.admit((("region", "west"),)), index.admit((("region", "north"),))
([('region', 'west')], [('region', '__other__')])
>>> index.folded_keys, index.folded_values
(1, 1)
>>> _ = index.admit((("tier", "silver"),))  # every prediction whose key is past the bound counts
>>> index.folded_keys
2
"""

from __future__ import annotations

from collections.abc import Collection

OTHER_VALUE = "__other__"
#: A segment as (key, value as text) pairs.
Pairs = tuple[tuple[str, str], ...]


class SpaceSaving:
    """The heaviest values of a stream in bounded memory: counts with an error bound.

    With ``capacity`` counters, any value seen more than n / capacity times in n is held,
    and its count overestimates the truth by at most its ``errors`` entry.

    >>> sketch = SpaceSaving(2)
    >>> for v in "aabacaad":
    ...     sketch.add(v)
    >>> sketch.counts["a"], sorted(sketch.counts)
    (5, ['a', 'd'])
    """

    __slots__ = ("capacity", "counts", "errors")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.counts: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    def add(self, value: str, n: int = 1) -> None:
        counts = self.counts
        if value in counts:
            counts[value] += n
            return
        if len(counts) < self.capacity:
            counts[value] = n
            self.errors[value] = 0
            return
        # Evict the smallest; the newcomer inherits its count as its error (it may have been seen that often).
        smallest = min(counts, key=counts.__getitem__)
        floor = counts.pop(smallest)
        del self.errors[smallest]
        counts[value] = floor + n
        self.errors[value] = floor

    def discard(self, value: str) -> None:
        self.counts.pop(value, None)
        self.errors.pop(value, None)

    def halve(self) -> None:
        for value in self.counts:
            self.counts[value] //= 2
            self.errors[value] //= 2


class KeyValues:
    """One segment key's watched values (with their traffic) and the sketch of the rest."""

    __slots__ = ("folded", "sketch", "watched")

    def __init__(self, max_values: int) -> None:
        self.watched: dict[str, int] = {}  # value -> predictions (halved at each rebalance)
        self.sketch = SpaceSaving(4 * max_values)
        self.folded = 0  # predictions counted under __other__


class SegmentIndex:
    """A model's watched segment keys and values (see the module's docstring)."""

    def __init__(self, keys: Collection[str], max_keys: int, max_values: int, rebalance_every: int = 10_000) -> None:
        self.allowed = frozenset(keys)
        self.max_keys = max_keys
        self.max_values = max_values
        self.rebalance_every = rebalance_every
        self.keys: dict[str, KeyValues] = {}
        self.refused: set[str] = set()  # keys past max_keys (bounded: max_keys + what the cap lets through)
        self.predictions = 0
        self.folded_keys = 0  # (prediction, key) pairs not watched for max_keys
        self.folded_values = 0  # (prediction, key) pairs counted under __other__ for max_values
        #: (key, value) pairs no longer watched, for the model to drop their state.
        self.evicted: list[tuple[str, str]] = []

    def admit(self, pairs: Pairs) -> list[tuple[str, str]]:
        """The watched (key, value) pairs of a prediction's segment, counting it as traffic;
        a value not watched is ``__other__``."""
        self.predictions += 1
        out = []
        for key, value in pairs:
            values = self.keys.get(key)
            if values is None:
                values = self._key(key)
                if values is None:
                    continue
            watched = values.watched
            if value in watched:
                watched[value] += 1
                out.append((key, value))
            elif len(watched) < self.max_values:
                watched[value] = 1
                out.append((key, value))
            else:
                values.sketch.add(value)
                values.folded += 1
                self.folded_values += 1
                out.append((key, OTHER_VALUE))
        if self.predictions % self.rebalance_every == 0:
            self._rebalance()
        return out

    def lookup(self, pairs: Pairs) -> list[tuple[str, str]]:
        """The watched (key, value) pairs of an event that is not traffic (feedback, a click)."""
        out = []
        for key, value in pairs:
            values = self.keys.get(key)
            if values is not None:
                out.append((key, value if value in values.watched else OTHER_VALUE))
        return out

    def _key(self, key: str) -> KeyValues | None:
        if self.allowed and key not in self.allowed:
            return None
        if key in self.refused:
            self.folded_keys += 1
            return None
        if len(self.keys) >= self.max_keys:
            self.folded_keys += 1
            if len(self.refused) < 4 * self.max_keys + 64:  # bound the memory of what was refused
                self.refused.add(key)
            return None
        values = self.keys[key] = KeyValues(self.max_values)
        return values

    def _rebalance(self) -> None:
        for key, values in self.keys.items():
            watched, sketch = values.watched, values.sketch
            for candidate in sorted(sketch.counts, key=sketch.counts.__getitem__, reverse=True):
                lightest = min(watched, key=watched.__getitem__)
                surely = sketch.counts[candidate] - sketch.errors[candidate]
                if surely <= 2 * watched[lightest]:
                    break
                del watched[lightest]
                watched[candidate] = surely
                sketch.discard(candidate)
                self.evicted.append((key, lightest))
            for value in watched:
                watched[value] //= 2
            sketch.halve()

    def take_evicted(self) -> list[tuple[str, str]]:
        evicted, self.evicted = self.evicted, []
        return evicted

    def watched_values(self) -> int:
        return sum(len(v.watched) for v in self.keys.values())


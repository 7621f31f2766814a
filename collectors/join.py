"""Join feedback to the prediction it is about, by ``request_id``.

Both sides are bounded. Feedback joins a prediction if it is stamped at most ``ttl_s``
after it; predictions are kept that long in event time (at most ``max_predictions``
of them). Feedback read before its prediction waits ``feedback_wait_s`` of event
time for it (at most ``max_pending`` of it). Nothing is dropped silently: an
evicted or expired prediction is counted, and feedback that never finds its
prediction comes out of ``drain_orphans()`` so the caller can still keep it.

Time is event time: ``advance(ts)`` is called with every event's timestamp, and
what is too old is forgotten at the event that moves the watermark (the newest
timestamp seen) past it. So whether a pair joins depends only on the stream, never
on where a batch ended, and a replay joins exactly what the daemon joined.

>>> j = JoinBuffer(ttl_s=60, max_predictions=10, feedback_wait_s=5, max_pending=10)
>>> j.add_prediction({"request_id": "r-1", "ts": 100.0})
[]
>>> j.add_feedback({"request_id": "r-1", "ts": 130.0, "kind": "thumbs_down"})["ts"]
100.0
>>> j.add_feedback({"request_id": "r-2", "ts": 131.0, "kind": "label"}) is None  # waits
True
>>> [fb["kind"] for fb in j.add_prediction({"request_id": "r-2", "ts": 129.0})]
['label']

The buffer may hold something smaller than the prediction (``keep``: the daemon
keeps the message's bytes, a tenth of the decoded event's memory) and hands that
back on a join:

>>> j.add_prediction({"request_id": "r-3", "ts": 140.0}, keep=b"raw message")
[]
>>> j.add_feedback({"request_id": "r-3", "ts": 141.0, "kind": "thumbs_down"})
b'raw message'

Each entry remembers the ``shard`` it was read from (the daemon passes the topic
partition), so that when a partition moves to another consumer its entries can go
with it: ``take`` removes them and ``put`` adds them to another buffer.

>>> j.add_prediction({"request_id": "r-4", "ts": 150.0}, shard=("events", 1))
[]
>>> moved = j.take({("events", 1)})
>>> other = JoinBuffer(ttl_s=60, max_predictions=10, feedback_wait_s=5, max_pending=10)
>>> other.put(moved)
>>> other.add_feedback({"request_id": "r-4", "ts": 151.0, "kind": "thumbs_down"})["ts"]
150.0
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]


@dataclass
class JoinEntries:
    """What a buffer held from one shard, oldest first: what another buffer ``put``s."""

    #: (request_id, prediction ts, what was kept of the prediction)
    predictions: list[tuple[str, float, Any]] = field(default_factory=list)
    #: (request_id, feedback event) waiting for its prediction
    pending: list[tuple[str, Event]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.predictions) + len(self.pending)


class JoinBuffer:
    """Bounded, event-time join of feedback to predictions."""

    def __init__(self, ttl_s: float, max_predictions: int, feedback_wait_s: float, max_pending: int) -> None:
        if ttl_s <= 0 or feedback_wait_s < 0:
            raise ValueError(f"ttl_s must be > 0 and feedback_wait_s >= 0, got {ttl_s}, {feedback_wait_s}")
        if max_predictions < 1 or max_pending < 0:
            raise ValueError(f"max_predictions must be >= 1 and max_pending >= 0, got {max_predictions}, {max_pending}")
        self.ttl_s = ttl_s
        self.max_predictions = max_predictions
        self.feedback_wait_s = feedback_wait_s
        self.max_pending = max_pending
        # Ordered dicts, oldest first: evicting from the front of a plain dict makes the
        # next eviction scan the deleted slots (measured: 15 us per event once full).
        self._predictions: OrderedDict[str, tuple[float, Any, Hashable]] = OrderedDict()  # rid -> (ts, kept, shard)
        self._pending: OrderedDict[str, list[tuple[Event, Hashable]]] = OrderedDict()  # rid -> [(feedback, shard)]
        self._pending_count = 0
        self._orphans: list[Event] = []
        #: The newest event time seen.
        self.watermark = -math.inf
        # When expire() next has work: at most the true time (it may run early, never late).
        self._next_expiry = math.inf
        #: Outcomes so far: matched, matched_waiting, expired, evicted (predictions),
        #: orphaned (feedback that found no prediction), of which evicted_waiting by the bound.
        self.counts: Counter[str] = Counter()

    @property
    def predictions(self) -> int:
        """How many predictions are waiting for feedback."""
        return len(self._predictions)

    @property
    def pending(self) -> int:
        """How many feedback events are waiting for their prediction."""
        return self._pending_count

    def _pairs(self, prediction_ts: float, feedback: Event) -> bool:
        # Feedback stamped a little before its prediction is clock skew, allowed up to
        # feedback_wait_s: the same bound after which waiting feedback is given up on,
        # so whether a pair joins never depends on when expire() ran.
        return bool(-self.feedback_wait_s <= feedback["ts"] - prediction_ts <= self.ttl_s)

    def add_prediction(self, event: Event, keep: Any = None, shard: Hashable = None) -> list[Event]:
        """Keep a prediction (or ``keep`` in its place), read from ``shard``; return the
        waiting feedback that joins it now."""
        rid = event.get("request_id")
        if rid is None:
            return []
        preds = self._predictions
        if rid not in preds and len(preds) >= self.max_predictions:
            preds.popitem(last=False)
            self.counts["evicted"] += 1
        ts = event["ts"]
        preds[rid] = (ts, event if keep is None else keep, shard)
        self._next_expiry = min(self._next_expiry, ts + self.ttl_s)
        entries = self._pending.pop(rid, None)
        if not entries:
            return []
        self._pending_count -= len(entries)
        waiting = [fb for fb, _ in entries]
        joined = [fb for fb in waiting if self._pairs(ts, fb)]
        self.counts["matched_waiting"] += len(joined)
        if len(joined) < len(waiting):
            self._orphan([fb for fb in waiting if not self._pairs(ts, fb)])
        return joined

    def add_feedback(self, event: Event, shard: Hashable = None) -> Any:
        """Return the feedback's prediction (what was kept of it), or keep the feedback
        (read from ``shard``) waiting for it and return None."""
        rid = event["request_id"]
        prediction = self._predictions.get(rid)
        if prediction is not None and self._pairs(prediction[0], event):
            self.counts["matched"] += 1
            return prediction[1]
        if self.max_pending == 0:
            self._orphan([event])
            return None
        if self._pending_count >= self.max_pending:
            self._evict_waiting()
        self._pending.setdefault(rid, []).append((event, shard))
        self._pending_count += 1
        self._next_expiry = min(self._next_expiry, event["ts"] + self.feedback_wait_s)
        return None

    def advance(self, ts: float) -> None:
        """Move event time to ``ts`` (if it is newer), forgetting what became too old."""
        if ts > self.watermark:
            self.watermark = ts
            if ts > self._next_expiry:
                self.expire(ts)

    def expire(self, watermark: float) -> None:
        """Forget what is too old to join anything that is still to come.

        ``watermark`` is the newest event time seen. Entries are kept in arrival
        order, which is close to time order, so this stops at the first young one.
        """
        horizon = watermark - self.ttl_s
        preds = self._predictions
        while preds:
            rid = next(iter(preds))
            if preds[rid][0] >= horizon:
                break
            del preds[rid]
            self.counts["expired"] += 1
        horizon = watermark - self.feedback_wait_s
        pending = self._pending
        while pending:
            rid = next(iter(pending))
            if pending[rid][0][0]["ts"] >= horizon:
                break
            waiting = pending.pop(rid)
            self._pending_count -= len(waiting)
            self._orphan([fb for fb, _ in waiting])
        self._set_next_expiry()

    def _set_next_expiry(self) -> None:
        preds, pending = self._predictions, self._pending
        self._next_expiry = min(
            next(iter(preds.values()))[0] + self.ttl_s if preds else math.inf,
            next(iter(pending.values()))[0][0]["ts"] + self.feedback_wait_s if pending else math.inf,
        )

    def _evict_waiting(self) -> None:
        _, evicted = self._pending.popitem(last=False)
        self._pending_count -= len(evicted)
        self.counts["evicted_waiting"] += len(evicted)
        self._orphan([fb for fb, _ in evicted])

    # -- a moving shard -------------------------------------------------------------
    def entries(self, shards: Collection[Hashable]) -> dict[Hashable, JoinEntries]:
        """What is held from each of ``shards`` (copies of the lists; the buffer keeps it)."""
        out: dict[Hashable, JoinEntries] = {shard: JoinEntries() for shard in shards}
        for rid, (ts, kept, shard) in self._predictions.items():
            if shard in out:
                out[shard].predictions.append((rid, ts, kept))
        for rid, waiting in self._pending.items():
            for fb, shard in waiting:
                if shard in out:
                    out[shard].pending.append((rid, fb))
        return out

    def take(self, shards: Collection[Hashable]) -> dict[Hashable, JoinEntries]:
        """Remove and return what is held from each of ``shards`` (they moved elsewhere).

        Nothing is counted: the entries are neither joined nor lost, only moved.
        """
        out = self.entries(shards)
        moving = set(shards)
        self._predictions = OrderedDict(
            (rid, entry) for rid, entry in self._predictions.items() if entry[2] not in moving)
        pending: OrderedDict[str, list[tuple[Event, Hashable]]] = OrderedDict()
        for rid, waiting in self._pending.items():
            staying = [entry for entry in waiting if entry[1] not in moving]
            if staying:
                pending[rid] = staying
        self._pending = pending
        self._pending_count = sum(map(len, pending.values()))
        self._set_next_expiry()
        return out

    def put(self, moved: Mapping[Hashable, JoinEntries]) -> None:
        """Add what other buffers ``take`` (by shard), oldest first with what is here, in one
        merge, within this buffer's bounds (the oldest evicted past them).

        A moved prediction and feedback waiting here for it (or the other way round)
        are not joined: with the range assignor a partition's predictions and its
        feedback move together.
        """
        if not any(map(len, moved.values())):
            return  # nothing to merge: what is here stays as it is, unsorted
        merged = [(ts, rid, (ts, kept, shard)) for shard, entries in moved.items()
                  for rid, ts, kept in entries.predictions]
        merged += [(entry[0], rid, entry) for rid, entry in self._predictions.items()]
        merged.sort(key=lambda item: item[0])  # stable: for equal times, the moved ones first
        self._predictions = OrderedDict((rid, entry) for _, rid, entry in merged)
        while len(self._predictions) > self.max_predictions:
            self._predictions.popitem(last=False)
            self.counts["evicted"] += 1
        waiting: list[tuple[float, str, tuple[Event, Hashable]]] = [
            (fb["ts"], rid, (fb, shard)) for shard, entries in moved.items() for rid, fb in entries.pending]
        waiting += [(entry[0]["ts"], rid, entry) for rid, queue in self._pending.items() for entry in queue]
        waiting.sort(key=lambda item: item[0])
        self._pending = OrderedDict()
        for _, rid, entry in waiting:
            self._pending.setdefault(rid, []).append(entry)
        self._pending_count = len(waiting)
        while self._pending_count > self.max_pending:
            self._evict_waiting()
        self._set_next_expiry()

    def give_up(self, entries: JoinEntries) -> None:
        """Count the waiting feedback among ``entries`` (``take``n out) as orphaned: it comes
        out of ``drain_orphans`` like any other."""
        self._orphan([fb for _, fb in entries.pending])

    def _orphan(self, events: list[Event]) -> None:
        self.counts["orphaned"] += len(events)
        self._orphans.extend(events)

    def drain_pending(self) -> list[Event]:
        """All feedback still waiting for its prediction (at shutdown); then forget it."""
        out = [fb for waiting in self._pending.values() for fb, _ in waiting]
        self._pending.clear()
        self._pending_count = 0
        self._orphan(out)
        return self.drain_orphans()

    def drain_orphans(self) -> list[Event]:
        """Feedback that will never find its prediction, oldest first; then forget it."""
        out, self._orphans = self._orphans, []
        return out

"""The bounded, event-time join of feedback to predictions (collectors/join.py)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.join import JoinBuffer, JoinEntries

_ids = itertools.count()


def pred(rid, ts, **extra):
    return {"event_id": f"e-{next(_ids)}", "type": "prediction", "request_id": rid, "ts": float(ts), **extra}


def fb(rid, ts, kind="thumbs_down"):
    return {"event_id": f"f-{next(_ids)}", "type": "feedback", "request_id": rid, "ts": float(ts), "kind": kind}


def buffer(ttl_s=60.0, max_predictions=100, feedback_wait_s=10.0, max_pending=100):
    return JoinBuffer(ttl_s=ttl_s, max_predictions=max_predictions, feedback_wait_s=feedback_wait_s,
                      max_pending=max_pending)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"ttl_s": 0}, "0"),
    ({"ttl_s": -5}, "-5"),
    ({"feedback_wait_s": -1}, "-1"),
    ({"max_predictions": 0}, "0"),
    ({"max_pending": -1}, "-1"),
])
def test_invalid_bounds_raise_value_error_naming_the_value(kwargs, fragment):
    args = {"ttl_s": 60.0, "max_predictions": 10, "feedback_wait_s": 5.0, "max_pending": 10, **kwargs}
    with pytest.raises(ValueError, match=fragment):
        JoinBuffer(**args)


def test_zero_wait_and_zero_pending_are_allowed():
    j = JoinBuffer(ttl_s=1.0, max_predictions=1, feedback_wait_s=0.0, max_pending=0)
    assert (j.predictions, j.pending) == (0, 0)


# -- matching --------------------------------------------------------------------------------


def test_feedback_after_its_prediction_is_matched():
    j = buffer()
    p = pred("r-1", 100)
    assert j.add_prediction(p) == []
    assert j.predictions == 1
    assert j.add_feedback(fb("r-1", 130)) is p
    assert j.counts["matched"] == 1
    assert j.pending == 0
    assert j.drain_orphans() == []


def test_several_feedback_events_join_the_same_prediction():
    j = buffer()
    p = pred("r-1", 100)
    j.add_prediction(p)
    assert j.add_feedback(fb("r-1", 101, "thumbs_down")) is p
    assert j.add_feedback(fb("r-1", 102, "complaint")) is p
    assert j.counts["matched"] == 2
    assert j.predictions == 1


def test_feedback_only_joins_its_own_request():
    j = buffer()
    j.add_prediction(pred("r-1", 100))
    assert j.add_feedback(fb("r-2", 101)) is None
    assert j.pending == 1
    assert j.counts["matched"] == 0


def test_feedback_stamped_slightly_before_its_prediction_joins():
    j = buffer()
    p = pred("r-1", 100)
    j.add_prediction(p)
    assert j.add_feedback(fb("r-1", 99.5)) is p  # clock skew between producers


def test_feedback_before_its_prediction_waits_and_joins_when_it_arrives():
    j = buffer()
    early = fb("r-1", 100)
    assert j.add_feedback(early) is None
    assert j.pending == 1
    assert j.counts["matched_waiting"] == 0
    assert j.add_prediction(pred("r-1", 99)) == [early]
    assert j.counts["matched_waiting"] == 1
    assert j.counts["matched"] == 0
    assert j.pending == 0
    assert j.drain_orphans() == []


def test_all_waiting_feedback_of_a_request_joins_in_arrival_order():
    j = buffer()
    first, second = fb("r-1", 100, "thumbs_down"), fb("r-1", 101, "complaint")
    other = fb("r-2", 100)
    for event in (first, other, second):
        j.add_feedback(event)
    assert j.pending == 3
    assert j.add_prediction(pred("r-1", 99)) == [first, second]
    assert j.pending == 1
    assert j.counts["matched_waiting"] == 2


def test_waiting_feedback_too_late_for_its_prediction_becomes_an_orphan():
    j = buffer(ttl_s=60)
    in_time, too_late = fb("r-1", 150), fb("r-1", 170)
    j.add_feedback(in_time)
    j.add_feedback(too_late)
    assert j.add_prediction(pred("r-1", 100)) == [in_time]
    assert j.drain_orphans() == [too_late]
    assert j.counts["orphaned"] == 1
    assert j.pending == 0


# -- the TTL boundary --------------------------------------------------------------------------


@pytest.mark.parametrize(("ttl", "p_ts"), [(60.0, 100.0), (30.0, 1_763_800_000.25), (0.5, 1_763_800_000.0)])
def test_feedback_exactly_ttl_after_its_prediction_joins(ttl, p_ts):
    j = buffer(ttl_s=ttl)
    p = pred("r-1", p_ts)
    j.add_prediction(p)
    assert j.add_feedback(fb("r-1", p_ts + ttl)) is p


@pytest.mark.parametrize(("ttl", "p_ts"), [(60.0, 100.0), (30.0, 1_763_800_000.25), (0.5, 1_763_800_000.0)])
def test_feedback_just_past_the_ttl_does_not_join(ttl, p_ts):
    j = buffer(ttl_s=ttl)
    j.add_prediction(pred("r-1", p_ts))
    assert j.add_feedback(fb("r-1", p_ts + ttl + 0.001)) is None
    assert j.counts["matched"] == 0


def test_ttl_boundary_also_holds_for_waiting_feedback():
    j = buffer(ttl_s=60)
    at_ttl, past_ttl = fb("r-1", 160.0), fb("r-1", 160.001)
    j.add_feedback(at_ttl)
    j.add_feedback(past_ttl)
    assert j.add_prediction(pred("r-1", 100.0)) == [at_ttl]
    assert j.drain_orphans() == [past_ttl]


# -- bounds ---------------------------------------------------------------------------------------


def test_prediction_bound_evicts_the_oldest():
    j = buffer(max_predictions=3)
    preds = [pred(f"r-{i}", 100 + i) for i in range(4)]
    for p in preds:
        j.add_prediction(p)
    assert j.predictions == 3
    assert j.counts["evicted"] == 1
    assert j.add_feedback(fb("r-0", 110)) is None  # evicted: waits instead
    for p in preds[1:]:
        assert j.add_feedback(fb(p["request_id"], 110)) is p


def test_prediction_bound_keeps_evicting_in_arrival_order():
    j = buffer(max_predictions=2)
    for i in range(10):
        j.add_prediction(pred(f"r-{i}", 100 + i))
    assert j.predictions == 2
    assert j.counts["evicted"] == 8
    assert j.add_feedback(fb("r-7", 120)) is None
    assert j.add_feedback(fb("r-8", 120))["request_id"] == "r-8"
    assert j.add_feedback(fb("r-9", 120))["request_id"] == "r-9"


def test_a_repeated_prediction_replaces_without_evicting():
    j = buffer(max_predictions=2)
    j.add_prediction(pred("r-1", 100))
    j.add_prediction(pred("r-2", 101))
    again = pred("r-1", 102)  # at-least-once delivery: the same request again
    j.add_prediction(again)
    assert j.predictions == 2
    assert j.counts["evicted"] == 0
    assert j.add_feedback(fb("r-1", 110)) is again


def test_pending_bound_evicts_the_oldest_waiting_feedback_into_orphans():
    j = buffer(max_pending=2)
    waiting = [fb(f"r-{i}", 100 + i) for i in range(3)]
    for event in waiting:
        assert j.add_feedback(event) is None
    assert j.pending == 2
    assert j.counts["evicted_waiting"] == 1
    assert j.counts["orphaned"] == 1
    assert j.drain_orphans() == [waiting[0]]
    assert j.drain_orphans() == []  # drained means forgotten
    assert j.add_prediction(pred("r-0", 99)) == []
    assert j.add_prediction(pred("r-2", 99)) == [waiting[2]]


def test_pending_bound_evicts_all_waiting_feedback_of_the_oldest_request():
    j = buffer(max_pending=3)
    a1, a2, b1, c1 = fb("r-a", 100), fb("r-a", 101), fb("r-b", 102), fb("r-c", 103)
    for event in (a1, a2, b1, c1):
        j.add_feedback(event)
    assert j.drain_orphans() == [a1, a2]
    assert j.counts["evicted_waiting"] == 2
    assert j.pending == 2


def test_no_pending_room_makes_unmatched_feedback_an_orphan_at_once():
    j = buffer(max_pending=0)
    early = fb("r-1", 100)
    assert j.add_feedback(early) is None
    assert j.pending == 0
    assert j.drain_orphans() == [early]
    assert j.counts["orphaned"] == 1
    assert j.counts["evicted_waiting"] == 0


# -- expiry ---------------------------------------------------------------------------------------


def test_expire_drops_old_predictions():
    j = buffer(ttl_s=60)
    old, boundary, young = pred("r-1", 100), pred("r-2", 140), pred("r-3", 190)
    for p in (old, boundary, young):
        j.add_prediction(p)
    j.expire(200.0)  # horizon 140: r-1 is older, r-2 is at it and can still be joined at ts 200
    assert j.predictions == 2
    assert j.counts["expired"] == 1
    assert j.add_feedback(fb("r-1", 150)) is None
    assert j.add_feedback(fb("r-2", 200)) is boundary
    j.expire(250.0)  # horizon 190: r-2 goes, r-3 is at it and stays
    assert j.predictions == 1
    assert j.counts["expired"] == 2
    j.expire(250.001)
    assert j.predictions == 0
    assert j.counts["expired"] == 3


def test_expire_turns_old_waiting_feedback_into_orphans():
    j = buffer(feedback_wait_s=10)
    old, boundary, young = fb("r-1", 100), fb("r-2", 110), fb("r-3", 118)
    for event in (old, boundary, young):
        j.add_feedback(event)
    j.expire(120.0)  # horizon 110
    assert j.pending == 2
    assert j.drain_orphans() == [old]
    assert j.counts["orphaned"] == 1
    assert j.counts["evicted_waiting"] == 0
    assert j.counts["expired"] == 0  # `expired` counts predictions only
    assert j.add_prediction(pred("r-3", 117)) == [young]


def test_expire_orphans_every_waiting_feedback_of_a_request():
    j = buffer(feedback_wait_s=0)
    a1, a2 = fb("r-a", 100), fb("r-a", 105)
    j.add_feedback(a1)
    j.add_feedback(a2)
    j.expire(100.5)
    assert j.drain_orphans() == [a1, a2]
    assert j.pending == 0


def test_expire_does_not_touch_what_is_young():
    j = buffer(ttl_s=60, feedback_wait_s=10)
    j.add_prediction(pred("r-1", 100))
    j.add_feedback(fb("r-2", 100))
    j.expire(105.0)
    assert (j.predictions, j.pending) == (1, 1)
    assert j.drain_orphans() == []
    assert j.counts == {}


def test_drain_orphans_returns_oldest_first_across_causes():
    j = buffer(max_pending=1, feedback_wait_s=5)
    first, second, third = fb("r-1", 100), fb("r-2", 101), fb("r-3", 120)
    j.add_feedback(first)
    j.add_feedback(second)  # evicts first
    j.expire(110)  # orphans second
    j.add_feedback(third)
    j.expire(1_000)
    assert j.drain_orphans() == [first, second, third]


def test_drain_pending_hands_over_all_waiting_feedback():
    j = buffer()
    a, b = fb("r-1", 100), fb("r-2", 101)
    j.add_feedback(a)
    j.add_feedback(b)
    assert j.drain_pending() == [a, b]
    assert j.pending == 0
    assert j.counts["orphaned"] == 2
    assert j.drain_orphans() == []
    assert j.add_prediction(pred("r-1", 99)) == []


# -- a partition moving to another buffer ------------------------------------------------------------


def test_take_moves_exactly_one_shards_entries_and_put_joins_them_elsewhere():
    old, new = buffer(), buffer()
    old.add_prediction(pred("r-1", 100), shard=("t", 0))
    old.add_prediction(pred("r-2", 101), keep=b"kept", shard=("t", 1))
    waiting = fb("r-3", 102)
    old.add_feedback(waiting, shard=("f", 1))
    moved = old.take({("t", 1), ("f", 1)})
    assert (old.predictions, old.pending) == (1, 0)
    assert [len(moved[s]) for s in (("t", 1), ("f", 1))] == [1, 1]
    assert old.counts == {}, "a move is neither a join nor a loss"
    new.put(moved)
    assert len(new.entries({("t", 1)})[("t", 1)].predictions) == 1, "each entry keeps its shard"
    assert new.add_feedback(fb("r-2", 110)) == b"kept"
    assert [f["event_id"] for f in new.add_prediction(pred("r-3", 101))] == [waiting["event_id"]]
    assert old.add_feedback(fb("r-1", 130))["request_id"] == "r-1", "what stayed still joins"


def test_put_merges_in_time_order_so_expiry_still_stops_at_the_first_young_entry():
    j = buffer(ttl_s=60.0)
    j.add_prediction(pred("r-new", 200))
    other = buffer(ttl_s=60.0)
    other.add_prediction(pred("r-old", 100), shard="s")
    j.put(other.take({"s"}))
    j.advance(170)  # r-old is past the TTL, r-new is not: the old one must go though it came last
    assert j.predictions == 1 and j.counts["expired"] == 1


def test_put_keeps_the_bounds_and_counts_what_they_push_out():
    j = buffer(max_predictions=2, max_pending=1)
    j.add_prediction(pred("r-1", 100))
    other = buffer()
    for i, ts in enumerate((90, 101)):
        other.add_prediction(pred(f"m-{i}", ts), shard="s")
    a, b = fb("x-1", 95), fb("x-2", 96)
    other.add_feedback(a, shard="s")
    other.add_feedback(b, shard="s")
    j.put(other.take({"s"}))
    assert j.predictions == 2 and j.counts["evicted"] == 1  # the oldest (m-0, at 90) went
    assert j.add_feedback(fb("m-0", 91)) is None
    assert j.pending == 1 and j.counts["evicted_waiting"] == 2  # x-1 first, then m-0's for the bound
    assert j.drain_orphans()[:1] == [a]


def test_put_of_nothing_leaves_the_buffer_as_it_was():
    j, same = buffer(ttl_s=60.0), buffer(ttl_s=60.0)
    for b in (j, same):
        b.add_prediction(pred("r-late", 200), shard="s")
        b.add_prediction(pred("r-early", 100), shard="s")  # out of order: it waits behind r-late
    j.put({"s": JoinEntries(), "t": JoinEntries()})
    for b in (j, same):
        b.advance(230)
    assert (j.predictions, j.counts) == (same.predictions, same.counts)


def test_entries_copy_and_give_up_flags_the_waiting_feedback():
    j = buffer()
    j.add_prediction(pred("r-1", 100), shard="s")
    f = fb("r-9", 101)
    j.add_feedback(f, shard="s")
    copied = j.entries({"s", "unknown"})
    assert (len(copied["s"]), len(copied["unknown"])) == (2, 0)
    assert (j.predictions, j.pending) == (1, 1), "entries() keeps them"
    j.give_up(j.take({"s"})["s"])
    assert j.drain_orphans() == [f] and j.counts["orphaned"] == 1


# -- what is ignored ------------------------------------------------------------------------------


@pytest.mark.parametrize("event", [
    {"event_id": "e-1", "type": "prediction", "ts": 100.0},
    {"event_id": "e-2", "type": "prediction", "ts": 100.0, "request_id": None},
])
def test_prediction_without_request_id_is_ignored(event):
    j = buffer(max_predictions=1)
    j.add_prediction(pred("r-1", 99))
    assert j.add_prediction(event) == []
    assert j.predictions == 1
    assert j.counts["evicted"] == 0


# -- regressions ---------------------------------------------------------------------------------------


def _replay(events, expire_after, *, ttl_s=60.0, feedback_wait_s=5.0):
    """Feed events in order, advancing event time; also call expire() at the given positions
    (where a runner's batches might end): that must change nothing."""
    j = buffer(ttl_s=ttl_s, feedback_wait_s=feedback_wait_s)
    joined = []
    for i, event in enumerate(events):
        j.advance(event["ts"])
        if event["type"] == "feedback":
            if j.add_feedback(event) is not None:
                joined.append(event["event_id"])
        else:
            joined.extend(f["event_id"] for f in j.add_prediction(event))
        if i in expire_after:
            j.expire(j.watermark)
    return joined


@pytest.mark.parametrize(("other_ts", "own_ts", "joins"), [(104, 103, True), (108, 103, False), (104, 110, False)])
def test_join_does_not_depend_on_where_batches_end(other_ts, own_ts, joins):
    # The feedback (100) waits; another prediction moves event time on; then the
    # feedback's own prediction arrives. It joins if it comes before event time passes
    # feedback_wait_s (5) after the feedback, and is stamped within it; wherever batches end.
    events = [fb("r-1", 100), pred("r-2", other_ts), pred("r-1", own_ts)]
    one_batch = _replay(events, expire_after=set())
    assert one_batch == ([events[0]["event_id"]] if joins else [])
    for ends in ({0}, {1}, {0, 1}):
        assert _replay(events, expire_after=ends) == one_batch


# -- property: nothing is lost ------------------------------------------------------------------

_ops = st.lists(
    st.tuples(st.sampled_from(["pred", "fb", "fb", "expire", "drain"]), st.integers(0, 6),
              st.floats(0, 200, allow_nan=False)),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=_ops, ttl_s=st.floats(0.5, 100), wait_s=st.floats(0, 100), max_predictions=st.integers(1, 5),
       max_pending=st.integers(0, 5))
def test_every_feedback_is_accounted_for_exactly_once(ops, ttl_s, wait_s, max_predictions, max_pending):
    j = JoinBuffer(ttl_s=ttl_s, max_predictions=max_predictions, feedback_wait_s=wait_s, max_pending=max_pending)
    sent: dict[str, dict] = {}
    joined: list[str] = []
    orphans: list[str] = []
    watermark = 0.0

    def check_join(feedback, prediction):
        assert feedback["request_id"] == prediction["request_id"]
        assert feedback["ts"] - prediction["ts"] <= ttl_s

    for op, rid_n, ts in ops:
        rid = f"r-{rid_n}"
        if op == "pred":
            watermark = max(watermark, ts)
            p = pred(rid, ts)
            for feedback in j.add_prediction(p):
                check_join(feedback, p)
                joined.append(feedback["event_id"])
        elif op == "fb":
            watermark = max(watermark, ts)
            event = fb(rid, ts)
            sent[event["event_id"]] = event
            p = j.add_feedback(event)
            if p is not None:
                check_join(event, p)
                joined.append(event["event_id"])
        elif op == "expire":
            j.expire(watermark)
        else:
            orphans.extend(o["event_id"] for o in j.drain_orphans())
        assert j.predictions <= max_predictions
        assert j.pending <= max_pending
        # nothing lost so far: joined, already drained, waiting to be drained, or pending
        waiting_orphans = j.counts["orphaned"] - len(orphans)
        assert len(sent) == len(joined) + len(orphans) + waiting_orphans + j.pending

    j.expire(watermark + 1e9)
    orphans.extend(o["event_id"] for o in j.drain_orphans())
    assert j.pending == 0
    assert sorted(joined + orphans) == sorted(sent)  # each exactly once
    assert len(set(joined + orphans)) == len(joined) + len(orphans)
    assert j.counts["matched"] + j.counts["matched_waiting"] == len(joined)
    assert j.counts["orphaned"] == len(orphans)
    assert j.counts["evicted_waiting"] <= j.counts["orphaned"]

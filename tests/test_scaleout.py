"""Scale-out on the real broker: workers in one consumer group share the partitions,
and nothing is lost or counted twice while a worker joins or leaves.

A partition moves only after its owner has committed what it processed (the
rebalance waits for the batch in hand: collectors/kafka.py), so the workers' event
counts add up to exactly what was produced, and the group's committed offsets add up
to what was produced.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.helpers import DaemonThread, committed_offsets, make_settings, produce, wait_for

CHUNKS = 30
PER_CHUNK = 400  # predictions; every 20th also gets a thumbs-down


def _chunk(index: int) -> tuple[list[dict], list[dict]]:
    now = time.time()
    predictions, feedback = [], []
    for i in range(index * PER_CHUNK, (index + 1) * PER_CHUNK):
        predictions.append({"event_id": f"p-{i}", "type": "prediction", "ts": now, "model": "m",
                            "model_version": "v1", "request_id": f"r-{i}",
                            "features": {"x": float(i % 97), "c": "abc"[i % 3]}, "prediction": {"score": 0.5},
                            "latency_ms": 20.0})
        if i % 20 == 0:
            feedback.append({"event_id": f"f-{i}", "type": "feedback", "ts": now, "model": "m",
                             "request_id": f"r-{i}", "kind": "thumbs_down"})
    return predictions, feedback


def test_a_worker_joins_and_another_leaves_without_loss_or_double_counting(broker: str, tmp_path: Path) -> None:
    settings = make_settings(broker, tmp_path, kafka={"topic_partitions": 4})
    topics = [settings.topics.tracking, settings.topics.feedback]
    first = DaemonThread(settings).start()
    second: DaemonThread | None = None
    produced = {"events": 0, "negatives": 0}
    joined, left = threading.Event(), threading.Event()

    def producer() -> None:
        for index in range(CHUNKS):
            predictions, feedback = _chunk(index)
            produce(broker, settings.topics.tracking, predictions)
            produce(broker, settings.topics.feedback, feedback)
            produced["events"] += len(predictions) + len(feedback)
            produced["negatives"] += len(feedback)
            if index == CHUNKS // 3:
                joined.wait(60)  # keep producing while the group rebalances, but not past it
            if index == 2 * CHUNKS // 3:
                left.wait(60)

    def handled(daemon: DaemonThread | None) -> float:
        return daemon.service.metrics.total("model_monitor_events_total") if daemon else 0.0

    thread = threading.Thread(target=producer)
    thread.start()
    try:
        wait_for(lambda: produced["events"] > CHUNKS // 3 * PER_CHUNK, 60, "a third of the events")
        second = DaemonThread(settings).start()  # joins the group: partitions move while events flow
        wait_for(lambda: first.service.source and second.service.source and first.service.source.assigned
                 and second.service.source.assigned, 60, "both workers to own partitions")
        both = {tp for d in (first, second) for tp in d.service.source.assigned}
        assert len(both) == 8 and not first.service.source.assigned & second.service.source.assigned
        joined.set()
        wait_for(lambda: produced["events"] > 2 * CHUNKS // 3 * PER_CHUNK, 60, "two thirds of the events")
        assert first.stop() == 0  # leaves the group: its partitions move to the second
        left.set()
        thread.join(120)
        total = produced["events"]
        wait_for(lambda: handled(first) + handled(second) >= total, 60, "every event to be handled")
        time.sleep(1.0)  # anything handled twice would show up now
        assert handled(first) + handled(second) == total
        assert handled(first) > 0 and handled(second) > 0
        # Offsets start at 0 and have no gaps, so the committed offsets of a topic add up to
        # what was produced to it. (The broker's ListOffsets can lag here: Tansu's end
        # offsets came out short of what had been acknowledged.)
        committed = committed_offsets(broker, settings.kafka.group_id, topics)
        by_topic = {topic: sum(n for (t, _), n in committed.items() if t == topic) for topic in topics}
        assert by_topic == {settings.topics.tracking: total - produced["negatives"],
                            settings.topics.feedback: produced["negatives"]}
        # The join moved with the partitions (saved at the revocation or the stop, taken
        # by the new owner): every thumbs-down found its prediction, even when the member
        # that read the prediction had given the partition away before the feedback came.
        def joins(outcome: str) -> float:
            return sum(d.service.metrics.total("model_monitor_join_total", outcome=outcome) for d in (first, second))

        wait_for(lambda: joins("matched") + joins("matched_waiting") == produced["negatives"], 30,
                 "every thumbs-down to join its prediction")
        assert joins("orphaned") == 0
        assert second.service.metrics.total("model_monitor_join_moves_total", outcome="taken") > 0
        assert second.stop() == 0
        engine = create_engine(settings.store.url)
        with engine.connect() as db:
            stored = db.execute(text("select count(*), count(distinct event_id) from mm_flagged_samples "
                                     "where reason = 'thumbs_down'")).one()
            moved = db.execute(text("select count(*) from mm_join_states")).scalar()
        engine.dispose()
        assert tuple(stored) == (produced["negatives"], produced["negatives"])
        assert moved == 8, "the last owner saved the join of every partition at its stop"
    finally:
        joined.set()
        left.set()
        thread.join(120)
        first.stop()
        if second is not None:
            second.stop()

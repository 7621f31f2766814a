"""KafkaSource on the real broker: what a batch may hold around a rebalance."""

from __future__ import annotations

import asyncio
import time
import uuid

from helpers import produce

from collectors.kafka import KafkaSource, ensure_topics

SEEK_TO = 10


def test_nothing_of_a_partition_is_fetched_while_its_assignment_hook_runs(broker):
    # The daemon's hook reads the store and may seek (a restored checkpoint) and take the
    # join over: a batch fetched from the new partitions meanwhile would come from where
    # reading stood before the seek, and be processed beside the half-merged join.
    tag = uuid.uuid4().hex[:8]
    topic = f"src-{tag}"
    asyncio.run(ensure_topics(broker, {topic: 2}, 10.0, replication=1))
    produce(broker, topic, [{"event_id": f"e-{i}", "request_id": f"r-{i}"} for i in range(200)])
    hook: dict[str, float] = {}
    fetched: list[tuple[float, int]] = []  # (when the fetch returned, messages)
    processed: list[int] = []  # offsets handed to the batch

    async def scenario() -> None:
        source = KafkaSource([topic], broker, f"g-{tag}", max_records=50, fetch_timeout_ms=50,
                             session_timeout_ms=6000, rebalance_timeout_ms=5000, heartbeat_interval_ms=1000)

        async def on_assigned(new: set) -> None:
            hook["start"] = time.monotonic()
            await asyncio.sleep(1.5)  # the store is slow today
            source.seek({(tp.topic, tp.partition): SEEK_TO for tp in new})  # as a restored checkpoint does
            hook["end"] = time.monotonic()

        source.on_assigned = on_assigned
        await source.start(10.0)
        try:
            deadline = time.monotonic() + 30
            while len(processed) < 200 - 2 * SEEK_TO and time.monotonic() < deadline:
                messages = await source.fetch()
                if messages:
                    fetched.append((time.monotonic(), len(messages)))
                async with source.batch_lock:  # as the daemon's main loop does
                    processed.extend(m.offset for m in source.owned(messages))
        finally:
            await source.stop()

    asyncio.run(scenario())
    assert "end" in hook
    during = [n for when, n in fetched if when < hook["end"]]
    assert during == [], f"{sum(during)} messages were fetched while the assignment hook ran"
    assert len(processed) == 200 - 2 * SEEK_TO
    assert min(processed) == SEEK_TO, "nothing from before the hook's seek"

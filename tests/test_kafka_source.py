"""KafkaSource on the real broker: what a batch may hold around a rebalance."""

from __future__ import annotations

import asyncio
import time
import uuid

from helpers import produce

from collectors.kafka import KafkaSource, ensure_topics


def test_nothing_of_a_partition_is_fetched_while_its_assignment_hook_runs(broker):
    # The daemon's hook reads the store and may seek (a restored checkpoint, a moved join):
    # a batch fetched from the new partitions meanwhile would be processed beside it,
    # from where reading stood before the seek, with the join half merged.
    tag = uuid.uuid4().hex[:8]
    topic = f"src-{tag}"
    asyncio.run(ensure_topics(broker, {topic: 2}, 10.0, replication=1))
    produce(broker, topic, [{"event_id": f"e-{i}", "request_id": f"r-{i}"} for i in range(200)])
    hook: dict[str, float] = {}
    fetched: list[tuple[float, int]] = []  # (when, messages)

    async def scenario() -> None:
        source = KafkaSource([topic], broker, f"g-{tag}", max_records=50, fetch_timeout_ms=50,
                             session_timeout_ms=6000, rebalance_timeout_ms=5000, heartbeat_interval_ms=1000)

        async def on_assigned(new: set) -> None:
            hook["start"] = time.monotonic()
            await asyncio.sleep(1.5)  # the store is slow today
            hook["end"] = time.monotonic()

        source.on_assigned = on_assigned
        await source.start(10.0)
        try:
            deadline = time.monotonic() + 30
            while sum(n for _, n in fetched) < 200 and time.monotonic() < deadline:
                messages = await source.fetch()
                async with source.batch_lock:  # as the daemon's main loop does
                    messages = source.owned(messages)
                    if messages:
                        fetched.append((time.monotonic(), len(messages)))
        finally:
            await source.stop()

    asyncio.run(scenario())
    assert sum(n for _, n in fetched) == 200
    assert "end" in hook
    early = [n for when, n in fetched if when < hook["end"]]
    assert early == [], f"{sum(early)} messages were handed out while the assignment hook ran"

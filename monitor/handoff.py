"""State handoff: the pipeline's state across restarts and rebalances, through the store.

``StateHandoff`` is shaped like a rebalance listener. The daemon calls it:

- ``on_revoked(partitions)``: partitions are leaving (between batches, all committed):
  what the join holds from them is saved with the offset it covers, for their next
  owner;
- ``on_assigned(partitions)``: partitions arrived, before anything is fetched from them:
  at the first assignment the group's saved state is restored (``restore``), then the
  join entries saved for exactly where this member reads each partition from are
  taken over;
- ``save()``: every ``service.checkpoint_interval_s`` between batches, and at a graceful
  stop: the pipeline's state (``Pipeline.snapshot``: plain data, no secret) with the
  offsets it covers, one row per group member, and the join by partition.

It needs a source that says what it holds (``PartitionSource``: the Kafka consumer, or a
fake one in a test) and a ``HandoffStore`` (its own tables, ``mm_checkpoints`` and
``mm_join_states``, in the store's database). Outcomes are counted on
``model_monitor_checkpoints_total`` and ``model_monitor_join_moves_total``.

Extending it: a new part of the state that must move with a partition goes into
``Pipeline.join_entries``/``add_join``; one that belongs to the member goes into
``Pipeline.snapshot``/``restore``. Both are written by ``monitor.state_format``, so a
new class in them must be one of the classes that format may build.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import SQLAlchemyError

from common.errors import MonitorError
from monitor.config import Settings
from monitor.metrics import CHECKPOINT_BYTES, CHECKPOINTS, JOIN_MOVES, Metrics
from monitor.pipeline import Pipeline, settings_fingerprint
from monitor.state_format import StateFormatError
from retrain.store import read_rows, translate_error

log = logging.getLogger(__name__)
T = TypeVar("T")
_Json = JSON().with_variant(postgresql.JSONB(), "postgresql")
metadata = MetaData()

#: The pipeline's state (detectors; the join is saved by partition, below) with the input
#: offsets it has seen up to: the latest of each consumer-group member, keyed by the
#: partitions it held.
checkpoints_table = Table(
    "mm_checkpoints", metadata,
    Column("group_id", String(256), primary_key=True),
    Column("partitions_key", String(64), primary_key=True),  # of the sorted (topic, partition) pairs
    Column("partitions", _Json, nullable=False),  # [[topic, partition, next offset], ...]
    Column("fingerprint", String(64), nullable=False),  # of the settings the state was built with
    Column("state", LargeBinary, nullable=False),
    Column("saved_at", Float, nullable=False),
)
#: What a member's join buffer held from one partition and the offset it covers: whoever
#: reads the partition next, from that offset, takes it over.
join_states_table = Table(
    "mm_join_states", metadata,
    Column("group_id", String(256), primary_key=True),
    Column("topic", String(256), primary_key=True),
    Column("partition_id", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    Column("state", LargeBinary, nullable=False),
    Column("saved_at", Float, nullable=False),
)


def partitions_key(partitions: Sequence[tuple[str, int, int]]) -> str:
    """Names a set of partitions (offsets aside), whatever their order.

    >>> partitions_key([("t", 1, 5), ("t", 0, 9)]) == partitions_key([("t", 0, 0), ("t", 1, 0)])
    True
    """
    pairs = sorted({f"{topic}\x00{partition}" for topic, partition, _ in partitions})
    return hashlib.sha256("\x01".join(pairs).encode()).hexdigest()[:32]


class HandoffStore:
    """The handoff's tables, in the store's database (the same engine as the samples)."""

    def __init__(self, engine: Engine, url: str, *, create: bool = True) -> None:
        self.engine = engine
        self.url = url
        if create:
            try:
                with engine.begin() as conn:
                    metadata.create_all(conn)
            except SQLAlchemyError as exc:
                raise translate_error(exc, url) from exc

    def _rows(self, query: Any) -> list[dict[str, Any]]:
        return read_rows(self.engine, self.url, query)

    def put_checkpoint(self, group_id: str, partitions: list[tuple[str, int, int]], fingerprint: str,
                       state: bytes) -> None:
        """Save a member's checkpoint; drop the group's older ones that held any of these
        partitions (they are this member's now)."""
        self.put_state(group_id, partitions, fingerprint, state, [])

    def put_state(self, group_id: str, partitions: list[tuple[str, int, int]], fingerprint: str, state: bytes,
                  joins: Sequence[tuple[str, int, int, bytes]]) -> None:
        """Save a member's checkpoint and the join of each of its partitions in one
        transaction (``put_checkpoint`` and ``put_join_states`` together)."""
        key = partitions_key(partitions)
        mine = {(t, p) for t, p, _ in partitions}
        row = {"group_id": group_id, "partitions_key": key, "partitions": [list(p) for p in partitions],
               "fingerprint": fingerprint, "state": state, "saved_at": time.time()}
        t = checkpoints_table
        try:
            with self.engine.begin() as conn:
                # Write first: on SQLite a transaction that reads and then writes fails at once
                # (not after the busy timeout) when another connection wrote in between.
                conn.execute(delete(t).where(t.c.group_id == group_id, t.c.partitions_key == key))
                others = conn.execute(select(t.c.partitions_key, t.c.partitions).where(t.c.group_id == group_id))
                stale = [k for k, held in others if mine & {(tp, p) for tp, p, _ in held}]
                if stale:
                    conn.execute(delete(t).where(t.c.group_id == group_id, t.c.partitions_key.in_(stale)))
                conn.execute(insert(t), [row])
                self._put_joins(conn, group_id, joins)
        except SQLAlchemyError as exc:
            raise translate_error(exc, self.url) from exc

    def checkpoint(self, group_id: str, partitions: set[tuple[str, int]]) -> dict[str, Any] | None:
        """The group's checkpoint of exactly these (topic, partition) pairs, or None;
        ``partitions`` in it are (topic, partition, next offset)."""
        t = checkpoints_table
        key = partitions_key([(topic, p, 0) for topic, p in partitions])
        rows = self._rows(select(t).where(t.c.group_id == group_id, t.c.partitions_key == key))
        if not rows:
            return None
        row = rows[0]
        row["partitions"] = [(str(topic), int(p), int(o)) for topic, p, o in row["partitions"]]
        return row

    def latest_checkpoint(self, group_id: str) -> dict[str, Any] | None:
        """The group's most recently saved checkpoint, whatever partitions it covers."""
        t = checkpoints_table
        rows = self._rows(select(t).where(t.c.group_id == group_id).order_by(t.c.saved_at.desc()).limit(1))
        return rows[0] if rows else None

    def put_join_states(self, group_id: str, states: Sequence[tuple[str, int, int, bytes]]) -> None:
        """Save the join of each (topic, partition, next offset, state), replacing the
        group's earlier one for that partition."""
        if not states:
            return
        try:
            with self.engine.begin() as conn:
                self._put_joins(conn, group_id, states)
        except SQLAlchemyError as exc:
            raise translate_error(exc, self.url) from exc

    @staticmethod
    def _put_joins(conn: Connection, group_id: str, states: Sequence[tuple[str, int, int, bytes]]) -> None:
        if not states:
            return
        t = join_states_table
        now = time.time()
        for topic, partition, _, _ in states:
            conn.execute(delete(t).where(t.c.group_id == group_id, t.c.topic == topic, t.c.partition_id == partition))
        conn.execute(insert(t), [{"group_id": group_id, "topic": topic, "partition_id": partition,
                                  "next_offset": offset, "state": state, "saved_at": now}
                                 for topic, partition, offset, state in states])

    def join_states(self, group_id: str,
                    partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, bytes]]:
        """The group's saved join of each of these (topic, partition) that has one:
        (next offset, state)."""
        t = join_states_table
        wanted = set(partitions)
        if not wanted:
            return {}
        rows = self._rows(select(t.c.topic, t.c.partition_id, t.c.next_offset, t.c.state).where(
            t.c.group_id == group_id, t.c.topic.in_(sorted({topic for topic, _ in wanted}))))
        return {(r["topic"], r["partition_id"]): (int(r["next_offset"]), bytes(r["state"])) for r in rows
                if (r["topic"], r["partition_id"]) in wanted}


class Partition(Protocol):
    """A (topic, partition) pair as the consumer names it (aiokafka's ``TopicPartition``)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...


class PartitionSource(Protocol):
    """What the handoff needs of the consumer (``collectors.kafka.KafkaSource``)."""

    @property
    def assigned(self) -> Any:
        """The partitions held now."""

    @property
    def committed(self) -> Mapping[Any, int]:
        """The offset this member last committed for each partition it holds."""

    async def position(self, tp: Any) -> int: ...

    async def positions(self) -> list[tuple[str, int, int]]: ...

    def seek(self, offsets: dict[tuple[str, int], int]) -> None: ...


class StateHandoff:
    """Saves and takes over the pipeline's state and join (see the module docstring)."""

    def __init__(self, pipeline: Pipeline, store: HandoffStore, source: PartitionSource, settings: Settings,
                 metrics: Metrics, blocking: Callable[..., Awaitable[Any]]) -> None:
        self.pipeline = pipeline
        self.store = store
        self.source = source
        self.settings = settings
        self.metrics = metrics
        self._blocking = blocking
        self._restore_tried = False  # a checkpoint is looked for at the first assignment only
        # Partitions revoked at the last rebalance, with the offset their join state was
        # saved at: still in the join until the assignment says whether they come back.
        self._handed_off: dict[Any, int] = {}
        self._read_from: dict[Any, int] = {}  # where reading a partition began, at its assignment
        #: Monotonic time of the next periodic save.
        self.due = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.settings.service.checkpoint_interval_s)

    @property
    def group(self) -> str:
        return self.settings.kafka.group_id

    async def on_assigned(self, assigned: set[Any]) -> None:
        # No batch is in hand here, nor fetched from these partitions until this returns:
        # every rebalance revokes all partitions first (aiokafka's eager protocol), a batch
        # fetched before leaves them to the next fetch, and the source pauses the new ones
        # and holds the batch lock while this runs.
        await self.restore()
        await self._take_join(assigned)

    async def on_revoked(self, revoked: set[Any]) -> None:
        """Partitions are leaving (between batches, all committed): save what the join holds
        from them, with the offset it covers, for their next owner."""
        if not self.enabled:
            return  # not saved: their entries stay here until they expire
        states = self.pipeline.join_entries({(tp.topic, tp.partition) for tp in revoked})
        rows = []
        for tp in revoked:
            # What this member committed, or (nothing read here since) where it began reading.
            offset = self.source.committed[tp] if tp in self.source.committed else self._read_from.get(tp, -1)
            if offset >= 0:
                rows.append((tp.topic, tp.partition, offset, states[(tp.topic, tp.partition)]))
                self._handed_off[tp] = offset
        try:
            await self._blocking(self.store.put_join_states, self.group, rows)
        except MonitorError as exc:  # the rebalance cannot wait for the store: the next owner starts empty
            log.error("could not save the join of revoked partitions %s (%s): their waiting feedback is "
                      "flagged unjoined here", sorted(_names(revoked)), exc)
            self._count_join_moves("failed", len(revoked))
            self.pipeline.drop_join(_names(revoked), flag_waiting=True)
            for tp in revoked:
                self._handed_off.pop(tp, None)
            return
        self._count_join_moves("saved", len(rows))

    async def _take_join(self, assigned: set[Any]) -> None:
        """Take over the join state each partition's last owner saved, if it covers exactly
        up to where this member reads it from; forget what the join still holds from
        partitions that went elsewhere."""
        handed_off, self._handed_off = self._handed_off, {}
        gone = [tp for tp in handed_off if tp not in assigned]
        if gone:
            self.pipeline.drop_join(_names(gone))
        if not self.enabled:
            return
        positions = {tp: await self.source.position(tp) for tp in assigned}
        self._read_from = dict(positions)
        stale = [tp for tp, offset in handed_off.items() if tp in assigned and offset != positions[tp]]
        if stale:  # it came back after someone else read on: theirs is the right one
            self.pipeline.drop_join(_names(stale))
        wanted = [tp for tp in assigned if tp not in handed_off or tp in stale]
        try:
            saved = await self._blocking(self.store.join_states, self.group, sorted(_names(wanted)))
        except MonitorError as exc:  # the rebalance cannot wait for the store either
            log.error("could not read the saved join of partitions %s (%s): it starts empty",
                      sorted(_names(wanted)), exc)
            self._count_join_moves("failed", len(wanted))
            return
        moved = {}
        for tp in wanted:
            offset, state = saved.get((tp.topic, tp.partition), (-1, b""))
            if offset < 0:
                continue
            if offset != positions[tp]:
                log.info("the saved join of %s[%d] covers up to offset %d, but reading starts at %d: not used",
                         tp.topic, tp.partition, offset, positions[tp])
                self._count_join_moves("stale", 1)
                continue
            try:
                moved[(tp.topic, tp.partition)] = self.pipeline.load_join((tp.topic, tp.partition), state)
            except ValueError as exc:
                log.warning("%s", exc)
                self._count_join_moves("stale", 1)
        taken = self.pipeline.add_join(moved)  # one merge, however many partitions came
        self._count_join_moves("taken", len(moved))
        if taken:
            log.info("took over %d join entries of partitions %s", taken, sorted(moved))

    async def restore(self) -> None:
        """At the first assignment: take over the state this group saved for exactly these
        partitions and read them again from where it was saved; failing that, take the
        detectors of the group's latest state (see ``Pipeline.restore``)."""
        s = self.settings
        if self._restore_tried or not self.enabled or self.pipeline.position:
            return
        self._restore_tried = True
        assigned = set(_names(self.source.assigned))
        checkpoint = await self._blocking(self.store.checkpoint, self.group, assigned)
        exact = checkpoint is not None
        if checkpoint is None:  # another member's, or these partitions' before the group changed
            checkpoint = await self._blocking(self.store.latest_checkpoint, self.group)
            if checkpoint is None:
                return
        if checkpoint["fingerprint"] != settings_fingerprint(s):
            log.warning("the saved state of group %s was built with other [collect], [redact], [join], [detect] "
                        "or [slo] settings, or by an older model-monitor: starting afresh", self.group)
            self._count_checkpoint("discarded")
            return
        age = time.time() - checkpoint["saved_at"]
        try:
            self.pipeline.restore(checkpoint["state"], detectors_only=not exact)  # all read, or nothing taken
        except StateFormatError as exc:  # damaged, or written by something else: learn afresh
            log.error("the saved state of group %s cannot be read (%s): starting afresh", self.group, exc)
            self._count_checkpoint("discarded")
            return
        if not exact:
            self._count_checkpoint("seeded")
            log.info("no saved state for exactly partitions %s: took the detectors (%d models) of the group's "
                     "latest, saved %.0fs ago (the join comes by partition)", sorted(assigned),
                     len(self.pipeline.models), age)
            return
        self.source.seek({(t, p): o for t, p, o in checkpoint["partitions"] if o >= 0})
        self._count_checkpoint("restored")
        log.info("restored the pipeline's state saved %.0fs ago (%d models, stream position %d)",
                 age, len(self.pipeline.models), self.pipeline.position)

    async def save(self) -> None:
        """Save the pipeline's state with the offsets of everything it has taken in (all of
        it committed: this runs between batches)."""
        s = self.settings
        if not self.source.assigned:  # nothing to resume: the state goes with the partitions it came from
            return
        positions = await self.source.positions()
        unknown = [(t, p) for t, p, offset in positions if offset < 0]
        if unknown:
            # A state whose join does not cover every partition it was read from would be
            # restored without the feedback that waited in the rest: try again next time.
            log.warning("not saving the pipeline's state now: no position for %s", unknown)
            self.due = time.monotonic() + min(5.0, s.service.checkpoint_interval_s)
            return
        blob = self.pipeline.snapshot()
        joins = self.pipeline.join_entries([(t, p) for t, p, _ in positions])
        # One transaction: a state and the joins it goes with are saved together or not at
        # all (a kill between two writes left a new state beside an old join, whose waiting
        # feedback was then lost).
        await self._blocking(self.store.put_state, self.group, positions, settings_fingerprint(s), blob,
                             [(t, p, offset, joins[(t, p)]) for t, p, offset in positions])
        self.due = time.monotonic() + s.service.checkpoint_interval_s
        self._count_checkpoint("saved")
        with self.metrics.lock:
            self.metrics.set(CHECKPOINT_BYTES, (), float(len(blob)))

    def _count_checkpoint(self, outcome: str) -> None:
        with self.metrics.lock:
            self.metrics.inc(CHECKPOINTS, (outcome,))

    def _count_join_moves(self, outcome: str, partitions: int) -> None:
        if partitions:
            with self.metrics.lock:
                self.metrics.inc(JOIN_MOVES, (outcome,), partitions)


def _names(partitions: Any) -> list[tuple[str, int]]:
    return [(tp.topic, tp.partition) for tp in partitions]

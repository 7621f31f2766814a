"""The flagged-sample store: SQLAlchemy Core on SQLite (default) or PostgreSQL.

Writes are idempotent: a sample is keyed by its ``event_id``, an alert by its
``Alert.key`` and a retrain trigger by its ``trigger_key``, so a batch processed
twice (after a crash before its offsets were committed), or a trigger raised by two
daemons, is stored once. Delivery is tracked per sink (``queue``: the Kafka topic;
``webhook``): a push claims undelivered rows in a transaction (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so daemons sharing one database never push the same row at
once) and marks them delivered to that sink only after it acknowledged them.

Tables are prefixed ``mm_`` so the store can live in a shared database.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DisconnectionError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)

from collectors.contract import Alert, FlaggedSample
from collectors.errors import ConfigError, StoreFailed, StoreSchemaError, StoreUnavailable

SCHEMA_VERSION = "1"
metadata = MetaData()
_Json = JSON().with_variant(postgresql.JSONB(), "postgresql")

samples_table = Table(
    "mm_flagged_samples", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(256), nullable=False, unique=True),
    Column("model", String(256), nullable=False),
    Column("model_version", String(256)),
    Column("reason", String(64), nullable=False),
    Column("detail", Text),
    Column("event_ts", Float, nullable=False),
    Column("flagged_at", Float, nullable=False),
    Column("payload", _Json, nullable=False),
    Column("pushed_at", Float),  # delivered to the queue topic
    Column("webhook_at", Float),  # delivered to the webhook
    Index("ix_mm_flagged_samples_unpushed", "pushed_at", "id"),
    Index("ix_mm_flagged_samples_unhooked", "webhook_at", "id"),
    Index("ix_mm_flagged_samples_flagged", "flagged_at", "model"),
)
alerts_table = Table(
    "mm_alerts", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("alert_key", String(40), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("model", String(256), nullable=False),
    Column("model_version", String(256)),
    Column("feature", Text),
    Column("detector", String(64), nullable=False),
    Column("score", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("at_event", BigInteger, nullable=False),
    Column("ts", Float, nullable=False),
    Column("event_id", String(256)),
    Column("created_at", Float, nullable=False),
)
triggers_table = Table(
    "mm_retrain_triggers", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("trigger_key", String(600), nullable=False, unique=True),
    Column("model", String(256), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("detail", _Json),
    Column("created_at", Float, nullable=False),
    Column("pushed_at", Float),
    Column("webhook_at", Float),
)
#: Which column records delivery to which sink.
SINKS = {"queue": "pushed_at", "webhook": "webhook_at"}
baselines_table = Table(
    "mm_baselines", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("model", String(256), nullable=False),
    Column("model_version", String(256), nullable=False),  # "" when the events had none
    Column("feature", String(300), nullable=False),
    Column("rows", BigInteger, nullable=False),  # values seen; `values` is a sample of them
    Column("values", _Json, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("model", "model_version", "feature", name="uq_mm_baselines"),
)
#: The pipeline's state (detectors; the join is saved by partition, below) with the input
#: offsets it has seen up to:
#: the latest of each consumer-group member, keyed by the partitions it held (see
#: Service._save_checkpoint).
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
#: reads the partition next, from that offset, takes it over (see Service._take_join).
join_states_table = Table(
    "mm_join_states", metadata,
    Column("group_id", String(256), primary_key=True),
    Column("topic", String(256), primary_key=True),
    Column("partition_id", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    Column("state", LargeBinary, nullable=False),
    Column("saved_at", Float, nullable=False),
)

meta_table = Table(
    "mm_meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)


def partitions_key(partitions: Sequence[tuple[str, int, int]]) -> str:
    """Names a set of partitions (offsets aside), whatever their order.

    >>> partitions_key([("t", 1, 5), ("t", 0, 9)]) == partitions_key([("t", 0, 0), ("t", 1, 0)])
    True
    """
    pairs = sorted({f"{topic}\x00{partition}" for topic, partition, _ in partitions})
    return hashlib.sha256("\x01".join(pairs).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class StoredSample:
    """A flagged sample as stored: the sample, its row id, and when it was flagged and pushed."""

    id: int
    sample: FlaggedSample
    flagged_at: float
    pushed_at: float | None

    @classmethod
    def from_row(cls, row: Any) -> StoredSample:
        m = row._mapping
        sample = FlaggedSample(m["event_id"], m["model"], m["model_version"], m["reason"], m["detail"],
                               m["event_ts"], m["payload"])
        return cls(m["id"], sample, m["flagged_at"], m["pushed_at"])

    def message(self) -> dict[str, Any]:
        """The retraining-queue record for this sample."""
        return {"type": "sample", **asdict(self.sample), "flagged_at": self.flagged_at}


@dataclass(frozen=True)
class StoredTrigger:
    """A retrain trigger as stored."""

    id: int
    key: str
    model: str
    reason: str
    detail: dict[str, Any] | None
    created_at: float

    def message(self) -> dict[str, Any]:
        """The retraining-queue record: consumers may drop repeats by ``event_id`` (the key)."""
        return {"type": "retrain_trigger", "event_id": self.key, "model": self.model, "reason": self.reason,
                "ts": self.created_at, "detail": self.detail}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the scheduler's push job read while the consumer writes; the busy
    # timeout turns a momentary lock into a wait instead of an error.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _translate(exc: SQLAlchemyError, url: str) -> Exception:
    """Our error for a database error: transient if the database may come back."""
    cause = getattr(exc, "orig", None) or exc
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError | sa_exc.TimeoutError):
        return StoreUnavailable(f"store {url} is unavailable: {cause}")
    return StoreFailed(f"store {url} refused the operation: {cause}")


class SampleStore:
    """Flagged samples, alerts and retrain triggers in one database."""

    def __init__(self, url: str, *, create: bool = True, webhook: bool = False) -> None:
        """``webhook``: samples must also reach the webhook before retention may delete them."""
        self._webhook = webhook
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError(f"store.url {url!r} is not a SQLAlchemy URL (e.g. sqlite:///monitor.db)") from None
        self.url = parsed.render_as_string(hide_password=True)
        self.dialect = parsed.get_backend_name()
        try:
            self.engine: Engine = create_engine(parsed, pool_pre_ping=True)
        except NoSuchModuleError:
            raise ConfigError(f"store.url {self.url}: no SQLAlchemy dialect for {parsed.drivername!r}") from None
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"store.url {self.url} needs the Python package {exc.name!r}; for PostgreSQL install "
                "model-monitor[postgres]") from None
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        if create:
            self.create()

    def create(self) -> None:
        """Create the tables if missing; refuse a database of another schema version."""
        try:
            with self.engine.begin() as conn:
                metadata.create_all(conn)
                version = conn.execute(select(meta_table.c.value).where(meta_table.c.key == "schema")).scalar()
                if version is None:
                    conn.execute(insert(meta_table).values(key="schema", value=SCHEMA_VERSION))
                elif version != SCHEMA_VERSION:
                    raise StoreSchemaError(
                        f"store {self.url} has schema version {version}; this model-monitor uses "
                        f"{SCHEMA_VERSION}")
        except SQLAlchemyError as exc:
            raise _translate(exc, self.url) from exc

    def close(self) -> None:
        self.engine.dispose()

    def _insert_ignoring(self, table: Table, key: str) -> Any:
        if self.dialect == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing(index_elements=[key])
        if self.dialect == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing(index_elements=[key])
        return insert(table).prefix_with("IGNORE")  # MySQL/MariaDB

    def put(self, samples: Sequence[FlaggedSample], alerts: Sequence[Alert] = ()) -> None:
        """Store a batch's samples and alerts in one transaction; repeats are ignored."""
        if not samples and not alerts:
            return
        now = time.time()
        try:
            with self.engine.begin() as conn:
                if samples:
                    conn.execute(self._insert_ignoring(samples_table, "event_id"), [
                        {"event_id": s.event_id, "model": s.model, "model_version": s.model_version,
                         "reason": s.reason, "detail": s.detail, "event_ts": s.event_ts, "flagged_at": now,
                         "payload": s.payload, "pushed_at": None} for s in samples
                    ])
                if alerts:
                    conn.execute(self._insert_ignoring(alerts_table, "alert_key"), [
                        {"alert_key": a.key, "kind": a.kind, "model": a.model, "model_version": a.model_version,
                         "feature": a.feature, "detector": a.detector, "score": a.score,
                         "threshold": a.threshold, "at_event": a.at_event, "ts": a.ts, "event_id": a.event_id,
                         "created_at": now} for a in alerts
                    ])
        except SQLAlchemyError as exc:
            raise _translate(exc, self.url) from exc

    @contextmanager
    def _claim(self, table: Table, sink: str, limit: int) -> Iterator[tuple[list[Any], Any]]:
        column = table.c[SINKS[sink]]
        try:
            with self.engine.begin() as conn:
                query = select(table).where(column.is_(None)).order_by(table.c.id).limit(limit)
                if self.dialect == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                rows = list(conn.execute(query))

                def mark_delivered() -> None:
                    conn.execute(update(table).where(table.c.id.in_([r.id for r in rows]))
                                 .values({SINKS[sink]: time.time()}))

                yield rows, mark_delivered
        except SQLAlchemyError as exc:
            raise _translate(exc, self.url) from exc

    @contextmanager
    def claim_unpushed(self, limit: int, sink: str = "queue") -> Iterator[tuple[list[StoredSample], Any]]:
        """Lock up to ``limit`` samples not yet delivered to ``sink``, oldest first, for one transaction.

        Yields ``(samples, mark_pushed)``; call ``mark_pushed()`` once the sink has
        acknowledged them. If the block raises, nothing is marked and the rows are
        free for the next attempt.
        """
        with self._claim(samples_table, sink, limit) as (rows, mark):
            yield [StoredSample.from_row(row) for row in rows], mark

    @contextmanager
    def claim_triggers(self, sink: str = "queue") -> Iterator[tuple[list[StoredTrigger], Any]]:
        """As ``claim_unpushed``, for retrain triggers."""
        with self._claim(triggers_table, sink, 100) as (rows, mark):
            yield [StoredTrigger(r.id, r.trigger_key, r.model, r.reason, r.detail, r.created_at) for r in rows], mark

    def add_trigger(self, key: str, model: str, reason: str, detail: dict[str, Any] | None = None) -> bool:
        """Record a trigger to send; False if one with this key exists (another daemon made it)."""
        try:
            with self.engine.begin() as conn:
                inserted = conn.execute(self._insert_ignoring(triggers_table, "trigger_key").values(
                    trigger_key=key, model=model, reason=reason, detail=detail, created_at=time.time())
                    .returning(triggers_table.c.id)).first()
                return inserted is not None
        except SQLAlchemyError as exc:
            raise _translate(exc, self.url) from exc

    def prune(self, before: float) -> dict[str, int]:
        """Delete what is older than ``before`` and no longer needed: delivered samples and
        triggers, and alerts. Returns the rows deleted per table."""
        delivered = [samples_table.c.pushed_at.is_not(None)]
        if self._webhook:
            delivered.append(samples_table.c.webhook_at.is_not(None))
        try:
            with self.engine.begin() as conn:
                return {
                    "samples": conn.execute(delete(samples_table).where(
                        samples_table.c.flagged_at < before, *delivered)).rowcount,
                    "alerts": conn.execute(delete(alerts_table).where(alerts_table.c.created_at < before)).rowcount,
                    "triggers": conn.execute(delete(triggers_table).where(
                        triggers_table.c.created_at < before, triggers_table.c.pushed_at.is_not(None))).rowcount,
                }
        except SQLAlchemyError as exc:
            raise _translate(exc, self.url) from exc

    # -- reading ----------------------------------------------------------------------
    def _scalar(self, query: Any) -> Any:
        try:
            with self.engine.connect() as conn:
                return conn.execute(query).scalar()
        except SQLAlchemyError as exc:
            raise _translate(exc, self.url) from exc

    def _rows(self, query: Any) -> list[dict[str, Any]]:
        try:
            with self.engine.connect() as conn:
                return [dict(row._mapping) for row in conn.execute(query)]
        except SQLAlchemyError as exc:
            raise _translate(exc, self.url) from exc

    def put_baselines(self, baselines: dict[tuple[str, str], dict[str, tuple[int, list[Any]]]]) -> int:
        """Replace the reference samples of each (model, version) given; return the features stored."""
        rows = [{"model": model, "model_version": version, "feature": feature, "rows": seen, "values": values,
                 "created_at": time.time()}
                for (model, version), features in baselines.items() for feature, (seen, values) in features.items()]
        try:
            with self.engine.begin() as conn:
                for model, version in baselines:
                    conn.execute(delete(baselines_table).where(baselines_table.c.model == model,
                                                               baselines_table.c.model_version == version))
                if rows:
                    conn.execute(insert(baselines_table), rows)
        except SQLAlchemyError as exc:
            raise _translate(exc, self.url) from exc
        return len(rows)

    def baselines(self) -> dict[tuple[str, str], dict[str, list[Any]]]:
        """Reference values by (model, version) and feature, as ``monitor baseline`` stored them."""
        out: dict[tuple[str, str], dict[str, list[Any]]] = {}
        for row in self._rows(select(baselines_table)):
            out.setdefault((row["model"], row["model_version"]), {})[row["feature"]] = row["values"]
        return out

    def put_checkpoint(self, group_id: str, partitions: list[tuple[str, int, int]], fingerprint: str,
                       state: bytes) -> None:
        """Save a member's checkpoint; drop the group's older ones that held any of these
        partitions (they are this member's now)."""
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
        except SQLAlchemyError as exc:
            raise _translate(exc, self.url) from exc

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

    def put_join_states(self, group_id: str, states: Sequence[tuple[str, int, int, bytes]]) -> None:
        """Save the join of each (topic, partition, next offset, state), replacing the
        group's earlier one for that partition."""
        if not states:
            return
        t = join_states_table
        now = time.time()
        try:
            with self.engine.begin() as conn:
                for topic, partition, _, _ in states:
                    conn.execute(delete(t).where(t.c.group_id == group_id, t.c.topic == topic,
                                                 t.c.partition_id == partition))
                conn.execute(insert(t), [{"group_id": group_id, "topic": topic, "partition_id": partition,
                                          "next_offset": offset, "state": state, "saved_at": now}
                                         for topic, partition, offset, state in states])
        except SQLAlchemyError as exc:
            raise _translate(exc, self.url) from exc

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

    def latest_checkpoint(self, group_id: str) -> dict[str, Any] | None:
        """The group's most recently saved checkpoint, whatever partitions it covers."""
        t = checkpoints_table
        rows = self._rows(select(t).where(t.c.group_id == group_id).order_by(t.c.saved_at.desc()).limit(1))
        return rows[0] if rows else None

    def pending_count(self, sink: str = "queue") -> int:
        """Samples stored but not yet delivered to ``sink``."""
        return int(self._scalar(select(func.count()).select_from(samples_table)
                                .where(samples_table.c[SINKS[sink]].is_(None))) or 0)

    def counts(self) -> dict[str, int]:
        """Samples by reason, alerts, and pushed samples: for the demo and `monitor status`."""
        out = {f"samples:{r['reason']}": int(r["n"]) for r in self._rows(
            select(samples_table.c.reason, func.count().label("n")).group_by(samples_table.c.reason))}
        out["samples"] = sum(v for k, v in out.items() if k.startswith("samples:"))
        out["pushed"] = int(self._scalar(select(func.count()).select_from(samples_table)
                                         .where(samples_table.c.pushed_at.is_not(None))) or 0)
        out["alerts"] = int(self._scalar(select(func.count()).select_from(alerts_table)) or 0)
        out["triggers"] = int(self._scalar(select(func.count()).select_from(triggers_table)) or 0)
        return out

    def models_since(self, since: float) -> list[str]:
        """Models with samples flagged at or after ``since``."""
        query = select(samples_table.c.model).where(samples_table.c.flagged_at >= since).distinct().order_by("model")
        return [r["model"] for r in self._rows(query)]

    def samples(self, model: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        query = select(samples_table).order_by(samples_table.c.id).limit(limit)
        if model is not None:
            query = query.where(samples_table.c.model == model)
        return self._rows(query)

    def alerts(self, limit: int = 1000) -> list[dict[str, Any]]:
        return self._rows(select(alerts_table).order_by(alerts_table.c.id).limit(limit))

    def triggers(self, limit: int = 1000) -> list[dict[str, Any]]:
        return self._rows(select(triggers_table).order_by(triggers_table.c.id).limit(limit))

    def connection(self) -> Connection:
        """A raw connection, for tests and maintenance."""
        return self.engine.connect()

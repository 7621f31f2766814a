"""The flagged-sample store: SQLAlchemy Core on SQLite (default) or PostgreSQL.

Writes are idempotent: a sample is keyed by its ``event_id``, an alert by its
``Alert.key`` and a retrain trigger by its ``trigger_key``, so a batch processed
twice (after a crash before its offsets were committed), or a trigger raised by two
daemons, is stored once; so is a canary's rollback request, by model and canary
version. Delivery is tracked per sink (``queue``: the Kafka topic; ``webhook``; a
rollback request's ``sent_at``): a push claims undelivered rows in a transaction
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so daemons sharing one database never push
the same row at once) and marks them delivered only after the sink acknowledged them.

Tables are prefixed ``mm_`` so the store can live in a shared database.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
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
    text,
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
from common.errors import ConfigError, StoreFailed, StoreSchemaError, StoreUnavailable

#: 1: the first. 2: bad-case categories, segment traffic, datasets (a version-1 store is upgraded in place).
SCHEMA_VERSION = "3"
#: What brings a store of an older schema version to the next one ({json}: the dialect's JSON type).
_MIGRATION_STEPS: dict[str, tuple[str, ...]] = {
    "1": ("ALTER TABLE mm_flagged_samples ADD COLUMN category VARCHAR(64)",),
    "2": ("ALTER TABLE mm_alerts ADD COLUMN segment {json}", "ALTER TABLE mm_alerts ADD COLUMN baseline_version "
          "VARCHAR(256)"),
}
_MIGRATIONS = list(_MIGRATION_STEPS)
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
    Column("category", String(64)),  # of a bad case (feedback); null for drift-window samples
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
    Column("segment", _Json),  # the slice of a slice alert
    Column("baseline_version", String(256)),  # of a canary_regression
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
#: Predictions by model, segment combination and event-time hour: what bad-case
#: priorities weigh a segment's traffic share by.
traffic_table = Table(
    "mm_traffic", metadata,
    Column("model", String(256), primary_key=True),
    Column("slice_key", String(40), primary_key=True),  # sha1 of the slice
    Column("hour", BigInteger, primary_key=True),  # epoch seconds // 3600
    Column("slice", _Json, nullable=False),  # [[key, value], ...], sorted; [] for no segment
    Column("predictions", BigInteger, nullable=False),
)
#: Dataset versions built from a model's bad cases, with their manifests.
datasets_table = Table(
    "mm_datasets", metadata,
    Column("model", String(256), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("dataset_id", String(300), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("path", Text, nullable=False),
    Column("manifest", _Json, nullable=False),
)
#: Which samples went into which dataset version (a sample goes into one, unless asked).
dataset_samples_table = Table(
    "mm_dataset_samples", metadata,
    Column("model", String(256), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("event_id", String(256), primary_key=True),
    Index("ix_mm_dataset_samples_event", "model", "event_id"),
)

#: Rollback requests for failed canaries (``canary_regression`` alerts): one per model and
#: canary version however many alerts, replays or daemons raise it; ``sent_at`` once the
#: rollback webhook acknowledged it. Never pruned: a row per canary version is small, and
#: keeps an old alert read again from sending again.
rollbacks_table = Table(
    "mm_rollbacks", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("model", String(256), nullable=False),
    Column("model_version", String(256), nullable=False),  # the canary
    Column("baseline_version", String(256)),
    Column("alert", _Json, nullable=False),  # the first alert's contract record
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
    UniqueConstraint("model", "model_version", name="uq_mm_rollbacks"),
    Index("ix_mm_rollbacks_unsent", "sent_at", "id"),
)

meta_table = Table(
    "mm_meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)


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


@dataclass(frozen=True)
class StoredRollback:
    """A rollback request as stored."""

    id: int
    model: str
    model_version: str
    baseline_version: str | None
    alert: dict[str, Any]
    created_at: float

    @property
    def key(self) -> str:
        """Names the request: the model and the canary version."""
        return f"rollback|{self.model}|{self.model_version}"

    def message(self) -> dict[str, Any]:
        """The body of the rollback webhook's request."""
        return {"type": "rollback", "event_id": self.key, "model": self.model, "model_version": self.model_version,
                "baseline_version": self.baseline_version, "alert": self.alert}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the scheduler's push job read while the consumer writes; the busy
    # timeout turns a momentary lock into a wait instead of an error.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def translate_error(exc: SQLAlchemyError, url: str) -> Exception:
    """Our error for a database error: transient if the database may come back."""
    cause = getattr(exc, "orig", None) or exc
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError | sa_exc.TimeoutError):
        return StoreUnavailable(f"store {url} is unavailable: {cause}")
    return StoreFailed(f"store {url} refused the operation: {cause}")


def read_rows(engine: Engine, url: str, query: Any) -> list[dict[str, Any]]:
    """The rows of ``query`` as dicts; a database error as ours (``translate_error``)."""
    try:
        with engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]
    except SQLAlchemyError as exc:
        raise translate_error(exc, url) from exc


class _Taken(Exception):
    """A sample of a new dataset version is in another version already."""


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
                elif version in _MIGRATIONS:  # new columns; new tables exist now
                    for step in _MIGRATIONS[_MIGRATIONS.index(version):]:
                        for statement in _MIGRATION_STEPS[step]:
                            conn.execute(text(statement.format(
                                json="JSONB" if self.dialect == "postgresql" else "JSON")))
                    conn.execute(update(meta_table).where(meta_table.c.key == "schema").values(value=SCHEMA_VERSION))
                elif version != SCHEMA_VERSION:
                    raise StoreSchemaError(
                        f"store {self.url} has schema version {version}; this model-monitor uses "
                        f"{SCHEMA_VERSION}")
        except SQLAlchemyError as exc:
            raise translate_error(exc, self.url) from exc

    def close(self) -> None:
        self.engine.dispose()

    def _insert_ignoring(self, table: Table, *keys: str) -> Any:
        """An insert that skips rows whose ``keys`` (a unique constraint's columns) exist."""
        if self.dialect == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(keys))
        if self.dialect == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(keys))
        return insert(table).prefix_with("IGNORE")  # MySQL/MariaDB

    def put(self, samples: Sequence[FlaggedSample], alerts: Sequence[Alert] = (),
            traffic: Mapping[tuple[str, tuple[tuple[str, str], ...], int], int] | None = None) -> None:
        """Store a batch's samples, alerts and traffic counts in one transaction; repeated
        samples and alerts are ignored (traffic counts add up: a batch read twice counts
        twice, which moves shares little)."""
        if not samples and not alerts and not traffic:
            return
        now = time.time()
        try:
            with self.engine.begin() as conn:
                if samples:
                    conn.execute(self._insert_ignoring(samples_table, "event_id"), [
                        {"event_id": s.event_id, "model": s.model, "model_version": s.model_version,
                         "reason": s.reason, "detail": s.detail, "event_ts": s.event_ts, "flagged_at": now,
                         "payload": s.payload, "pushed_at": None, "category": s.category} for s in samples
                    ])
                if traffic:
                    self._add_traffic(conn, traffic)
                if alerts:
                    conn.execute(self._insert_ignoring(alerts_table, "alert_key"), [
                        {"alert_key": a.key, "kind": a.kind, "model": a.model, "model_version": a.model_version,
                         "feature": a.feature, "detector": a.detector, "score": a.score,
                         "threshold": a.threshold, "at_event": a.at_event, "ts": a.ts, "event_id": a.event_id,
                         "segment": a.segment, "baseline_version": a.baseline_version,
                         "created_at": now} for a in alerts
                    ])
        except SQLAlchemyError as exc:
            raise translate_error(exc, self.url) from exc

    def _add_traffic(self, conn: Connection, traffic: Mapping[tuple[str, tuple[tuple[str, str], ...], int], int]
                     ) -> None:
        rows = [{"model": model, "slice_key": hashlib.sha1(orjson.dumps(pairs)).hexdigest(), "hour": hour,
                 "slice": [list(p) for p in pairs], "predictions": n}
                for (model, pairs, hour), n in sorted(traffic.items())]  # sorted: one lock order for every daemon
        t = traffic_table
        if self.dialect in ("postgresql", "sqlite"):
            dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
            stmt = dialect_insert(t)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=[t.c.model, t.c.slice_key, t.c.hour],
                set_={"predictions": t.c.predictions + stmt.excluded.predictions}), rows)
            return
        for row in rows:  # other databases: read, then write
            done = conn.execute(update(t).where(t.c.model == row["model"], t.c.slice_key == row["slice_key"],
                                                t.c.hour == row["hour"])
                                .values(predictions=t.c.predictions + row["predictions"])).rowcount
            if not done:
                conn.execute(insert(t), [row])

    @contextmanager
    def _claim(self, table: Table, column_name: str, limit: int, exclude: Collection[int] = ()
               ) -> Iterator[tuple[list[Any], Any]]:
        """Lock up to ``limit`` rows whose ``column_name`` (when delivered) is null, oldest
        first, but those whose id is in ``exclude``."""
        column = table.c[column_name]
        try:
            with self.engine.begin() as conn:
                query = select(table).where(column.is_(None)).order_by(table.c.id).limit(limit)
                if exclude:
                    query = query.where(table.c.id.not_in(list(exclude)))
                if self.dialect == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                rows = list(conn.execute(query))

                def mark_delivered() -> None:
                    conn.execute(update(table).where(table.c.id.in_([r.id for r in rows]))
                                 .values({column_name: time.time()}))

                yield rows, mark_delivered
        except SQLAlchemyError as exc:
            raise translate_error(exc, self.url) from exc

    @contextmanager
    def claim_unpushed(self, limit: int, sink: str = "queue") -> Iterator[tuple[list[StoredSample], Any]]:
        """Lock up to ``limit`` samples not yet delivered to ``sink``, oldest first, for one transaction.

        Yields ``(samples, mark_pushed)``; call ``mark_pushed()`` once the sink has
        acknowledged them. If the block raises, nothing is marked and the rows are
        free for the next attempt.
        """
        with self._claim(samples_table, SINKS[sink], limit) as (rows, mark):
            yield [StoredSample.from_row(row) for row in rows], mark

    @contextmanager
    def claim_triggers(self, sink: str = "queue") -> Iterator[tuple[list[StoredTrigger], Any]]:
        """As ``claim_unpushed``, for retrain triggers."""
        with self._claim(triggers_table, SINKS[sink], 100) as (rows, mark):
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
            raise translate_error(exc, self.url) from exc

    def add_rollbacks(self, alerts: Sequence[Alert]) -> None:
        """Record a rollback request for each ``canary_regression`` alert (others are ignored),
        unless its model and canary version have one already (from an earlier alert, a
        batch read again, or another daemon)."""
        rows = [{"model": a.model, "model_version": a.model_version, "baseline_version": a.baseline_version,
                 "alert": a.to_dict(), "created_at": time.time(), "sent_at": None}
                for a in alerts if a.kind == "canary_regression" and a.model_version is not None]
        if not rows:
            return
        rows.sort(key=lambda r: (r["model"], r["model_version"]))  # one lock order for every daemon
        try:
            with self.engine.begin() as conn:
                conn.execute(self._insert_ignoring(rollbacks_table, "model", "model_version"), rows)
        except SQLAlchemyError as exc:
            raise translate_error(exc, self.url) from exc

    @contextmanager
    def claim_rollback(self, exclude: Collection[int] = ()) -> Iterator[tuple[StoredRollback | None, Any]]:
        """Lock the oldest unsent rollback request but those of ``exclude`` (ids), or None if
        there is none, for one transaction.

        Yields ``(rollback, mark_sent)``; call ``mark_sent()`` once the webhook acknowledged
        it. If the block raises, it stays unsent for the next attempt. On PostgreSQL a
        request another daemon is sending is skipped, so it is sent once.
        """
        with self._claim(rollbacks_table, "sent_at", 1, exclude) as (rows, mark):
            yield (StoredRollback(rows[0].id, rows[0].model, rows[0].model_version, rows[0].baseline_version,
                                  rows[0].alert, rows[0].created_at) if rows else None), mark

    def rollbacks(self) -> list[dict[str, Any]]:
        """Every rollback request, oldest first."""
        return self._rows(select(rollbacks_table).order_by(rollbacks_table.c.id))

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
            raise translate_error(exc, self.url) from exc

    # -- reading ----------------------------------------------------------------------
    def _scalar(self, query: Any) -> Any:
        try:
            with self.engine.connect() as conn:
                return conn.execute(query).scalar()
        except SQLAlchemyError as exc:
            raise translate_error(exc, self.url) from exc

    def _rows(self, query: Any) -> list[dict[str, Any]]:
        return read_rows(self.engine, self.url, query)

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
            raise translate_error(exc, self.url) from exc
        return len(rows)

    def baselines(self) -> dict[tuple[str, str], dict[str, list[Any]]]:
        """Reference values by (model, version) and feature, as ``monitor baseline`` stored them."""
        out: dict[tuple[str, str], dict[str, list[Any]]] = {}
        for row in self._rows(select(baselines_table)):
            out.setdefault((row["model"], row["model_version"]), {})[row["feature"]] = row["values"]
        return out

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

    def models_since(self, since: float, until: float | None = None) -> list[str]:
        """Models with samples flagged at or after ``since`` (and before ``until``)."""
        query = select(samples_table.c.model).where(samples_table.c.flagged_at >= since)
        if until is not None:
            query = query.where(samples_table.c.flagged_at < until)
        return [r["model"] for r in self._rows(query.distinct().order_by("model"))]

    # -- bad cases ---------------------------------------------------------------------------
    def badcase_rows(self, *, models: Sequence[str] | None = None, since: float | None = None,
                     until: float | None = None, reasons: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Stored samples with one of ``reasons`` (the bad-case kinds), oldest first, by
        event time in [since, until)."""
        t = samples_table
        query = select(t).where(t.c.reason.in_(list(reasons))).order_by(t.c.event_ts, t.c.id)
        if models:
            query = query.where(t.c.model.in_(list(models)))
        if since is not None:
            query = query.where(t.c.event_ts >= since)
        if until is not None:
            query = query.where(t.c.event_ts < until)
        return self._rows(query)

    def newest_badcase_ts(self, reasons: Sequence[str]) -> float | None:
        """Event time of the newest stored sample with one of ``reasons``."""
        t = samples_table
        newest = self._scalar(select(func.max(t.c.event_ts)).where(t.c.reason.in_(list(reasons))))
        return None if newest is None else float(newest)

    def set_categories(self, categories: Mapping[int, str]) -> int:
        """Set the category of samples by row id; return how many changed."""
        t = samples_table
        by_category: dict[str, list[int]] = {}
        for row_id, category in categories.items():
            by_category.setdefault(category, []).append(row_id)
        changed = 0
        try:
            with self.engine.begin() as conn:
                for category, ids in sorted(by_category.items()):
                    for start in range(0, len(ids), 500):
                        changed += conn.execute(update(t).where(t.c.id.in_(ids[start:start + 500]))
                                                .values(category=category)).rowcount
        except SQLAlchemyError as exc:
            raise translate_error(exc, self.url) from exc
        return changed

    def traffic(self, since: float | None = None, until: float | None = None,
                models: Sequence[str] | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], int]:
        """Predictions by (model, segment pairs) in the event-time hours that overlap [since, until)."""
        t = traffic_table
        query = select(t.c.model, t.c.slice, func.sum(t.c.predictions).label("n")).group_by(
            t.c.model, t.c.slice_key, t.c.slice)
        if since is not None:
            query = query.where(t.c.hour >= int(since // 3600))
        if until is not None:
            query = query.where(t.c.hour <= int(until // 3600))
        if models:
            query = query.where(t.c.model.in_(list(models)))
        out: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        for row in self._rows(query):
            key = (row["model"], tuple((str(k), str(v)) for k, v in row["slice"]))
            out[key] = out.get(key, 0) + int(row["n"])
        return out

    # -- datasets ------------------------------------------------------------------------------
    def dataset_versions(self, model: str | None = None) -> list[dict[str, Any]]:
        """The dataset versions built, oldest first."""
        t = datasets_table
        query = select(t).order_by(t.c.model, t.c.version)
        if model is not None:
            query = query.where(t.c.model == model)
        return self._rows(query)

    def used_samples(self, model: str) -> set[str]:
        """Event ids of the model's samples that are in a dataset version already."""
        t = dataset_samples_table
        return {r["event_id"] for r in self._rows(select(t.c.event_id).where(t.c.model == model).distinct())}

    def add_dataset(self, model: str, version: int, dataset_id: str, path: str, manifest: dict[str, Any],
                    event_ids: Sequence[str], *, exclusive: bool = True) -> bool:
        """Record a dataset version and the samples in it; False if the version number is
        taken, or (``exclusive``) a sample is in another version of the model already:
        another builder was first. Builders of one model take turns here (a write first on
        SQLite, a transaction lock on PostgreSQL), so the check and the record are one step."""
        t, m = datasets_table, dataset_samples_table
        ids = sorted(set(event_ids))
        try:
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"mm_datasets:{model}"))))
                conn.execute(insert(t), [{"model": model, "version": version, "dataset_id": dataset_id,
                                          "created_at": time.time(), "path": path, "manifest": manifest}])
                if exclusive:
                    for start in range(0, len(ids), 500):
                        taken = conn.execute(select(func.count()).select_from(m).where(
                            m.c.model == model, m.c.event_id.in_(ids[start:start + 500]))).scalar()
                        if taken:
                            raise _Taken
                for start in range(0, len(ids), 1000):
                    conn.execute(insert(m), [{"model": model, "version": version, "event_id": e}
                                             for e in ids[start:start + 1000]])
        except (sa_exc.IntegrityError, _Taken):
            return False
        except SQLAlchemyError as exc:
            raise translate_error(exc, self.url) from exc
        return True

    def alerts_of(self, model: str, since: float | None = None, until: float | None = None,
                  limit: int = 100) -> list[dict[str, Any]]:
        """The model's alerts (as the contract has them) by event time in [since, until), newest last."""
        t = alerts_table
        query = select(t).where(t.c.model == model).order_by(t.c.ts.desc()).limit(limit)
        if since is not None:
            query = query.where(t.c.ts >= since)
        if until is not None:
            query = query.where(t.c.ts < until)
        keys = ("kind", "model", "model_version", "feature", "detector", "score", "threshold", "at_event", "ts",
                "event_id")
        return [{k: row[k] for k in keys} for row in reversed(self._rows(query))]

    def has_trigger(self, key: str) -> bool:
        """Whether a retrain trigger with this key was recorded."""
        t = triggers_table
        return int(self._scalar(select(func.count()).select_from(t).where(t.c.trigger_key == key)) or 0) > 0

    def badcases_since_dataset(self, model: str, reasons: Sequence[str]) -> int:
        """Bad cases of ``model`` flagged after its last dataset version was built."""
        last = self._scalar(select(func.max(datasets_table.c.created_at)).where(datasets_table.c.model == model))
        t = samples_table
        query = select(func.count()).select_from(t).where(t.c.model == model, t.c.reason.in_(list(reasons)))
        if last is not None:
            query = query.where(t.c.flagged_at > last)
        return int(self._scalar(query) or 0)

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

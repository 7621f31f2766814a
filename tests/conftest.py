"""Shared fixtures: a real broker, a real PostgreSQL schema, a daemon in a thread.

Tests talk to real things. The broker is the embedded Tansu (one per session, on a
free port); each test gets its own topic names and consumer group so tests never
see each other's messages. PostgreSQL tests get a schema of their own, dropped
afterwards; where no server runs they are skipped, except in CI, where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import DaemonThread, make_settings

from monitor.broker import EmbeddedBroker
from monitor.config import Settings

PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
IN_CI = bool(os.environ.get("CI"))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of the embedded broker, shared by the session."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as embedded:
        yield embedded.bootstrap


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A SQLAlchemy URL whose search_path is a fresh schema on the local PostgreSQL."""
    schema = f"mm_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True,
                             connect_timeout=3) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is required in CI: {exc}")
        pytest.skip(f"no PostgreSQL server on 127.0.0.1:5432 (database test, user postgres): {exc}")
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def daemon(broker: str, tmp_path: Path) -> Iterator[Callable[..., DaemonThread]]:
    """Start daemons with ``daemon(**sections)``; each is stopped at the end of the test."""
    started: list[DaemonThread] = []

    def start(settings: Settings | None = None, **sections: dict[str, Any]) -> DaemonThread:
        d = DaemonThread(settings or make_settings(broker, tmp_path, **sections)).start()
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()

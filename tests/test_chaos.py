"""The chaos scenarios, short: the harness of ``benchmarks/chaos`` on a small stream.

The long runs (20 kills and more, both stores) are ``benchmarks/run chaos``; here each
scenario runs once on SQLite and must lose nothing and store nothing twice.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.chaos import harness as H
from benchmarks.chaos.outage import broker_down

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

EVENTS = 8_000  # enough for the feature drift to raise an alert
RATE = 800.0  # events a second while the faulted daemon runs: about 10 s of production


@pytest.fixture(scope="module")
def clean(broker: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[H.Stream, H.Outcome]:
    """The stream, and what a clean run of it left behind (shared by the scenarios)."""
    stream = H.make_stream(EVENTS, seed=1)  # seed 1 raises a drift alert in 8,000 events
    return stream, H.clean_run(broker, stream, "sqlite", tmp_path_factory.mktemp("clean"), 120)


def test_kill_9_mid_stream_loses_nothing_and_stores_nothing_twice(broker: str, clean, tmp_path: Path) -> None:
    stream, outcome = clean
    assert outcome.samples and outcome.alerts, "the clean run flags samples and raises an alert"
    result = H.kill9(broker, stream, outcome, "sqlite", tmp_path, kills=2, seed=15, rate=RATE, timeout_s=120)
    c = result.comparison
    assert (result.runs, result.faults) == (3, 2)
    assert (c.lost, c.extra, c.store_duplicates) == (0, 0, 0), c.detail
    assert (c.alerts_lost, c.alerts_extra) == (0, 0), c.detail
    assert (c.triggers_lost, c.triggers_extra, c.trigger_duplicates) == (0, 0, 0)
    assert c.queue_missing == 0, "every stored sample reached the retraining-queue topic"


def test_the_store_down_keeps_the_daemon_up_commits_nothing_and_it_recovers(broker: str, clean,
                                                                            tmp_path: Path) -> None:
    stream, outcome = clean
    result = H.db_down(broker, stream, outcome, "sqlite", tmp_path, down_s=6.0, rate=RATE, timeout_s=120)
    c = result.comparison
    assert re.search(r"store \S+ is unavailable", result.facts["readyz"]), "/readyz says the store is failing"
    assert result.facts["live_ok"] == result.facts["live_polls"] > 0, "/healthz stays live"
    assert not result.facts["offsets_moved"], "nothing is committed while the store is down"
    assert (c.lost, c.extra, c.store_duplicates) == (0, 0, 0), c.detail
    assert (c.alerts_lost, c.alerts_extra) == (0, 0), c.detail
    assert c.queue_missing == 0


def test_the_broker_down_keeps_the_daemon_up_says_so_and_it_resumes_losing_nothing(clean, tmp_path: Path) -> None:
    stream, outcome = clean
    result = broker_down(stream, outcome, "sqlite", tmp_path, down_s=8.0, timeout_s=120)
    c = result.comparison
    assert "broker: " in result.facts["readyz"], "/readyz says the broker is what is failing"
    assert result.facts["outages"] >= 1, "model_monitor_broker_outages_total counts it"
    assert result.facts["live_ok"] == result.facts["live_polls"] > 0, "/healthz stays live"
    assert (c.lost, c.extra, c.store_duplicates) == (0, 0, 0), c.detail
    assert (c.alerts_lost, c.alerts_extra) == (0, 0), c.detail
    assert c.queue_missing == 0

"""The chaos scenarios, short: the harness of ``benchmarks/chaos`` on a small stream.

The long runs (20 kills and more, both stores) are ``benchmarks/run chaos``; here each
scenario runs once on SQLite and must lose nothing and store nothing twice.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.chaos import bursts as B
from benchmarks.chaos import harness as H
from benchmarks.chaos import volume as V
from benchmarks.chaos.generators import CASES, hostile_messages
from benchmarks.chaos.outage import broker_down
from collectors.contract import BAD_INPUT_REASONS
from collectors.decode import Decoder, Limits

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


# -- hostile input and label explosions (benchmarks/chaos/volume.py) ---------------------------

HOSTILE_MESSAGES = 10_000
EXPLOSION_EVENTS = 8_000  # every bound is full by half of it, and the folds run into the thousands


def test_the_hostile_generator_says_what_the_decoder_says() -> None:
    """In process, no daemon: each generated message's reason, from how it was built, is the
    decoder's (a generator mistake shows here before it looks like a daemon bug)."""
    now = time.time()
    decoder = Decoder(Limits())
    wrong: Counter[tuple[str, str | None, str | None]] = Counter()
    cases: Counter[str] = Counter()
    reasons: Counter[str | None] = Counter()
    for m in hostile_messages(10_000, seed=3, now=now, huge_share=0.005):
        reason = decoder.decode(m.value, now)[1]
        cases[m.case] += 1
        reasons[m.expected] += 1
        if reason != m.expected:
            wrong[(m.case, m.expected, reason)] += 1
    assert not wrong, wrong.most_common(10)
    assert {c.name for c in CASES} <= set(cases), "every hostile case is drawn"
    # not_arrow: only a message with the Arrow header can be it (tests/test_arrow.py)
    assert set(reasons) == {None, *BAD_INPUT_REASONS} - {"not_arrow"}, "every reason of a JSON message, and valid"


def test_hostile_input_every_bad_message_dead_lettered_with_its_reason(broker: str, tmp_path: Path) -> None:
    r = V.hostile(broker, tmp_path, HOSTILE_MESSAGES, seed=15, timeout_s=300, huge_share=0.002)
    f = r.facts
    assert r.crashes == 0 and f["exit_code"] == 0, "the daemon stays up and stops cleanly"
    assert (r.lost, r.duplicated, f["valid_rejected"]) == (0, 0, 0)
    assert f["mismatch"] == {}, "every dead letter carries the generator's reason"
    assert f["events_total"] == f["valid"], "model_monitor_events_total counts exactly the valid messages"
    assert f["dead_letters"] == f["bad"] > HOSTILE_MESSAGES // 3
    assert not r.problems, r.problems
    assert r.rss_max_mb < 1024, "resident memory stays bounded"


def test_label_explosion_series_bounded_and_folds_counted(broker: str, tmp_path: Path) -> None:
    r = V.explosion(broker, tmp_path, EXPLOSION_EVENTS, timeout_s=300)
    f = r.facts
    assert r.crashes == 0 and f["exit_code"] == 0
    assert f["events_total"] == EXPLOSION_EVENTS, "every prediction processed"
    seen, bounds = f["distinct_label_values"], f["bounds"]
    assert all(seen[k] <= bounds[k] for k in bounds), (seen, bounds)
    assert f["folds"] == {**f["folds"], **f["folds_expected"]}, "every fold counted, exactly, by bound"
    assert f["series_total"] <= f["series_total_at_half"] + 10, "series stop growing once the bounds are full"
    assert f["series_total"] < 5_000
    assert not r.problems, r.problems
    assert r.rss_max_mb < 1024


# -- bursts (benchmarks/chaos/bursts.py) -----------------------------------------------------------

#: 4 s at 1,000 events/s, 3 s at 10,000, 6 s at 1,000: 40,000 events.
BURST = dict(nominal=1_000.0, factor=10.0, burst_s=3.0, lead_s=4.0, tail_s=6.0)
#: Join bounds small enough that the stream overflows both (in both runs): something to shed.
BURST_JOIN = dict(join_max_predictions=3_000, join_max_pending=100)


def test_a_burst_grows_the_lag_which_drains_memory_bounded_nothing_lost_every_overflow_counted(
        broker: str, tmp_path: Path) -> None:
    schedule = B.Schedule(**BURST)
    stream = H.make_stream(schedule.events, seed=2)
    clean = B.clean_run(broker, stream, "sqlite", tmp_path, rate=5_000.0, timeout_s=120, **BURST_JOIN)
    r = B.bursts(broker, stream, clean, "sqlite", tmp_path, schedule, timeout_s=120, **BURST_JOIN)
    f, c = r.facts, r.comparison
    assert f["lag_burst"] > f["lag_lead"] and f["lag_burst"] > 0, f["lag_series"]
    assert f["drain_s"] is not None and f["lag_final"] == 0, f["lag_series"]
    assert f["rss_burst_mb"] <= f["rss_bound_mb"] and f["rss_after_mb"] <= f["rss_bound_mb"], r.notes
    # The join overflows: which labels meet their prediction depends on the batches, so only
    # wrong-label samples may differ from the clean run's; none of any other reason.
    assert f["unexplained"] == 0 and set(f["differing"]) <= {"wrong_label"}, (f["differing"], c.detail)
    assert (c.store_duplicates, c.queue_missing) == (0, 0)
    assert f["events"] + f["invalid"] == f["sent"] == stream.size, "every message an event or a dead letter"
    assert f["dead_letters"] == f["invalid"] > 0
    assert f["overflow"]["join_predictions"] == f["join"]["evicted"] > 0, "the join shed predictions, counted"
    # Waiting feedback overflows only when the burst's feedback outruns its predictions, which
    # depends on timing: whatever it shed is counted, as orphaned too.
    assert f["overflow"].get("join_feedback", 0) <= f["join"].get("orphaned", 0), "waiting feedback shed, counted"
    assert not f["problems"], f["problems"]

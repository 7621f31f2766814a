"""Where a batch's effects go: one ordered chain of sinks, the same behind every runner.

``Pipeline.process`` returns a batch's effects (``BatchResult``: dead letters, alerts,
flagged samples, traffic counts). Every runner (the daemon, ``monitor replay``, the
demo through the daemon) hands them to a *chain*, an ordered list of sinks, and
``run_chain`` applies it:

1. the *durable* sinks, in their order, each through the runner's ``retry``: what must
   have succeeded before the batch's offsets are committed (the dead-letter topic,
   the store, the canary rollback requests, the alert topic; a replay's alert file). A batch whose commit never
   happened is read and applied again, so a durable sink must be idempotent (the
   store and the topics' readers key by event id);
2. the runner's ``commit`` (the daemon's; a replay has none);
3. the other sinks, in their order: what runs once the batch is committed and would
   be lost if the process died just then (the severe retrain trigger, the alert log
   line, observers such as the demo's live view).

A sink's ``stage`` names it in ``model_monitor_errors_total{stage}``, ``/readyz`` and
the logs. A new sink is one class; a runner takes extra ones with
``Service(settings, sinks=(...))`` or ``replay(..., sinks=(...))``. For example, an
alert sink that keeps the alerts in a list:

>>> import asyncio
>>> class AlertList:
...     stage, durable = "alert_list", False
...     def __init__(self) -> None:
...         self.alerts: list[Alert] = []
...     def wants(self, result: BatchResult) -> bool:
...         return bool(result.alerts)
...     async def apply(self, result: BatchResult) -> None:
...         self.alerts.extend(result.alerts)
>>> alert = Alert("data_drift", "recsys", "v12", "price", "ks", 0.41, 0.2, 7, 1763800000.0)
>>> sink = AlertList()
>>> asyncio.run(run_chain([sink], BatchResult(alerts=[alert])))
>>> sink.alerts == [alert]
True
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import IO, TYPE_CHECKING, Any, Protocol

import orjson

from collectors.contract import Alert
from monitor.pipeline import BatchResult

if TYPE_CHECKING:  # the daemon's clients: a replay without Kafka does not import them
    from collectors.kafka import KafkaSink
    from retrain.jobs import RetrainJobs
    from retrain.store import SampleStore

__all__ = ["AlertFile", "AlertLog", "AlertTopic", "DeadLetterTopic", "EffectSink", "Observer", "RollbackRequests",
           "SevereTrigger", "Store", "inline", "once", "run_chain"]

#: How a runner applies a durable sink: ``retry(stage, step)`` awaits ``step()`` until it
#: succeeds, or raises (the daemon's ``Service._retry`` backs off on transient errors).
Retry = Callable[[str, Callable[[], Awaitable[None]]], Awaitable[None]]
#: Runs blocking work where it may block: the daemon's I/O threads, or ``inline``.
RunBlocking = Callable[[Callable[[], None]], Awaitable[None]]


class EffectSink(Protocol):
    """One place a batch's effects go."""

    #: Names it in model_monitor_errors_total{stage}, /readyz and the logs.
    stage: str
    #: True: must succeed before the offsets are committed. False: runs after the commit.
    durable: bool

    def wants(self, result: BatchResult) -> bool:
        """Whether this batch has anything for this sink (no retry, no call when not)."""

    async def apply(self, result: BatchResult) -> None:
        """Deliver the batch's effects; raise ``TransientError`` to be retried, ``FatalError`` to stop."""


async def once(stage: str, step: Callable[[], Awaitable[None]]) -> None:
    """A ``Retry`` that does not retry: a replay's errors stop it."""
    await step()


async def inline(work: Callable[[], None]) -> None:
    """A ``RunBlocking`` that runs the work in place: nothing else waits on a replay's loop."""
    work()


async def run_chain(chain: Sequence[EffectSink], result: BatchResult, *, retry: Retry = once,
                    commit: Callable[[], Awaitable[None]] | None = None) -> None:
    """Apply the durable sinks of ``chain`` in order, each through ``retry``; then
    ``commit``; then the other sinks in order."""
    for sink in chain:
        if sink.durable and sink.wants(result):
            await retry(sink.stage, functools.partial(sink.apply, result))
    if commit is not None:
        await commit()
    for sink in chain:
        if not sink.durable and sink.wants(result):
            await sink.apply(result)


class DeadLetterTopic:
    """Bad input, with its reason, to the dead-letter topic; acknowledged before the commit."""

    stage = "deadletter"
    durable = True

    def __init__(self, producer: KafkaSink, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    def wants(self, result: BatchResult) -> bool:
        return bool(result.dead_letters)

    async def apply(self, result: BatchResult) -> None:
        await self.producer.send_dead_letters(self.topic, result.dead_letters)


class Store:
    """Flagged samples, alerts and traffic counts, committed to the store in one transaction.

    ``blocking`` runs the store's blocking call: the daemon's I/O threads (``inline`` in a replay).
    """

    stage = "store"
    durable = True

    def __init__(self, store: SampleStore, blocking: RunBlocking = inline) -> None:
        self.store = store
        self.blocking = blocking

    def wants(self, result: BatchResult) -> bool:
        return bool(result.samples or result.alerts or result.traffic)

    async def apply(self, result: BatchResult) -> None:
        await self.blocking(functools.partial(self.store.put, result.samples, result.alerts, result.traffic))


class RollbackRequests:
    """A rollback request per failed canary (``canary_regression`` alert), recorded in the
    store before the commit, once per model and canary version (``retrain.rollback``);
    then ``send()`` is asked to deliver it (the daemon: a scheduler job, off the event
    loop, which also runs on an interval and retries what was not delivered)."""

    stage = "canary_rollback"
    durable = True

    def __init__(self, store: SampleStore, blocking: RunBlocking = inline, send: Callable[[], None] = lambda: None
                 ) -> None:
        self.store = store
        self.blocking = blocking
        self.send = send

    def wants(self, result: BatchResult) -> bool:
        return any(a.kind == "canary_regression" for a in result.alerts)

    async def apply(self, result: BatchResult) -> None:
        await self.blocking(functools.partial(self.store.add_rollbacks, result.alerts))
        self.send()

class AlertTopic:
    """Alerts as JSON, keyed by ``Alert.key``, to the alert topic; acknowledged before the commit."""

    stage = "alerts"
    durable = True

    def __init__(self, producer: KafkaSink, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    def wants(self, result: BatchResult) -> bool:
        return bool(result.alerts)

    async def apply(self, result: BatchResult) -> None:
        records = [(a.key.encode(), orjson.dumps(a.to_dict()), None) for a in result.alerts]
        await self.producer.send_all(self.topic, records)


class AlertFile:
    """Alerts as JSON lines to a binary stream (``monitor replay --alerts-out``)."""

    stage = "alert_file"
    durable = True

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    def wants(self, result: BatchResult) -> bool:
        return bool(result.alerts)

    async def apply(self, result: BatchResult) -> None:
        self.out.write(b"".join(orjson.dumps(a.to_dict()) + b"\n" for a in result.alerts))


class SevereTrigger:
    """After the commit: a retrain trigger at once for each severe alert (``RetrainJobs.is_severe``).

    ``schedule(jobs.severe, alert)`` runs the trigger off the event loop (the daemon: a
    scheduler job), since it may write to the store and build a dataset.
    """

    stage = "retrain_severe"
    durable = False

    def __init__(self, jobs: RetrainJobs, kinds: Collection[str],
                 schedule: Callable[[Callable[[Alert], Any], Alert], None]) -> None:
        self.jobs = jobs
        self.kinds = kinds
        self.schedule = schedule

    def wants(self, result: BatchResult) -> bool:
        return bool(result.alerts)

    async def apply(self, result: BatchResult) -> None:
        for alert in result.alerts:
            if self.jobs.is_severe(alert, self.kinds):
                self.schedule(self.jobs.severe, alert)


class AlertLog:
    """After the commit: one warning line per alert."""

    stage = "alert_log"
    durable = False

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def wants(self, result: BatchResult) -> bool:
        return bool(result.alerts)

    async def apply(self, result: BatchResult) -> None:
        for alert in result.alerts:
            self.logger.warning(
                "ALERT %s model=%s version=%s feature=%s detector=%s score=%.4g threshold=%.4g at_event=%d",
                alert.kind, alert.model, alert.model_version, alert.feature, alert.detector, alert.score,
                alert.threshold, alert.at_event)


class Observer:
    """After the commit: a function called with every batch's result (the demo's live view)."""

    durable = False

    def __init__(self, observe: Callable[[BatchResult], None], stage: str = "observer") -> None:
        self.observe = observe
        self.stage = stage

    def wants(self, result: BatchResult) -> bool:
        return True

    async def apply(self, result: BatchResult) -> None:
        self.observe(result)

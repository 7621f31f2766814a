"""The daemon: ``startup()`` → ``main_loop()`` → ``shutdown()``.

Each turn of the main loop fetches a batch, runs it through the pipeline, makes its
effects durable (dead letters and alerts acknowledged by Kafka, flagged samples and
alerts committed to the store), and only then commits the batch's offsets: the
durable sinks of its effect chain, the commit, then the others (``monitor.sinks``). A crash
at any point loses nothing: the uncommitted batch is read again, and every sink is
idempotent by event id. A rebalance waits for the batch in hand to be committed.

Transient errors (broker or store unavailable, the commit included) are retried with
backoff while ``/readyz`` says what is failing and ``/healthz`` stays alive; fatal
ones stop the service with a non-zero exit. A fatal error in a scheduled job (the
store refused a write) stops the service too.

A signal only sets a flag and starts one clock: the batch in hand finishes and is
committed, then shutdown runs, all within ``service.shutdown_timeout_s`` of the
signal; whatever is still blocked then is abandoned and the process exits. A second
signal stops at once (the batch in hand is read again after a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from aiokafka import TopicPartition
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from collectors.contract import Alert, RawMessage
from collectors.kafka import KafkaSink, KafkaSource, ensure_topics
from common.errors import BrokerUnavailable, ConfigError, FatalError, MonitorError, OutputError, TransientError
from monitor import __version__
from monitor.badcases import ReportPage
from monitor.config import Settings
from monitor.exit_codes import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_STARTUP
from monitor.handoff import HandoffStore, StateHandoff
from monitor.http import Health, StatusServer
from monitor.metrics import (
    BATCH_DURATION,
    BATCHES,
    BROKER_OUTAGES,
    COMMITTED_MESSAGES,
    CONSUMER_LAG,
    ERRORS,
    READY,
    RETRAIN_PENDING,
    RETRAIN_PUSHED,
    RETRAIN_TRIGGERS,
    STAGE_SECONDS,
    Metrics,
)
from monitor.pipeline import BatchResult, Pipeline
from monitor.sinks import (
    AlertLog,
    AlertTopic,
    DeadLetterTopic,
    EffectSink,
    Observer,
    RollbackRequests,
    SevereTrigger,
    Store,
    run_chain,
)
from retrain import datasets
from retrain.badcases import RuleSet
from retrain.datasets import DatasetOptions
from retrain.jobs import DatasetBuilder, RetrainJobs, TriggerPolicy
from retrain.publisher import KafkaPublisher, Publisher, WebhookClient, WebhookPublisher
from retrain.rollback import RollbackSender
from retrain.store import SampleStore

log = logging.getLogger(__name__)

#: Called after each batch is durable and committed: for the demo's live view.
BatchObserver = Callable[[BatchResult], None]
T = TypeVar("T")
PRUNE_INTERVAL_S = 3600.0
#: How often an idle daemon asks whether the broker is there, and how long it waits for the answer.
BROKER_PROBE_S = 5.0


def _started(component: T | None, name: str) -> T:
    if component is None:
        raise RuntimeError(f"{name} is used before startup() created it")
    return component


def trigger_policy(settings: Settings, model: str) -> TriggerPolicy:
    """The retrain triggers ``model`` gets: ``[retrain]`` and ``[datasets]``, with its overrides."""
    r, d = settings.retrain, settings.datasets
    o = d.for_model(model)
    return TriggerPolicy(weekly=o.get("weekly", True), severe=o.get("severe", True),
                         severe_factor=float(o.get("severe_factor", r.severe_factor)),
                         severe_cooldown_s=float(o.get("severe_cooldown_s", r.severe_cooldown_s)),
                         volume=int(o.get("volume_trigger", d.volume_trigger)))


def dataset_builder(settings: Settings, store: SampleStore) -> DatasetBuilder:
    """Builds a model's next dataset version for a trigger, as ``monitor dataset build`` would."""
    b, d = settings.badcases, settings.datasets
    rules = RuleSet.compile(b.rules, settings.slo.latency_threshold_ms)

    def build(model: str, trigger: Mapping[str, Any]) -> dict[str, Any] | None:
        options = DatasetOptions(out_dir=d.dir, fmt=d.format,
                                 max_per_category=int(d.for_model(model).get("max_per_category", d.max_per_category)))
        try:
            manifest = datasets.build(store, model, rules, b.weights(), b.duplicate_threshold, options, trigger)
        except OutputError as exc:  # the retrain is still asked for; whoever reads it sees why it has no dataset
            log.error("%s; the %s trigger of %s goes without a dataset", exc, trigger.get("reason"), model)
            return {"error": str(exc)}
        if manifest is not None:
            log.info("dataset %s (%d records, %d to label) built for the %s trigger of %s", manifest["dataset_id"],
                     manifest["counts"]["records"], manifest["counts"]["to_label"], trigger.get("reason"), model)
        return manifest
    return build


def kafka_client_config(settings: Settings) -> dict[str, Any]:
    """TLS and SASL settings of every Kafka client, in the keyword names both aiokafka (consumer,
    producer, admin) and kafka-python (the retraining-queue producer) take: ``security_protocol``,
    ``ssl_context`` (the CA, client certificate and key files are loaded into it),
    ``sasl_mechanism``, ``sasl_plain_username`` and ``sasl_plain_password`` (SCRAM takes the
    same two). The password is read from ``kafka.sasl_password_file`` here, at start-up."""
    k = settings.kafka
    config: dict[str, Any] = {}
    if k.security_protocol != "PLAINTEXT":
        config["security_protocol"] = k.security_protocol
    context = k.ssl_context()
    if context is not None:
        config["ssl_context"] = context
    if "SASL" in k.security_protocol:
        config.update(sasl_mechanism=k.sasl_mechanism, sasl_plain_username=k.sasl_username,
                      sasl_plain_password=k.sasl_secret())
    return config


def retrain_producer_config(settings: Settings, kafka: Mapping[str, Any]) -> dict[str, Any]:
    """The keywords of the kafka-python producer of the retraining queue (``KafkaPublisher``)."""
    s = settings
    return {"bootstrap_servers": s.kafka.bootstrap_servers.split(","), "client_id": f"{s.kafka.client_id}-retrain",
            **kafka}


def open_store(settings: Settings) -> SampleStore:
    """The daemon's store; with a webhook, pruning keeps samples until the webhook has them too."""
    return SampleStore(settings.store.url, webhook=bool(settings.retrain.webhook_url))


class MetricsListener:
    """Turns the retraining jobs' reports into metrics and readiness."""

    def __init__(self, metrics: Metrics, health: Health) -> None:
        self.metrics = metrics
        self.health = health

    def pushed(self, sink: str, by_model: dict[str, int], pending: int) -> None:
        with self.metrics.lock:
            for model, n in by_model.items():
                self.metrics.inc(RETRAIN_PUSHED, (model, sink), n)
            self.metrics.set(RETRAIN_PENDING, (sink,), pending)

    def triggered(self, model: str, reason: str) -> None:
        with self.metrics.lock:
            self.metrics.inc(RETRAIN_TRIGGERS, (model, reason))


class Service:
    """One daemon process: consume, detect, store, push; serve metrics and health."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None,
                 observers: tuple[BatchObserver, ...] = (), sinks: Sequence[EffectSink] = ()) -> None:
        """``observers`` are called after each batch is committed; ``sinks`` are more
        sinks for the effect chain (``monitor.sinks``): the durable ones run before the
        commit, after the dead-letter topic, the store and the alert topic; the others
        after the commit, after the severe trigger and the alert log, before the observers."""
        self.settings = settings
        self.metrics = metrics or Metrics(__version__)
        self.extra_sinks = (*sinks, *(Observer(observe) for observe in observers))
        #: Where each batch's effects go (``monitor.sinks``), in order; built at start-up.
        self.chain: tuple[EffectSink, ...] = ()
        self.health = Health(settings.http.liveness_timeout_s)
        self.metrics.probe(READY, lambda: float(self.health.ready()[0]))
        self.pipeline = Pipeline(settings, self.metrics)
        self.recent_alerts: deque[Alert] = deque(maxlen=50)
        self.should_exit = False
        self.force_exit = False
        #: When the graceful stop must be over (set by the first signal).
        self.exit_deadline: float | None = None
        #: The fatal error a scheduled job hit, which stops the service.
        self.failure: MonitorError | None = None
        self.http: StatusServer | None = None
        self.store: SampleStore | None = None
        self.source: KafkaSource | None = None
        self.sink: KafkaSink | None = None
        self.publishers: dict[str, Publisher] = {}
        self.jobs: RetrainJobs | None = None
        #: Sends canary rollback requests (``canary.rollback_webhook_url``); None without one.
        self.rollbacks: RollbackSender | None = None
        self.scheduler: BackgroundScheduler | None = None
        self.committed = 0
        self.handoff: StateHandoff | None = None
        self._fetch_seconds = 0.0  # time in fetch since the last batch (an idle poll counts too)
        self._broker_down = False
        self._next_probe = 0.0  # monotonic time of the next broker probe (when fetches come back empty)
        # Blocking work (the store, the retraining publishers) runs here, so that at
        # exit it can be abandoned instead of joined: asyncio.to_thread's executor is
        # joined without a timeout when the loop closes.
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="monitor-io")
        # The pipeline runs off the event loop, so that the consumer's next fetch (and the
        # broker's work on it) overlaps this batch's processing instead of following it.
        self._pipeline_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="monitor-pipeline")
        self._task: asyncio.Task[Any] | None = None
        self._looping = False
        # What started registers how it stops, so a stop undoes exactly what started, last
        # first, however far the start-up got (aiokafka's and APScheduler's style).
        self._stack = contextlib.AsyncExitStack()

    # -- lifecycle ------------------------------------------------------------------
    async def run(self) -> int:
        """Start, loop until asked to stop, shut down; return the exit code."""
        self._task = asyncio.current_task()
        code = EXIT_OK
        try:
            try:
                await self.startup()
            except (FatalError, TransientError, OSError) as exc:
                log.error("start-up failed: %s", exc)
                return EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_STARTUP
            await self.main_loop()
            if self.failure is not None:
                raise self.failure
        except FatalError as exc:
            log.error("stopping: %s", exc)
            code = EXIT_FAILURE
        except asyncio.CancelledError:
            log.warning("stopped at once: the batch in hand was not committed and will be read again")
            code = EXIT_FAILURE
        except Exception:
            log.exception("stopping on an unexpected error; the batch in hand will be read again")
            code = EXIT_FAILURE
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await self.shutdown()
        return code

    def request_exit(self) -> None:
        """First call: finish the batch in hand, then shut down, within the shutdown
        timeout. Second: stop at once."""
        if self.should_exit:
            self.force_exit = True
            log.warning("second signal: stopping at once")
            if self._task is not None:
                self._task.cancel()
            return
        self.should_exit = True
        self.exit_deadline = time.monotonic() + self.settings.service.shutdown_timeout_s
        log.info("shutting down within %.0fs: finishing the batch in hand (signal again to stop at once)",
                 self.settings.service.shutdown_timeout_s)
        if not self._looping and self._task is not None:
            self._task.cancel()  # still starting (waiting for the broker): nothing to finish

    def _remaining(self) -> float:
        return max(0.0, (self.exit_deadline or time.monotonic()) - time.monotonic())

    async def _blocking(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(func, *args))

    async def startup(self) -> None:
        s = self.settings
        token = s.http.bearer_token()
        self.http = StatusServer(s.http.host, s.http.port, self.metrics.registry(), self.health, self.status,
                                 pages={"/report": ReportPage(lambda: self.store, s)}, token=token)
        self.http.start()
        self._on_stop("the HTTP server", self._stop_http)
        if not token and not self.http.loopback:
            log.warning("/report (what users wrote) answers 403 on %s: set MONITOR_HTTP_TOKEN or http.token_file to "
                        "serve it with a bearer token, or bind http.host to 127.0.0.1", s.http.host)
        log.info("metrics and health on %s (/metrics, /healthz, /readyz, /status); bad-case report on %s/report",
                 self.http.url, self.http.url)
        self.health.problem("startup", "connecting to the store")
        self.store = await self._blocking(open_store, s)
        self._on_stop("store", functools.partial(self._blocking, self.store.close))
        self.pipeline.baselines = await self._blocking(self.store.baselines)
        if self.pipeline.baselines:
            log.info("reference samples from `monitor baseline` for %s",
                     ", ".join(f"{m} {v}" for m, v in sorted(self.pipeline.baselines)))
        kafka = kafka_client_config(s)
        self.health.problem("startup", "connecting to Kafka")
        if s.kafka.create_topics:
            wanted = {t: s.kafka.topic_partitions for t in
                      (s.topics.tracking, s.topics.feedback, s.topics.deadletter, s.topics.retrain, s.topics.alerts)
                      if t}
            counts = await ensure_topics(s.kafka.bootstrap_servers, wanted, s.kafka.connect_timeout_s,
                                         s.kafka.topic_replication, **kafka)
            if counts.get(s.topics.tracking) != counts.get(s.topics.feedback):
                log.warning("topics %s (%s partitions) and %s (%s) differ in partition count: feedback and its "
                            "prediction may land in different members and fail to join", s.topics.tracking,
                            counts.get(s.topics.tracking), s.topics.feedback, counts.get(s.topics.feedback))
        self.sink = KafkaSink(s.kafka.bootstrap_servers, s.kafka.client_id, **kafka)
        self._on_stop("producer", self.sink.stop)
        await self.sink.start(s.kafka.connect_timeout_s)
        self.source = KafkaSource(
            [s.topics.tracking, s.topics.feedback], s.kafka.bootstrap_servers, s.kafka.group_id,
            max_records=s.kafka.max_batch_records, fetch_timeout_ms=s.kafka.fetch_timeout_ms,
            auto_offset_reset=s.kafka.auto_offset_reset, session_timeout_ms=s.kafka.session_timeout_ms,
            rebalance_timeout_ms=s.kafka.rebalance_timeout_ms, heartbeat_interval_ms=s.kafka.heartbeat_interval_ms,
            max_poll_interval_ms=s.kafka.max_poll_interval_ms, commit_timeout_s=s.kafka.request_timeout_s,
            client_id=s.kafka.client_id, **kafka)
        self.handoff = StateHandoff(self.pipeline, HandoffStore(self.store.engine, self.store.url), self.source, s,
                                    self.metrics, self._blocking)
        self.source.on_assigned = self._assigned
        self.source.on_revoked = self._revoked
        self._on_stop("consumer", self.source.stop)
        await self.source.start(s.kafka.connect_timeout_s)
        self._start_retraining(kafka)
        self.chain = self._effect_chain()
        self.health.problem("startup", "joining the consumer group")
        log.info("model-monitor %s consuming %s and %s as group %s", __version__, s.topics.tracking,
                 s.topics.feedback, s.kafka.group_id)

    def _start_retraining(self, kafka: dict[str, Any]) -> None:
        s, r = self.settings, self.settings.retrain
        try:
            cron = CronTrigger.from_crontab(r.trigger_cron, timezone="UTC") if r.trigger_cron else None
        except ValueError as exc:
            raise ConfigError(f"retrain.trigger_cron {r.trigger_cron!r} is not a crontab expression: {exc}") from None
        self.publishers["queue"] = KafkaPublisher(s.topics.retrain, timeout_s=s.kafka.request_timeout_s,
                                                  **retrain_producer_config(s, kafka))
        self._on_stop("the retraining publishers", self._close_publishers)
        if r.webhook_url:
            secrets = r.webhook_secrets()
            try:
                self.publishers["webhook"] = WebhookPublisher(
                    r.webhook_url, r.webhook_timeout_s, secret=secrets, retries=r.webhook_retries,
                    backoff_s=r.webhook_backoff_s)
            except ValueError as exc:
                raise ConfigError(f"retrain.webhook_secret: {exc}") from None
            if not secrets:
                log.warning("webhook requests are not signed: set MONITOR_RETRAIN_WEBHOOK_SECRET or "
                            "retrain.webhook_secret_file so that the receiver can trust them")
        store = _started(self.store, "the store")
        self.rollbacks = self._rollback_sender(store)
        self.jobs = RetrainJobs(store, self.publishers, MetricsListener(self.metrics, self.health),
                                batch_size=r.push_batch_size, cooldown_s=r.severe_cooldown_s, weekly=cron,
                                retention_s=s.store.retention_days * 86400 if s.store.retention_days else None,
                                policy=functools.partial(trigger_policy, s),
                                datasets=dataset_builder(s, store) if s.datasets.on_trigger else None)
        self.scheduler = BackgroundScheduler(
            timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300})
        self.scheduler.add_job(self._job("retrain_push", self.jobs.push), "interval",
                               seconds=r.push_interval_s, id="push", name="push flagged samples")
        if cron is not None:
            # Also at start-up: a weekly trigger missed while the daemon was down is sent now, once.
            self.scheduler.add_job(self._job("retrain_weekly", self.jobs.weekly), cron, id="weekly",
                                   name="weekly retrain trigger")
            self.scheduler.add_job(self._job("retrain_weekly", self.jobs.weekly), name="missed weekly trigger")
        if s.datasets.volume_trigger or any("volume_trigger" in o for o in s.datasets.overrides):
            self.scheduler.add_job(self._job("retrain_volume", self.jobs.volume), "interval",
                                   seconds=r.push_interval_s, id="volume", name="volume retrain trigger")
        self.scheduler.add_job(self._job("store_prune", self.jobs.prune), "interval", seconds=PRUNE_INTERVAL_S,
                               id="prune", name="prune the store")
        if self.rollbacks is not None:
            # Also at start-up: a request recorded but not sent before a restart is sent now.
            send = self._job("canary_rollback", self.rollbacks.send)
            self.scheduler.add_job(send, "interval", seconds=r.push_interval_s, id="rollback",
                                   name="send canary rollback requests")
            self.scheduler.add_job(send, name="send canary rollback requests left from before")
        self.scheduler.start()
        self._on_stop("scheduler", self._stop_scheduler)

    def _rollback_sender(self, store: SampleStore) -> RollbackSender | None:
        """The sender of canary rollback requests, with the retraining webhook's retries; None without a URL."""
        c, r = self.settings.canary, self.settings.retrain
        if not c.rollback_webhook_url:
            return None
        secrets = c.rollback_webhook_secrets()
        try:
            client = WebhookClient(c.rollback_webhook_url, r.webhook_timeout_s, secret=secrets,
                                   retries=r.webhook_retries, backoff_s=r.webhook_backoff_s, name="rollback webhook")
        except ValueError as exc:
            raise ConfigError(f"canary.rollback_webhook_secret: {exc}") from None
        if not secrets:
            log.warning("rollback requests are not signed: set MONITOR_CANARY_ROLLBACK_WEBHOOK_SECRET or "
                        "canary.rollback_webhook_secret_file so that the receiver can trust them")
        sender = RollbackSender(store, client)
        self._on_stop("the rollback webhook", functools.partial(self._blocking, sender.close))
        return sender

    def _send_rollbacks(self) -> None:
        """Send the rollback requests just recorded, as a scheduler job (off the event loop)."""
        if self.scheduler is not None and self.rollbacks is not None:
            self.scheduler.add_job(self._job("canary_rollback", self.rollbacks.send),
                                   name="send canary rollback requests")

    def _effect_chain(self) -> tuple[EffectSink, ...]:
        """Dead letters, the store, canary rollback requests (with a rollback webhook) and the
        alert topic before the commit; the severe retrain trigger, the alert log line, then the
        extra sinks and observers after it."""
        s = self.settings
        producer, store = _started(self.sink, "the producer"), _started(self.store, "the store")
        chain: list[EffectSink] = [DeadLetterTopic(producer, s.topics.deadletter), Store(store, self._blocking)]
        if self.rollbacks is not None:  # after the store: the alert is recorded before its rollback request
            chain.append(RollbackRequests(store, self._blocking, self._send_rollbacks))
        if s.topics.alerts:
            chain.append(AlertTopic(producer, s.topics.alerts))
        chain += [SevereTrigger(_started(self.jobs, "the retraining jobs"), s.retrain.severe_kinds, self._schedule),
                  AlertLog(log), *self.extra_sinks]
        return tuple(chain)

    def _schedule(self, job: Callable[[Alert], Any], alert: Alert) -> None:
        """Run ``job(alert)`` (a severe trigger) as a scheduler job, off the event loop."""
        if self.scheduler is not None:
            self.scheduler.add_job(self._job("retrain_severe", job), args=[alert],
                                   name=f"severe drift trigger for {alert.model}")

    def _job(self, stage: str, func: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a scheduled job: its errors are logged, counted and shown on /readyz; a
        transient one is retried at the next run, a fatal one stops the service."""
        def run(*args: Any) -> Any:
            try:
                result = func(*args)
            except MonitorError as exc:
                transient = isinstance(exc, TransientError)
                log.error("%s failed (%s): %s", stage, "will retry" if transient else "fatal", exc)
                with self.metrics.lock:
                    self.metrics.inc(ERRORS, (stage, str(transient).lower()))
                self.health.problem(stage, str(exc))
                if not transient and self.failure is None:
                    self.failure = exc
                    self.should_exit = True  # the main loop sees it after its current fetch
                return None
            self.health.problem(stage, None)
            return result
        return run

    async def main_loop(self) -> None:
        source = _started(self.source, "the consumer")
        self._looping = True
        while not self.should_exit:
            self.health.beat()
            fetch_started = time.perf_counter()
            messages = await source.fetch()
            self._fetch_seconds += time.perf_counter() - fetch_started
            if source.assigned:
                self.health.problem("startup", None)
            if not messages:
                self._update_lag()
                await self._probe_broker(source)
                continue
            if self._broker_down:
                self._broker_back()
            async with source.batch_lock:  # a rebalance waits for this batch's commit
                messages = source.owned(messages)
                if messages:
                    await self.process(messages)
        if not self.force_exit and self.failure is None:
            if self.settings.service.checkpoint_interval_s:
                try:  # the join's waiting feedback goes with it, to whoever reads its partition next
                    await self._save_checkpoint()
                    return
                except MonitorError as exc:  # the next start learns again: worth saying, not failing for
                    log.error("could not save the pipeline's state at shutdown: %s", exc)
            drained = self.pipeline.drain()
            if drained.samples:
                log.info("storing %d feedback samples still waiting for their prediction", len(drained.samples))
                await run_chain([sink for sink in self.chain if sink.durable], drained, retry=self._retry)

    async def _probe_broker(self, source: KafkaSource) -> None:
        """Nothing came: ask the broker whether it is there (every BROKER_PROBE_S at most)."""
        now = time.monotonic()
        if now < self._next_probe:
            return
        self._next_probe = now + BROKER_PROBE_S
        why = await source.unreachable(BROKER_PROBE_S)
        if why is None:
            if self._broker_down:
                self._broker_back()
            return
        self._broker_unreachable(why)

    def _broker_unreachable(self, why: str) -> None:
        """The broker does not answer: count the outage once, say so on /readyz."""
        if not self._broker_down:
            self._broker_down = True
            with self.metrics.lock:
                self.metrics.inc(BROKER_OUTAGES, ())
            log.warning("%s; waiting for it (nothing is committed meanwhile)", why)
        self.health.problem("broker", why)

    def _broker_back(self) -> None:
        self._broker_down = False
        self.health.problem("broker", None)
        log.info("the broker answers again")

    async def process(self, messages: list[RawMessage]) -> BatchResult:
        """One batch: the pipeline, then its effect chain: the durable sinks, the commit
        (with metrics and a checkpoint when due), the sinks after the commit."""
        source = _started(self.source, "the consumer")
        started = time.perf_counter()
        result = await asyncio.get_running_loop().run_in_executor(self._pipeline_thread, self.pipeline.process,
                                                                  messages)
        processed = time.perf_counter()
        await run_chain(self.chain, result, retry=self._retry,
                        commit=functools.partial(self._commit, source, messages, result, started, processed))
        return result

    async def _commit(self, source: KafkaSource, messages: list[RawMessage], result: BatchResult, started: float,
                      processed: float) -> None:
        """The batch's effects are durable: commit its offsets, count it, save a checkpoint when due."""
        durable = time.perf_counter()
        committed = await self._retry("commit", lambda: source.commit(messages))
        self.recent_alerts.extend(result.alerts)
        stages = {**result.stages, "fetch": self._fetch_seconds, "store": durable - processed,
                  "commit": time.perf_counter() - durable}
        self._fetch_seconds = 0.0
        with self.metrics.lock:
            self.metrics.inc_many(STAGE_SECONDS, {(k,): v for k, v in stages.items()})
            self.metrics.inc(BATCHES, ())
            self.metrics.inc(COMMITTED_MESSAGES, (), committed)
            self.metrics.observe_many(BATCH_DURATION, (), np.asarray([time.perf_counter() - started]))
        self.committed += committed  # last: whoever sees it committed sees the batch's metrics too
        self._update_lag()
        if self.handoff is not None and self.handoff.enabled and time.monotonic() >= self.handoff.due:
            await self._retry("checkpoint", self._save_checkpoint)

    # -- the handoff of the pipeline's state (monitor/handoff.py) ---------------------------
    async def _assigned(self, assigned: set[TopicPartition]) -> None:
        await _started(self.handoff, "the state handoff").on_assigned(assigned)

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        await _started(self.handoff, "the state handoff").on_revoked(revoked)

    async def _save_checkpoint(self) -> None:
        await _started(self.handoff, "the state handoff").save()


    async def _retry(self, stage: str, step: Callable[[], Awaitable[T]]) -> T:
        """Run ``step`` until it succeeds, backing off on transient errors; give up (fatal)
        when the shutdown deadline has passed."""
        delay = 0.1
        broker_failed = False
        while True:
            try:
                result = await step()
            except TransientError as exc:
                with self.metrics.lock:
                    self.metrics.inc(ERRORS, (stage, "true"))
                if isinstance(exc, BrokerUnavailable):  # /readyz names the broker, whichever step met it
                    broker_failed = True
                    self._broker_unreachable(f"{stage}: {exc}")
                else:
                    self.health.problem(stage, str(exc))
                if self.should_exit and self._remaining() < delay:
                    raise FatalError(f"{stage} still failing at shutdown; the batch stays uncommitted and will "
                                     f"be read again: {exc}") from exc
                log.warning("%s failed, retrying in %.1fs: %s", stage, delay, exc)
                self.health.beat()  # alive, and waiting: /readyz says why
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except FatalError:
                with self.metrics.lock:
                    self.metrics.inc(ERRORS, (stage, "false"))
                raise
            else:
                self.health.problem(stage, None)
                if broker_failed and self._broker_down:
                    self._broker_back()
                return result

    def _update_lag(self) -> None:
        if self.source is None:
            return
        lag = {(topic, str(partition)): float(n) for (topic, partition), n in self.source.lag().items()}
        with self.metrics.lock:  # partitions this member lost must not keep their last lag
            self.metrics.replace(CONSUMER_LAG, lag)

    async def shutdown(self) -> None:
        """Stop everything that started, within the time left of the shutdown timeout;
        safe after a failed start-up."""
        if self.exit_deadline is None:
            self.exit_deadline = time.monotonic() + self.settings.service.shutdown_timeout_s
        self.health.problem("shutdown", "shutting down")
        await self._stack.aclose()  # last started, first stopped; each within the time left
        # Whatever is still blocked in a thread is abandoned, not joined.
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._pipeline_thread.shutdown(wait=False, cancel_futures=True)
        log.info("stopped after committing %d messages", self.committed)

    def _on_stop(self, what: str, stop: Callable[[], Awaitable[Any]]) -> None:
        """Register how a part that started stops, at shutdown, within the time left."""
        async def bounded() -> None:
            try:
                await asyncio.wait_for(stop(), max(0.1, self._remaining()))
            except TimeoutError:
                log.error("shutdown: %s did not finish within service.shutdown_timeout_s; abandoned", what)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                log.error("shutdown: %s was cancelled from inside (a client's own task)", what)
            except Exception as exc:  # keep shutting the rest down, but say what failed
                log.error("shutdown: %s failed: %s", what, exc)
        self._stack.push_async_callback(bounded)

    async def _stop_scheduler(self) -> None:
        if self.scheduler is None:
            return
        graceful = not self.force_exit
        scheduler, self.scheduler = self.scheduler, None
        await self._blocking(scheduler.shutdown, graceful)
        if self.jobs is not None and graceful and self.failure is None:
            await self._blocking(self._job("retrain_push", self.jobs.push))  # the final push

    async def _close_publishers(self) -> None:
        for publisher in list(self.publishers.values()):
            await self._blocking(publisher.close)
        self.publishers.clear()

    async def _stop_http(self) -> None:
        if self.http is not None:
            self.http.stop()
            self.http = None

    @property
    def overran(self) -> bool:
        """Whether the stop was forced or ran out of time (threads may still be blocked)."""
        return self.force_exit or (self.exit_deadline is not None and time.monotonic() > self.exit_deadline)

    def status(self) -> dict[str, Any]:
        """What /status shows: the pipeline's position, bounds and the latest alerts."""
        ready, why = self.health.ready()
        # list() and sorted() copy in one C call: the event loop and the pipeline thread change these.
        assigned = list(self.source.assigned) if self.source else []
        return {
            "version": __version__, "ready": ready, "why": why,
            "messages_read": self.pipeline.position, "messages_committed": self.committed,
            "assigned": sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned),
            "models": sorted(self.pipeline.models),
            "recent_alerts": [a.to_dict() for a in list(self.recent_alerts)[-20:]],
        }


def run_daemon(settings: Settings) -> int:
    """Run the daemon in this process until SIGTERM or SIGINT; return its exit code."""
    service = Service(settings)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, service.request_exit)
        try:
            return await service.run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)

    code = asyncio.run(main())
    if service.overran:
        # Threads still blocked on a dead broker or database would keep the process
        # alive at interpreter exit: the stop was promised within the timeout.
        logging.shutdown()
        os._exit(code)
    return code

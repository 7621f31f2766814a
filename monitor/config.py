"""One typed settings object, read from one TOML file and the environment.

Every key has a default. ``MONITOR_<SECTION>_<KEY>`` environment variables override
the file (``MONITOR_KAFKA_BOOTSTRAP_SERVERS=broker:9092``). An unknown section or key,
in the file or the environment, is an error that names it and suggests the nearest
known one. ``monitor config`` prints the effective settings.

>>> s = load_settings(toml_text='[slo]\\nlatency_threshold_ms = 250', environ={})
>>> s.slo.latency_threshold_ms, s.kafka.group_id
(250.0, 'model-monitor')
>>> load_settings(toml_text='[slo]\\nlatency_treshold_ms = 250', environ={})
Traceback (most recent call last):
...
common.errors.ConfigError: unknown key slo.latency_treshold_ms (did you mean slo.latency_threshold_ms?)
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
import ssl
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from collectors.contract import ALERT_KINDS
from collectors.redact import DEFAULT_PHONE_REGIONS, PHONE_REGIONS
from collectors.redact import KINDS as REDACTION_KINDS
from common.errors import ConfigError
from retrain.badcases import DEFAULT_RULES, PriorityWeights, RuleSet
from retrain.webhook import hide_url_secrets, webhook_key

ENV_PREFIX = "MONITOR_"
#: Settings that hold a secret: never printed (``monitor config`` shows "<set>"), never in a repr.
SECRET_KEYS = frozenset({"sasl_password", "webhook_secret", "token", "secret", "rollback_webhook_secret"})
ENV_SOURCE = "the environment"
#: Environment variables with our prefix that are not settings.
ENV_NOT_SETTINGS = frozenset({"MONITOR_CONFIG"})


def _key(default: Any, doc: str, **checks: Any) -> Any:
    """A setting: its default, one line of documentation, and its bounds."""
    return field(default=default, metadata={"doc": doc, **checks})


def _list_key(default: list[str], doc: str) -> Any:
    return field(default_factory=lambda: list(default), metadata={"doc": doc})


def _tables_key(default: list[dict[str, Any]], doc: str) -> Any:
    """A list of TOML tables (``[[section.key]]``), kept as plain data and checked in ``_validate``."""
    return field(default_factory=lambda: [dict(t) for t in default], metadata={"doc": doc, "tables": True})


@dataclass
class KafkaSettings:
    """Where to read from and how to behave in the consumer group."""

    bootstrap_servers: str = _key("localhost:9092", "Kafka bootstrap servers, comma-separated host:port.")
    group_id: str = _key("model-monitor", "Consumer group; start more daemons with the same id to scale out.")
    client_id: str = _key("model-monitor", "Client id reported to the broker.")
    auto_offset_reset: str = _key("earliest", "Where a new group starts: earliest or latest.",
                                  choices=("earliest", "latest"))
    max_batch_records: int = _key(5000, "Most messages processed (and committed) as one batch.", min=1)
    fetch_timeout_ms: int = _key(200, "How long one fetch waits for messages.", min=1)
    session_timeout_ms: int = _key(10000, "Consumer group session timeout.", min=1000)
    rebalance_timeout_ms: int = _key(10000, "How long a rebalance waits for members to rejoin.", min=1000)
    heartbeat_interval_ms: int = _key(3000, "Consumer group heartbeat interval.", min=100)
    max_poll_interval_ms: int = _key(300_000, "Longest a batch may take (retries of its effects included) before "
                                              "the group gives its partitions to another member.", min=1000)
    request_timeout_s: float = _key(30.0, "How long a commit or a retraining-queue send waits for the broker.",
                                    min=0.1)
    connect_timeout_s: float = _key(30.0, "At start-up, how long to wait for the broker before giving up.", min=0.1)
    create_topics: bool = _key(True, "Create missing topics at start-up.")
    topic_partitions: int = _key(4, "Partitions of topics created at start-up.", min=1)
    topic_replication: int = _key(3, "Replication factor of topics created at start-up (1 for a one-broker "
                                     "development cluster).", min=1)
    security_protocol: str = _key("PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (for every client: "
                                               "consumer, producers, admin, the retraining-queue producer).",
                                  choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))
    sasl_mechanism: str = _key("PLAIN", "SASL mechanism when security_protocol uses SASL: PLAIN, SCRAM-SHA-256 or "
                                        "SCRAM-SHA-512.", choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"))
    sasl_username: str = _key("", "SASL user name.")
    sasl_password: str = field(default="", repr=False, metadata={"doc": (
        "SASL password; prefer the environment variable MONITOR_KAFKA_SASL_PASSWORD or sasl_password_file.")})
    sasl_password_file: str = _key("", "File whose content, stripped, is sasl_password (e.g. a mounted Kubernetes "
                                       "secret); set this or sasl_password, not both.")
    ssl_cafile: str = _key("", "With SSL or SASL_SSL: PEM file of the certificate authorities to trust (empty: the "
                               "system's).")
    ssl_certfile: str = _key("", "With SSL or SASL_SSL: PEM file of this client's certificate, for brokers that "
                                 "authenticate clients by TLS.")
    ssl_keyfile: str = _key("", "PEM file of the private key of ssl_certfile (empty: it is in ssl_certfile).")

    def sasl_secret(self) -> str:
        """The SASL password, read from ``sasl_password_file`` if set."""
        if self.sasl_password_file:
            return _read_secret_file("kafka.sasl_password_file", self.sasl_password_file)
        return self.sasl_password

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of every Kafka client (None without SSL): the system's trust store, or
        ``ssl_cafile``'s, and the client certificate if one is set."""
        if not self.security_protocol.endswith("SSL"):
            return None
        try:
            context = ssl.create_default_context(cafile=self.ssl_cafile or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"kafka.ssl_cafile {self.ssl_cafile} is not a PEM file of certificates: "
                              f"{getattr(exc, 'strerror', None) or exc.__class__.__name__}") from None
        if self.ssl_certfile:
            try:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile or None)
            except (OSError, ssl.SSLError) as exc:  # the message may quote neither file's content
                raise ConfigError(f"kafka.ssl_certfile {self.ssl_certfile} and kafka.ssl_keyfile "
                                  f"{self.ssl_keyfile or '(none)'} are not a certificate and its key: "
                                  f"{getattr(exc, 'reason', None) or exc.__class__.__name__}") from None
        return context


@dataclass
class TopicSettings:
    """Topic names. Tracking and feedback must have the same partition count."""

    tracking: str = _key("monitor.tracking", "Tracking events: predictions, impressions, clicks, conversions.")
    feedback: str = _key("monitor.feedback", "User feedback: thumbs, complaints, corrections, late labels.")
    deadletter: str = _key("monitor.deadletter", "Bad input, with the reason in headers and the original bytes.")
    retrain: str = _key("monitor.retrain", "The retraining queue: flagged samples and retrain triggers.")
    alerts: str = _key("monitor.alerts", "Alert records as JSON; empty to not publish them.")


@dataclass
class CollectSettings:
    """Bounds on a single message; anything past them is dead-lettered."""

    max_message_bytes: int = _key(256 * 1024, "Largest message accepted, in bytes.", min=64)
    max_features: int = _key(200, "Most entries in features, prediction or segment.", min=1)
    max_string_length: int = _key(4096, "Longest string value accepted.", min=1)
    max_depth: int = _key(8, "Deepest nesting accepted in free-form fields.", min=1)
    max_future_skew_s: float = _key(300.0, "How far ahead of the clock a timestamp may be.", min=0)


@dataclass
class RedactSettings:
    """Personal data removed from everything stored or queued for retraining."""

    kinds: list[str] = _list_key(list(REDACTION_KINDS),
                                 "Finders applied to the scanned strings: " + ", ".join(REDACTION_KINDS) + ".")
    fields: list[str] = _list_key([], "Fields replaced whole, as dotted paths, e.g. features.user_email.")
    scan: list[str] = _list_key(["*"], "Parts of an event whose strings are searched, as dotted paths (comment, "
                                       "features.query); * for all but event_id, request_id, type, kind, status, ts.")
    phone_regions: list[str] = _list_key(list(DEFAULT_PHONE_REGIONS),
                                         "Countries whose national writing of phone numbers is recognised, the "
                                         "first for numbers with no country code; +/00 numbers of every country are.")
    pseudonymise: list[str] = _list_key([], "Kinds replaced by a keyed hash, [PHONE:1a2b3c4d5e], not a placeholder: "
                                            "one value, one pseudonym. Needs redact.secret or redact.secret_file.")
    # repr=False: the key never reaches a log line, a repr or the settings fingerprint.
    secret: str = field(default="", repr=False, metadata={
        "doc": "Key of the pseudonyms (set it by MONITOR_REDACT_SECRET); shown as <set>, never printed."})
    secret_file: str = _key("", "File holding the key of the pseudonyms, used when redact.secret is empty.")
    recognizer: str = _key("", "Your own recogniser for what patterns cannot find (names, addresses), as "
                               "package.module:factory (see the README); empty for none.")


@dataclass
class JoinSettings:
    """The feedback-to-prediction join by request_id."""

    ttl_s: float = _key(3600.0, "Feedback joins a prediction stamped at most this long before it.", min=1)
    max_predictions: int = _key(200_000, "Most predictions kept waiting for feedback.", min=1)
    feedback_wait_s: float = _key(600.0, "How long (event time) feedback waits for a late prediction.", min=0)
    max_pending: int = _key(50_000, "Most feedback events kept waiting for their prediction.", min=0)
    watermark_max_step_s: float = _key(
        60.0, "Most one event may move event time ahead (a bad clock must not expire everything).", min=0.001)


@dataclass
class DetectSettings:
    """The detectors run per model and version."""

    reference_size: int = _key(2000, "Values in the warm-up reference of each feature and score.", min=10)
    window_size: int = _key(300, "Values in the short sliding window tested against the reference.", min=10)
    check_every: int = _key(50, "Values between two tests of the short window.", min=1)
    long_window: int = _key(2000, "Values in the long window, for changes too small for the short one; "
                                  "0 for none.", min=0)
    long_check_every: int = _key(250, "Values between two tests of the long window.", min=1)
    false_alarms_per_million: float = _key(
        1.0, "False alarms per million events per model the detectors aim at, at most: shared among its "
             "drift and rate tests (Bonferroni).", min=1e-6, max=1e5)
    max_categories: int = _key(50, "Categories tracked per categorical feature (the rest share one).", min=2)
    rate_warmup: int = _key(2000, "Events used to learn the normal missing, error and complaint rates.", min=10)
    rate_odds_ratio: float = _key(2.0, "Rise in the odds of a rate the rate detectors look for.", min=1.01)
    feedback_bucket_s: float = _key(5.0, "Event-time bucket in which the negative-feedback rate is counted.",
                                    min=0.001)
    feedback_lateness_s: float = _key(
        10.0, "How long after its end a feedback-rate bucket waits for late events before it is tested.", min=0)
    feedback_burn_in_s: float = _key(
        60.0, "Event time at the start of a model's stream not used for its negative-feedback rate "
              "(its feedback is still on the way).", min=0)
    adwin_delta: float = _key(0.0, "Also run river's ADWIN with this delta on every numeric feature (fast on "
                                    "large mean shifts, outside the false-alarm budget); 0 for none.", min=0, max=0.5)
    decay_detector: str = _key("cusum", "Detector on the error stream from late labels.",
                               choices=("cusum", "ddm", "hddm_a", "adwin", "fhddm"))
    decision_threshold: float = _key(0.5, "A score at or above this predicts the positive label.", min=0, max=1)
    max_models: int = _key(50, "Most models tracked; more share the model label __other__.", min=1)
    max_versions: int = _key(3, "Most versions tracked per model; the least recently seen is dropped.", min=1)
    max_features: int = _key(100, "Most features tracked per model version.", min=1)
    sample_rate: float = _key(
        1.0, "Share of each version's predictions whose features and outputs go through the drift and "
             "missing-rate tests: a sample by event_id, the same in every runner and member. Latency, status, "
             "labels and feedback always count every event; feature type mismatches and the feature bound are "
             "counted on the sample. Below 1 a worker carries more events per second; drift is seen after "
             "about 1/sample_rate times as many predictions.", min=0.001, max=1)
    drift_share: float = _key(0.5, "Also raise one dataset-level data_drift (feature *) when this share of a "
                                   "version's features drifted within drift_share_window events; 0 to never.",
                              min=0, max=1)
    drift_share_window: int = _key(5000, "Events within which feature drifts count toward drift_share.", min=1)
    drift_window: int = _key(500, "Recent predictions per model from which drift samples are drawn.", min=1)
    drift_samples: int = _key(50, "Predictions flagged for retraining when a drift alert fires.", min=0)


@dataclass
class SLOSettings:
    """Service-level objectives and their burn-rate alerts."""

    latency_threshold_ms: float = _key(100.0, "A request slower than this is bad for the latency SLO.", min=0)
    latency_objective: float = _key(0.99, "Share of requests that must be under the latency threshold.",
                                    min=0.5, max=0.999999)
    availability_objective: float = _key(0.999, "Share of requests that must have status ok.",
                                         min=0.5, max=0.999999)
    # Each tier fires when its long window holds significantly more bad requests than a burn
    # of exactly its factor gives, at its share of detect.false_alarms_per_million (detectors/
    # slo.py). What a window resolves below is the burn a full long window must show, at the
    # share of a model with 31 tests (10 numeric, 2 categorical features): it hardly moves
    # with the share (5 tests or 100: within 5%). Windows were sized on the detection benchmark
    # (benchmarks/RESULTS.md, "SLO tiers: a stated false-alarm rate").
    burn_factor: float = _key(
        10.0, "slo_burn fires when the error budget burns more than this many times too fast: significantly "
              "so over the long window (a stated false-alarm rate), and at least so over the short one.", min=1)
    long_window: int = _key(
        2000, "Requests in the fast tier's long window: 2,000 resolve a burn of 13.7 against a 99% objective, "
              "23 against 99.9% (a longer one resolves a smaller burn, later).", min=1)
    short_window: int = _key(
        200, "Requests in the fast tier's short window, over which the burn must still be at least burn_factor "
             "(it is going on now): 200 hold 20 bad requests at a burn of 10 against 99%.", min=1)
    slow_burn_factor: float = _key(
        3.0, "The slow tier fires past this burn rate over its windows, as the fast one does; 0 turns it off.",
        min=0)
    slow_long_window: int = _key(
        10000, "Requests in the slow tier's long window: 10,000 resolve a burn of 3.9 against 99% (4% bad is "
               "caught in about 10,000 requests; 8,000 miss it at times), 5.9 against 99.9%.", min=1)
    slow_short_window: int = _key(
        1000, "Requests in the slow tier's short window, over which the burn must still be at least "
              "slow_burn_factor.", min=1)


@dataclass
class StoreSettings:
    """The flagged-sample store (SQLAlchemy)."""

    url: str = field(default="sqlite:///model-monitor.db", repr=False, metadata={  # it may hold a password
        "doc": "SQLAlchemy URL; postgresql+psycopg://... when scaled out. A password in it is never shown; prefer "
               "the environment variable MONITOR_STORE_URL."})
    retention_days: float = _key(30.0, "Delivered samples, alerts and sent triggers older than this are "
                                       "deleted (hourly); 0 keeps everything.", min=0)


@dataclass
class RetrainSettings:
    """Pushing flagged samples to the retraining queue, and retrain triggers."""

    push_interval_s: float = _key(10.0, "How often unpushed samples are pushed.", min=0.1)
    push_batch_size: int = _key(500, "Most samples pushed in one go.", min=1)
    trigger_cron: str = _key("0 3 * * mon", "Weekly retrain trigger (crontab, UTC); empty to disable.")
    severe_kinds: list[str] = _list_key(["data_drift", "prediction_drift", "metric_decay"],
                                        "Alert kinds that can trigger a retrain at once (retraining fixes these).")
    severe_factor: float = _key(2.0, "Such an alert whose score is this many times its threshold triggers at once.",
                                min=1)
    severe_cooldown_s: float = _key(3600.0, "Least time between two immediate triggers of a model.", min=0)
    webhook_url: str = _key("", "Also POST pushed samples (JSON lines) to this URL; empty to disable.")
    webhook_timeout_s: float = _key(10.0, "Timeout of one webhook request.", min=0.1)
    webhook_secret: str = field(default="", repr=False, metadata={"doc": (
        "Signs webhook requests (Standard Webhooks headers webhook-id, webhook-timestamp, webhook-signature); "
        "several space-separated sign with each, for a rotation; empty: unsigned. Prefer the environment "
        "variable or webhook_secret_file.")})
    webhook_secret_file: str = _key("", "File whose content, stripped, is webhook_secret (e.g. a mounted "
                                        "Kubernetes secret); set this or webhook_secret, not both.")
    webhook_retries: int = _key(4, "Retries of a webhook request that failed for a transient reason (refused, "
                                   "timed out, 408, 429, 5xx) before the push gives up until the next one.", min=0)
    webhook_backoff_s: float = _key(0.5, "Base of the backoff between webhook retries: retry n waits a random "
                                         "time up to this times 2^n (at least a 429's or 503's Retry-After).",
                                    min=0)

    def webhook_secrets(self) -> list[str]:
        """The secrets that sign webhook requests, read from ``webhook_secret_file`` if set; none: unsigned."""
        if not self.webhook_secret_file:
            return self.webhook_secret.split()
        return _read_secret_file("retrain.webhook_secret_file", self.webhook_secret_file).split()


def _read_secret_file(key: str, path: str) -> str:
    """The stripped content of a secret file; a ``ConfigError`` naming the key (never the content)."""
    where = f"{key} {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        # The exception would quote the file's bytes: say what is wrong, never what is in it.
        raise ConfigError(f"{where} is not UTF-8 text") from None
    if not text.strip():
        raise ConfigError(f"{where} is empty")
    return text.strip()


@dataclass
class HttpSettings:
    """The /metrics, /healthz, /readyz, /status and /report endpoints."""

    host: str = _key("0.0.0.0", "Address to bind: an IP address or a host name (0.0.0.0: every interface).")
    port: int = _key(9465, "Port to bind; 0 picks a free one.", min=0, max=65535)
    liveness_timeout_s: float = _key(60.0, "/healthz fails when the main loop is stuck this long.", min=1)
    token: str = field(default="", repr=False, metadata={"doc": (
        "Bearer token that /report (what users wrote) requires (Authorization: Bearer TOKEN); without one, /report "
        "is served only when host is a loopback address. /metrics and the probes stay open. Prefer the "
        "environment variable MONITOR_HTTP_TOKEN or token_file.")})
    token_file: str = _key("", "File whose content, stripped, is token; set this or token, not both.")

    def bearer_token(self) -> str:
        """The token /report requires, read from ``token_file`` if set; empty: none."""
        if self.token_file:
            return _read_secret_file("http.token_file", self.token_file)
        return self.token


@dataclass
class ServiceSettings:
    """Process-level behaviour."""

    shutdown_timeout_s: float = _key(30.0, "Most time a graceful shutdown may take.", min=1)
    checkpoint_interval_s: float = _key(
        60.0, "How often the detectors' and the join's state is saved to the store with the input offsets "
        "it covers (and at shutdown), so a restart goes on instead of learning again; 0 turns it off.", min=0)
    log_level: str = _key("info", "debug, info, warning or error.",
                          choices=("debug", "info", "warning", "error"))


@dataclass
class BadcasesSettings:
    """Bad cases: categories (ordered rules), near-duplicate groups and priorities (see README, "Bad cases")."""

    active_alert_window_s: float = _key(
        3600.0, "An alert counts as active for a model's bad cases this long (event time) after it fired.", min=0)
    period_days: float = _key(7.0, "The period whose bad cases count for frequency and growth (this period "
                                   "against the one before).", min=0.01)
    weight_severity: float = _key(40.0, "Points of the priority score for severity (kind x category).", min=0)
    weight_frequency: float = _key(25.0, "Points for how often the category occurs (distinct groups in the "
                                         "period).", min=0)
    weight_growth: float = _key(15.0, "Points for the category growing against the period before.", min=0)
    weight_share: float = _key(20.0, "Points for the traffic share of the segment the case hits.", min=0)
    severity_complaint: float = _key(1.0, "Severity of a complaint (0-1).", min=0, max=1)
    severity_correction: float = _key(0.7, "Severity of a correction (0-1).", min=0, max=1)
    severity_wrong_label: float = _key(0.6, "Severity of a late label that says the prediction was wrong (0-1).",
                                       min=0, max=1)
    severity_thumbs_down: float = _key(0.5, "Severity of a thumbs-down (0-1).", min=0, max=1)
    frequency_half: float = _key(20.0, "Distinct groups of a category in the period at which frequency gives "
                                       "half its points.", min=0.1)
    p0_score: float = _key(70.0, "Lowest score of P0 (fix this week).", min=0)
    p1_score: float = _key(50.0, "Lowest score of P1 (fix this month).", min=0)
    p2_score: float = _key(30.0, "Lowest score of P2 (plan it); below it is P3 (backlog).", min=0)
    duplicate_threshold: float = _key(0.7, "Comments at least this similar (Jaccard of character 3-grams, "
                                           "after redaction and normalisation) are near-duplicates.",
                                      min=0.05, max=1)
    max_slices: int = _key(1000, "Segment combinations whose traffic is counted per model (for the share part "
                                 "of the priority); the rest are counted together.", min=1)
    rules: list[dict[str, Any]] = _tables_key(
        DEFAULT_RULES, "Ordered categorisation rules ([[badcases.rules]] tables), first match wins; setting them "
                       "replaces the defaults.")

    def weights(self) -> PriorityWeights:
        """The priority weights of these settings."""
        return PriorityWeights(
            severity=self.weight_severity, frequency=self.weight_frequency, growth=self.weight_growth,
            share=self.weight_share,
            kind_severity={"complaint": self.severity_complaint, "correction": self.severity_correction,
                           "wrong_label": self.severity_wrong_label, "thumbs_down": self.severity_thumbs_down},
            frequency_half=self.frequency_half, bands=(self.p0_score, self.p1_score, self.p2_score),
            period_s=self.period_days * 86400)


#: Keys of a ``[[datasets.overrides]]`` table besides ``model``, with their types.
OVERRIDE_KEYS: dict[str, type] = {"weekly": bool, "severe": bool, "severe_factor": float, "severe_cooldown_s": float,
                                  "volume_trigger": int, "max_per_category": int}


@dataclass
class DatasetSettings:
    """Versioned retraining datasets of bad cases, and the triggers that build them."""

    dir: str = _key("datasets", "Folder the dataset versions are written to (MODEL/vN/ in it).")
    format: str = _key("jsonl", "File format of the datasets: jsonl or parquet.", choices=("jsonl", "parquet"))
    max_per_category: int = _key(500, "Most records (near-duplicate groups) per category in one version.", min=1)
    on_trigger: bool = _key(True, "Build a dataset version before each retrain trigger and send its manifest with "
                                  "the trigger.")
    volume_trigger: int = _key(0, "Build a dataset and trigger a retrain when a model has this many new bad cases "
                                  "since its last dataset; 0 for never.", min=0)
    overrides: list[dict[str, Any]] = _tables_key(
        [], "Per-model trigger settings ([[datasets.overrides]] tables): model, and any of weekly, severe (true or "
            "false), severe_factor, severe_cooldown_s, volume_trigger, max_per_category.")

    def for_model(self, model: str) -> dict[str, Any]:
        """The overrides of ``model`` (the last table naming it wins)."""
        out: dict[str, Any] = {}
        for table in self.overrides:
            if table.get("model") == model:
                out.update({k: v for k, v in table.items() if k != "model"})
        return out


@dataclass
class SegmentSettings:
    """Slices: every key of an event's ``segment`` is a dimension (see README, "Segments")."""

    keys: list[str] = _list_key([], "Segment keys watched as slices; empty: every key an event carries (up to "
                                    "max_keys, first come).")
    max_keys: int = _key(8, "Most segment keys watched per model; further keys are counted as folded.", min=0)
    max_values: int = _key(20, "Most values per segment key and model, the heaviest by traffic (a heavy-hitters "
                                "sketch); the rest count as the value __other__.", min=1)
    detectors: bool = _key(True, "Run the feedback-spike and metric-decay detectors per segment value too "
                                 "(they share the model's false-alarm budget).")
    drift_keys: list[str] = _list_key([], "Segment keys whose values also get feature drift detectors of their "
                                          "own (costly: one set of drift tests per value).")
    budget_share: float = _key(0.5, "Share of a model's false-alarm budget (detect.false_alarms_per_million) that "
                                    "all its slices' tests share; the model's own tests keep the rest.",
                               min=0.01, max=0.99)


@dataclass
class FairnessSettings:
    """Group fairness of decisions across protected attributes (see README, "Fairness")."""

    attributes: list[str] = _list_key([], "Protected attributes (segment keys) to watch; empty: none.")
    favorable_label: str = _key("", "The prediction label that is the favourable outcome; empty: a score at or "
                                    "above favorable_threshold is.")
    favorable_threshold: float = _key(0.5, "A score at or above this is the favourable outcome (when "
                                           "favorable_label is empty).", min=0, max=1)
    reference: list[str] = _list_key([], "Reference group per attribute, as attribute=value; unset: the group "
                                         "with most decisions in the window.")
    min_ratio: float = _key(0.8, "A group's rate may be this many times the reference group's and at most "
                                 "1/min_ratio (the four-fifths rule) before fairness_gap fires.",
                            min=0.01, max=0.999)
    min_group_size: int = _key(100, "Least decisions of a group in the window before it is judged.", min=10)
    window: int = _key(5000, "Recent decisions per attribute the rates are computed over.", min=100)
    check_every: int = _key(200, "Decisions between two checks of an attribute.", min=1)
    confidence: float = _key(0.999, "Confidence of the interval on each ratio; fairness_gap fires when it lies "
                                    "wholly outside the band.", min=0.5, max=0.999999)

    def references(self) -> dict[str, str]:
        """The configured reference group per attribute."""
        return dict(item.split("=", 1) for item in self.reference)


@dataclass
class CanarySettings:
    """Versions served at once, each newer one judged against the baseline (see README, "Canaries")."""

    enabled: bool = _key(True, "Compare every newer version a model serves with its baseline version.")
    baselines: list[str] = _list_key([], "Baseline version per model, as model=version; unset: of a new version "
                                         "and the busiest one before it, the one that has served more once both "
                                         "have served min_samples predictions.")
    alpha: float = _key(0.01, "Chance that a canary as good as its baseline is ever failed, over its whole "
                              "rollout and all its metrics (an always-valid sequential test).", min=1e-6, max=0.2)
    min_samples: int = _key(50, "Least values per metric and version before a verdict on that metric.", min=10)
    tolerance: float = _key(0.1, "A canary passes a metric when, with confidence, it is at most this much worse "
                                 "than the baseline (relative).", min=0, max=10)
    max_canaries: int = _key(4, "Most canary comparisons kept per model; the oldest is dropped first.", min=1)
    rollback_webhook_url: str = _key("", "POST a signed rollback request here, once per failed canary; empty to "
                                         "disable.")
    rollback_webhook_secret: str = field(default="", repr=False, metadata={"doc": (
        "Signs rollback requests as retrain.webhook_secret signs pushes; prefer the environment variable or "
        "rollback_webhook_secret_file.")})
    rollback_webhook_secret_file: str = _key("", "File whose content, stripped, is rollback_webhook_secret.")

    def rollback_webhook_secrets(self) -> list[str]:
        """The secrets that sign rollback requests; none: unsigned."""
        if not self.rollback_webhook_secret_file:
            return self.rollback_webhook_secret.split()
        return _read_secret_file("canary.rollback_webhook_secret_file", self.rollback_webhook_secret_file).split()

    def baseline_of(self, model: str) -> str | None:
        """The configured baseline version of ``model``, if any."""
        return dict(item.split("=", 1) for item in self.baselines).get(model)


@dataclass
class EstimateSettings:
    """Quality estimated without labels, from calibrated scores (see README, "Performance without labels")."""

    enabled: bool = _key(True, "Estimate each version's error rate from its scores once calibrated on late labels.")
    reference_labels: int = _key(1000, "Late labels of a version its scores are calibrated on.", min=50)
    bins: int = _key(10, "Bins of the calibration map (equal-count).", min=2, max=1000)


@dataclass
class Settings:
    """All settings; one attribute per TOML section."""

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    topics: TopicSettings = field(default_factory=TopicSettings)
    collect: CollectSettings = field(default_factory=CollectSettings)
    redact: RedactSettings = field(default_factory=RedactSettings)
    join: JoinSettings = field(default_factory=JoinSettings)
    detect: DetectSettings = field(default_factory=DetectSettings)
    slo: SLOSettings = field(default_factory=SLOSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    retrain: RetrainSettings = field(default_factory=RetrainSettings)
    badcases: BadcasesSettings = field(default_factory=BadcasesSettings)
    datasets: DatasetSettings = field(default_factory=DatasetSettings)
    segments: SegmentSettings = field(default_factory=SegmentSettings)
    fairness: FairnessSettings = field(default_factory=FairnessSettings)
    canary: CanarySettings = field(default_factory=CanarySettings)
    estimate: EstimateSettings = field(default_factory=EstimateSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)


def sections() -> dict[str, type]:
    """Section name to its settings class, in documentation order."""
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings)}


def _closest(name: str, options: list[str], prefix: str = "") -> str:
    match = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean {prefix}{match[0]}?)" if match else ""


def _coerce(where: str, value: Any, kind: Any, from_env: bool) -> Any:
    """Check one value against the declared type; convert it from text if it came from the environment."""
    from_env = from_env and isinstance(value, str)
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if from_env and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return value.strip().lower() in ("1", "true", "yes", "on")
        elif kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if from_env:
                return int(value.replace("_", ""))
        elif kind is float:
            if (isinstance(value, int | float) and not isinstance(value, bool)) or from_env:
                number = float(value)
                if not math.isfinite(number):  # NaN passes every bound check: refuse it here
                    raise ConfigError(f"{where} must be a finite number, got {value!r}")
                return number
        elif kind is str:
            if isinstance(value, str):
                return value
        elif typing.get_origin(kind) is list and typing.get_args(kind)[0] is not str:
            if isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
                return [dict(v) for v in value]
            if from_env:
                raise ConfigError(f"{where} is a list of tables: set it in the config file, not the environment")
        elif typing.get_origin(kind) is list:
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return list(value)
            if from_env:
                return [v.strip() for v in value.split(",") if v.strip()]
    except ValueError:
        pass
    name = kind.__name__ if isinstance(kind, type) and not isinstance(kind, types.GenericAlias) else str(kind)
    raise ConfigError(f"{where} must be {name}, got {value!r}")


def _check_bounds(where: str, value: Any, meta: Mapping[str, Any]) -> None:
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{where} must be one of {', '.join(meta['choices'])}; got {value!r}")
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"{where} must be >= {meta['min']}; got {value!r}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(f"{where} must be <= {meta['max']}; got {value!r}")


def _apply(section_obj: Any, section: str, values: Mapping[str, Any], source: str) -> None:
    hints = typing.get_type_hints(type(section_obj))
    known = {f.name: f for f in dataclasses.fields(section_obj)}
    for key, raw in values.items():
        if key not in known:
            raise ConfigError(
                f"unknown key {section}.{key}{_closest(key, list(known), section + '.')}"
                + (f" in {source}" if source != "file" else "")
            )
        value = _coerce(f"{section}.{key}", raw, hints[key], from_env=source == ENV_SOURCE)
        _check_bounds(f"{section}.{key}", value, known[key].metadata)
        setattr(section_obj, key, value)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    names = sections()
    out: dict[str, dict[str, str]] = {}
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX) or var in ENV_NOT_SETTINGS:
            continue
        rest = var[len(ENV_PREFIX):].lower()
        section, _, key = rest.partition("_")
        if section not in names or not key:
            raise ConfigError(
                f"unknown environment variable {var}: expected MONITOR_<SECTION>_<KEY> with a section "
                f"among {', '.join(names)}{_closest(section, list(names))}"
            )
        out.setdefault(section, {})[key] = value
    return out


def _validate(settings: Settings) -> None:
    for where, values, allowed in (("redact.kinds", settings.redact.kinds, REDACTION_KINDS),
                                   ("retrain.severe_kinds", settings.retrain.severe_kinds, ALERT_KINDS)):
        unknown = [v for v in values if v not in allowed]
        if unknown:
            raise ConfigError(f"{where} has unknown {', '.join(map(repr, unknown))}; choose from {', '.join(allowed)}")
    _validate_redact(settings.redact)
    d, s = settings.detect, settings.slo
    if d.check_every > d.window_size:
        raise ConfigError(f"detect.check_every ({d.check_every}) must be <= detect.window_size ({d.window_size})")
    if d.long_window and (d.long_window <= d.window_size or d.long_check_every > d.long_window):
        raise ConfigError(f"detect.long_window ({d.long_window}) must be 0 or more than detect.window_size "
                          f"({d.window_size}), and detect.long_check_every ({d.long_check_every}) at most it")
    if s.short_window > s.long_window:
        raise ConfigError(f"slo.short_window ({s.short_window}) must be <= slo.long_window ({s.long_window})")
    if s.slow_short_window > s.slow_long_window:
        raise ConfigError(f"slo.slow_short_window ({s.slow_short_window}) must be <= slo.slow_long_window "
                          f"({s.slow_long_window})")
    b = settings.badcases
    points = b.weight_severity + b.weight_frequency + b.weight_growth + b.weight_share
    if abs(points - 100) > 1e-9:
        raise ConfigError(f"badcases.weight_severity, weight_frequency, weight_growth and weight_share must add up "
                          f"to 100 (the score runs from 0 to 100 and the bands are on that scale); they add up to "
                          f"{points:g}")
    if not b.p0_score >= b.p1_score >= b.p2_score:
        raise ConfigError(f"badcases.p0_score ({b.p0_score}), p1_score ({b.p1_score}) and p2_score ({b.p2_score}) "
                          "must not increase")
    RuleSet.compile(b.rules, s.latency_threshold_ms)  # raises ConfigError naming the rule and key
    for i, table in enumerate(settings.datasets.overrides):
        where = f"datasets.overrides[{i}]"
        if not isinstance(table.get("model"), str) or not table["model"]:
            raise ConfigError(f"{where} must name its model (model = \"...\")")
        for key, value in table.items():
            if key == "model":
                continue
            kind = OVERRIDE_KEYS.get(key)
            if kind is None:
                raise ConfigError(f"{where} has unknown key {key!r}{_closest(key, list(OVERRIDE_KEYS))}; "
                                  f"choose from model, {', '.join(OVERRIDE_KEYS)}")
            _coerce(f"{where}.{key}", value, kind, from_env=False)
            least = 1 if key in ("max_per_category", "severe_factor") else 0
            if kind is not bool and value < least:
                raise ConfigError(f"{where}.{key} must be >= {least}; got {value!r}")
    _validate_slices(settings)
    if settings.retrain.webhook_secret and settings.retrain.webhook_secret_file:
        raise ConfigError("set retrain.webhook_secret or retrain.webhook_secret_file, not both")
    _validate_services(settings)
    if not settings.kafka.bootstrap_servers.strip():
        raise ConfigError("kafka.bootstrap_servers must not be empty")
    t = settings.topics
    for name in ("tracking", "feedback", "deadletter", "retrain"):
        if not getattr(t, name):
            raise ConfigError(f"topics.{name} must not be empty")
    if t.tracking in (t.deadletter, t.retrain, t.alerts) or t.feedback in (t.deadletter, t.retrain, t.alerts):
        raise ConfigError("topics.deadletter, topics.retrain and topics.alerts must differ from the input topics")


def _validate_slices(settings: Settings) -> None:
    f, c = settings.fairness, settings.canary
    for where, items in (("fairness.reference", f.reference), ("canary.baselines", c.baselines)):
        bad = [item for item in items if "=" not in item or not all(part.strip() for part in item.split("=", 1))]
        if bad:
            raise ConfigError(f"{where} entries must be name=value; got {', '.join(map(repr, bad))}")
    unknown = [a for a in f.references() if a not in f.attributes]
    if unknown:
        raise ConfigError(f"fairness.reference names {', '.join(map(repr, unknown))}, not in fairness.attributes")
    if f.check_every > f.window:
        raise ConfigError(f"fairness.check_every ({f.check_every}) must be <= fairness.window ({f.window})")
    if f.min_group_size > f.window:
        raise ConfigError(f"fairness.min_group_size ({f.min_group_size}) must be <= fairness.window ({f.window})")
    if c.rollback_webhook_secret and c.rollback_webhook_secret_file:
        raise ConfigError("set canary.rollback_webhook_secret or canary.rollback_webhook_secret_file, not both")


def _validate_redact(r: RedactSettings) -> None:
    unknown = [v for v in r.phone_regions if v.upper() not in PHONE_REGIONS]
    if unknown:
        raise ConfigError(f"redact.phone_regions has unknown {', '.join(map(repr, unknown))}; use ISO 3166 codes "
                          "such as CN, US, GB")
    # A recogniser's own kinds (person, address: lower-case names) may be pseudonymised too.
    unknown = [v for v in r.pseudonymise if v not in REDACTION_KINDS and not (
        r.recognizer and v.isidentifier() and v.islower())]
    if unknown:
        raise ConfigError(f"redact.pseudonymise has unknown {', '.join(map(repr, unknown))}; choose from "
                          f"{', '.join(REDACTION_KINDS)}")
    if r.pseudonymise and not r.secret and not r.secret_file:
        raise ConfigError("redact.pseudonymise needs a key: set MONITOR_REDACT_SECRET (redact.secret) or "
                          "redact.secret_file")
    if r.pseudonymise and not r.secret and not os.path.isfile(r.secret_file):
        raise ConfigError(f"redact.secret_file {r.secret_file!r} is not a readable file")
    if r.recognizer and r.recognizer.count(":") != 1:
        raise ConfigError(f'redact.recognizer must be "package.module:factory", got {r.recognizer!r}')


#: A host name as RFC 1123 allows it: dot-separated labels of letters, digits and inner hyphens.
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def _check_host(where: str, host: str) -> None:
    """An IP address, or a name that could resolve (not one that looks like a broken IP address)."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not _HOST_NAME.fullmatch(host) or labels[-1].isdigit():
        raise ConfigError(f"{where} {host!r} is neither an IP address nor a host name")


def _check_webhook(where: str, url_text: str, secrets: Callable[[], list[str]]) -> None:
    """A webhook's URL (http or https, with a host) and its signing secrets (read now: a bad file is named)."""
    if url_text:
        try:
            url = urlsplit(url_text)
            host = url.hostname
            url.port  # noqa: B018 - raises ValueError on a port out of range
        except ValueError as exc:
            raise ConfigError(f"{where}_url {hide_url_secrets(url_text)!r} is not a URL: {exc}") from None
        if url.scheme not in ("http", "https") or not host:
            raise ConfigError(f"{where}_url {hide_url_secrets(url_text)!r} must be an http:// or https:// URL "
                              "with a host")
    for secret in secrets():
        try:
            webhook_key(secret)
        except ValueError as exc:  # says what is wrong, never the secret
            raise ConfigError(f"{where}_secret: {exc}") from None


def _validate_services(settings: Settings) -> None:
    """What ``monitor run`` would only find out after it connected: check it before any side effect."""
    r, k, h = settings.retrain, settings.kafka, settings.http
    if r.trigger_cron:
        from apscheduler.triggers.cron import CronTrigger  # noqa: PLC0415 - not needed to print --help

        try:
            CronTrigger.from_crontab(r.trigger_cron, timezone="UTC")
        except ValueError as exc:
            raise ConfigError(f"retrain.trigger_cron {r.trigger_cron!r} is not a crontab expression "
                              f"(minute hour day month weekday): {exc}") from None
    c = settings.canary
    _check_webhook("retrain.webhook", r.webhook_url, r.webhook_secrets if (r.webhook_secret or r.webhook_secret_file)
                   else list)
    _check_webhook("canary.rollback_webhook", c.rollback_webhook_url, c.rollback_webhook_secrets
                   if (c.rollback_webhook_secret or c.rollback_webhook_secret_file) else list)
    try:
        make_url(settings.store.url)
    except ArgumentError:
        raise ConfigError(f"store.url {hide_password(settings.store.url)!r} is not a SQLAlchemy URL "
                          "(e.g. sqlite:///monitor.db, postgresql+psycopg://user@host/db)") from None
    _check_host("http.host", h.host)
    if h.token and h.token_file:
        raise ConfigError("set http.token or http.token_file, not both")
    if h.token_file:
        h.bearer_token()
    if k.sasl_password and k.sasl_password_file:
        raise ConfigError("set kafka.sasl_password or kafka.sasl_password_file, not both")
    if "SASL" in k.security_protocol and not (k.sasl_username and (k.sasl_password or k.sasl_password_file)):
        raise ConfigError(f"kafka.security_protocol {k.security_protocol} needs kafka.sasl_username and a password "
                          "(MONITOR_KAFKA_SASL_PASSWORD or kafka.sasl_password_file)")
    if k.sasl_password_file:
        k.sasl_secret()
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        path = getattr(k, key)
        if not path:
            continue
        if not k.security_protocol.endswith("SSL"):
            raise ConfigError(f"kafka.{key} is set but kafka.security_protocol is {k.security_protocol}: "
                              "use SSL or SASL_SSL")
        if not Path(path).is_file() or not os.access(path, os.R_OK):
            raise ConfigError(f"kafka.{key} {path} does not exist or cannot be read")
    if k.ssl_keyfile and not k.ssl_certfile:
        raise ConfigError("kafka.ssl_keyfile is set without kafka.ssl_certfile")
    k.ssl_context()  # a file that is not PEM fails here, not at the first connection


def hide_password(url: str) -> str:
    """A URL with its password replaced by ``***``, as SQLAlchemy shows it.

    >>> hide_password("postgresql+psycopg://user:s3cret@db:5432/monitor")
    'postgresql+psycopg://user:***@db:5432/monitor'
    >>> hide_password("sqlite:///model-monitor.db")
    'sqlite:///model-monitor.db'
    """
    return re.sub(r"(://[^:/@]*:).*@", r"\1***@", url, count=1)


def load_settings(
    path: str | Path | None = None,
    *,
    toml_text: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Defaults, then the TOML file (or text), then the environment, then ``overrides``."""
    if path is not None:
        try:
            toml_text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start})") from None
    try:
        data = tomllib.loads(toml_text) if toml_text else {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path or '<text>'} is not valid TOML: {exc}") from None
    settings = Settings()
    names = sections()
    layers: list[tuple[str, Mapping[str, Any]]] = [("file", data)]
    layers.append((ENV_SOURCE, _env_overrides(os.environ if environ is None else environ)))
    if overrides:
        layers.append(("overrides", overrides))
    for source, layer in layers:
        for section, values in layer.items():
            if section not in names:
                raise ConfigError(f"unknown section [{section}]{_closest(section, list(names))}")
            if not isinstance(values, Mapping):
                raise ConfigError(f"[{section}] must be a table of keys, got {values!r}")
            _apply(getattr(settings, section), section, values, source)
    _validate(settings)
    return settings


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _toml_key(key: str) -> str:
    return key if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key) else _toml_value(key)


def render_toml(settings: Settings, with_docs: bool = True) -> str:
    """The settings as a TOML file that ``load_settings`` reads back unchanged."""
    lines: list[str] = []
    for section, cls in sections().items():
        if lines:
            lines.append("")
        if with_docs and cls.__doc__:
            lines.append(f"# {cls.__doc__.strip()}")
        lines.append(f"[{section}]")
        obj = getattr(settings, section)
        tables: list[str] = []
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("tables"):  # after the section's keys: a [[section.key]] table each
                if with_docs:
                    tables.append(f"\n# {f.metadata['doc']}")
                for table in value:
                    tables.append(f"\n[[{section}.{f.name}]]")
                    tables.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items())
                continue
            if f.name in SECRET_KEYS and value:
                value = "<set>"
            elif section == "store" and f.name == "url":
                value = hide_password(value)
            elif f.name.endswith("webhook_url") and value:
                value = hide_url_secrets(value)
            doc = f"  # {f.metadata['doc']}" if with_docs else ""
            lines.append(f"{f.name} = {_toml_value(value)}{doc}")
        lines.extend(tables)
    return "\n".join(lines) + "\n"


def reference_markdown() -> str:
    """The configuration reference table of the README, made from the code."""
    rows = ["| key | default | env | meaning |", "|---|---|---|---|"]
    defaults = Settings()
    for section in sections():
        obj = getattr(defaults, section)
        for f in dataclasses.fields(obj):
            env = f"MONITOR_{section.upper()}_{f.name.upper()}"
            default = _toml_value(getattr(obj, f.name)).replace("|", "\\|")
            if f.metadata.get("tables"):
                env, default = "-", f"{len(getattr(obj, f.name))} rules (see Bad cases)"
            rows.append(f"| `{section}.{f.name}` | `{default}` | `{env}` | {f.metadata['doc']} |")
    return "\n".join(rows)

"""Bad cases: flagged feedback sorted by cause, grouped when repeated, ranked by impact.

A *bad case* is a flagged feedback sample (``thumbs_down``, ``complaint``,
``correction``, ``wrong_label``). Three steps make it something a model's owner can
act on, each pure (no I/O) so that every runner and command gives the same answer:

1. **Category** (at flag time, stored): an ordered list of rules, first match wins,
   ``uncategorised`` for the rest. A rule is one small table of conditions
   (:data:`CONDITIONS`); all must hold (``match = "all"``, the default) or any
   (``match = "any"``).
2. **Near-duplicate group** (at read time): cases with the same inputs, or with
   comments that are nearly the same text after redaction and normalisation
   (MinHash over character 3-grams, Jaccard at least ``threshold``), share a group.
3. **Priority** (at read time): a score from 0 to 100, the sum of four weighted
   parts, mapped to a band P0-P3 (:func:`rank`; ``--explain`` prints the parts).

>>> rules = RuleSet.compile(DEFAULT_RULES, latency_threshold_ms=100.0)
>>> rules.categorise(Facts("thumbs_down", "irrelevant", "not what I searched for"))
'irrelevant'
>>> rules.categorise(Facts("complaint", None, "回答完全错误"))
'wrong_answer'
>>> rules.categorise(Facts("thumbs_down", None, None, latency_ms=420.0))
'slow'
>>> rules.categorise(Facts("thumbs_down", None, None, alert_kinds=frozenset({"data_drift"})))
'drifted_input'
>>> rules.categorise(Facts("thumbs_down", None, "meh"))
'uncategorised'
>>> rules.categorise(Facts("thumbs_down", None, "whatever, I would hate to miss it"))  # "hate" as a word only
'uncategorised'

Adding a category is a config change (one ``[[badcases.rules]]`` table). Adding a
kind of condition is one class registered with :func:`condition`::

    @condition("model_version")
    class VersionIs(_InList):
        def value(self, facts: Facts) -> str | None: ...
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from common.errors import ConfigError

#: The flagged-sample reasons that are bad cases (feedback, not drift-window samples).
BADCASE_KINDS = ("thumbs_down", "complaint", "correction", "wrong_label")
UNCATEGORISED = "uncategorised"
BANDS = ("P0", "P1", "P2", "P3")
#: What each band asks of the model's owner.
BAND_MEANING = {"P0": "fix this week", "P1": "fix this month", "P2": "plan it", "P3": "backlog"}

#: The shipped rules, in order (first match wins). Patterns are English and Chinese.
DEFAULT_RULES: list[dict[str, Any]] = [
    {"category": "harmful", "match": "any", "severity": 2.0,
     "reasons": ["harmful", "offensive", "unsafe", "toxic", "abusive", "inappropriate"],
     "comment": r"(?i)offensive|unsafe|toxic|harmful|abusive|racis[tm]|sexis[tm]|\bviolen|\bhateful\b"
                r"|\bhate speech|\bporn|dangerous"
                r"|冒犯|侮辱|辱骂|歧视|色情|暴力|低俗|不安全|危险|有害|违法"},
    {"category": "failure", "match": "any", "severity": 1.5,
     "status": "error",
     "comment": r"(?i)\berror\b|crash|broken|failed|doesn'?t work|not working|blank page"
                r"|出错|报错|崩溃|打不开|失败|白屏"},
    {"category": "slow", "match": "any",
     "latency_over_slo": True,
     "reasons": ["slow", "timeout", "latency"],
     "comment": r"(?i)\bslow|timed? ?out|takes? (?:forever|ages)|\blag|太慢|好慢|很慢|卡顿|超时|加载"},
    {"category": "stale", "match": "any",
     "reasons": ["stale", "outdated", "out_of_date"],
     "comment": r"(?i)outdated|out of date|old news|no longer|expired|sold out|过时|过期|旧的|已下架|没货|停售"},
    {"category": "wrong_answer", "match": "any",
     "kinds": ["correction", "wrong_label"],
     "reasons": ["wrong", "wrong_answer", "incorrect", "inaccurate", "false"],
     "comment": r"(?i)wrong|incorrect|not true|inaccurate|mistake|false|错误|不对|答错|不准|有误|错了"},
    {"category": "irrelevant", "match": "any",
     "reasons": ["irrelevant", "not_relevant", "off_topic", "not_interested"],
     "comment": r"(?i)irrelevant|not relevant|unrelated|off.topic|not what i (?:searched|asked|wanted)"
                r"|nothing to do with"
                r"|无关|不相关|答非所问|不感兴趣|推荐的不是"},
    {"category": "drifted_input", "alert_kinds": ["data_drift", "prediction_drift"]},
]


@dataclass(frozen=True)
class Facts:
    """What a rule may look at: the feedback, its prediction, and the model's alerts then."""

    kind: str
    reason: str | None = None
    comment: str | None = None
    latency_ms: float | None = None
    status: str | None = None
    segment: Mapping[str, str] = field(default_factory=dict)
    alert_kinds: frozenset[str] = frozenset()

    @classmethod
    def of(cls, kind: str, payload: Mapping[str, Any]) -> Facts:
        """The facts of a stored sample's payload (feedback, prediction, active alerts)."""
        feedback = payload.get("feedback") or {}
        prediction = payload.get("prediction") or {}
        latency = prediction.get("latency_ms")
        return cls(kind=kind, reason=_text_or_none(feedback.get("reason")),
                   comment=_text_or_none(feedback.get("comment")),
                   latency_ms=float(latency) if isinstance(latency, int | float) else None,
                   status=prediction.get("status") if prediction else None,
                   segment=segment_text(prediction.get("segment")),
                   alert_kinds=frozenset(a.get("kind", "") for a in payload.get("active_alerts") or ()))


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def segment_text(segment: Any) -> dict[str, str]:
    """A segment with its values as text, as rules and filters compare them.

    >>> segment_text({"region": "east", "new_user": True, "age": 30, "x": None})
    {'region': 'east', 'new_user': 'true', 'age': '30', 'x': 'null'}
    """
    if not isinstance(segment, Mapping):
        return {}
    return {str(k): _as_text(v) for k, v in segment.items()}


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# -- conditions -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RuleContext:
    """What conditions may need besides the case (settings of other sections)."""

    latency_threshold_ms: float


class Condition:
    """One test of a rule; built from the rule table's value under ``key``."""

    key: ClassVar[str]

    def __init__(self, value: Any, where: str, context: RuleContext) -> None:
        self.where = where
        self.context = context

    def __call__(self, facts: Facts) -> bool:
        raise NotImplementedError


#: Rule-table key to its condition class: the one place a kind of condition is declared.
CONDITIONS: dict[str, type[Condition]] = {}


def condition(key: str) -> Callable[[type[Condition]], type[Condition]]:
    """Register a condition class under its rule-table key."""
    def register(cls: type[Condition]) -> type[Condition]:
        cls.key = key
        CONDITIONS[key] = cls
        return cls
    return register


class _InList(Condition):
    """Holds when the case's value is one of a list of strings (case-insensitive)."""

    def __init__(self, value: Any, where: str, context: RuleContext) -> None:
        super().__init__(value, where, context)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where} must be a non-empty list of strings, got {value!r}")
        self.allowed = frozenset(v.casefold() for v in value)

    def value(self, facts: Facts) -> str | None:
        raise NotImplementedError

    def __call__(self, facts: Facts) -> bool:
        got = self.value(facts)
        return got is not None and got.casefold() in self.allowed


@condition("kinds")
class KindIs(_InList):
    """The feedback kind: thumbs_down, complaint, correction or wrong_label."""

    def __init__(self, value: Any, where: str, context: RuleContext) -> None:
        super().__init__(value, where, context)
        unknown = sorted(self.allowed - set(BADCASE_KINDS))
        if unknown:
            raise ConfigError(f"{where} has unknown kinds {unknown}; choose from {', '.join(BADCASE_KINDS)}")

    def value(self, facts: Facts) -> str | None:
        return facts.kind


@condition("reasons")
class ReasonIs(_InList):
    """The feedback's reason code."""

    def value(self, facts: Facts) -> str | None:
        return facts.reason


@condition("status")
class StatusIs(_InList):
    """The prediction's status (``error``)."""

    def value(self, facts: Facts) -> str | None:
        return facts.status


@condition("comment")
class CommentMatches(Condition):
    """A regular expression (Python syntax, Unicode) found in the redacted comment."""

    def __init__(self, value: Any, where: str, context: RuleContext) -> None:
        super().__init__(value, where, context)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where} must be a regular expression, got {value!r}")
        try:
            self.pattern = re.compile(value)
        except re.error as exc:
            raise ConfigError(f"{where} is not a valid regular expression: {exc}") from None

    def __call__(self, facts: Facts) -> bool:
        return facts.comment is not None and self.pattern.search(facts.comment) is not None


@condition("latency_over_slo")
class LatencyOverSlo(Condition):
    """The prediction took longer than ``slo.latency_threshold_ms`` (``true``) or not (``false``)."""

    def __init__(self, value: Any, where: str, context: RuleContext) -> None:
        super().__init__(value, where, context)
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        self.want = value

    def __call__(self, facts: Facts) -> bool:
        if facts.latency_ms is None:
            return False
        return (facts.latency_ms > self.context.latency_threshold_ms) == self.want


@condition("latency_over_ms")
class LatencyOver(Condition):
    """The prediction took longer than this many milliseconds."""

    def __init__(self, value: Any, where: str, context: RuleContext) -> None:
        super().__init__(value, where, context)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{where} must be a number of milliseconds >= 0, got {value!r}")
        self.limit = float(value)

    def __call__(self, facts: Facts) -> bool:
        return facts.latency_ms is not None and facts.latency_ms > self.limit


@condition("alert_kinds")
class AlertActive(_InList):
    """An alert of one of these kinds was active for the model when the feedback arrived."""

    def value(self, facts: Facts) -> str | None:
        raise NotImplementedError  # __call__ looks at a set, not one value

    def __call__(self, facts: Facts) -> bool:
        return bool(self.allowed & facts.alert_kinds)


@condition("segment")
class SegmentIs(Condition):
    """Every given segment key has the given value (compared as text: ``true``, ``east``)."""

    def __init__(self, value: Any, where: str, context: RuleContext) -> None:
        super().__init__(value, where, context)
        if not isinstance(value, Mapping) or not value:
            raise ConfigError(f"{where} must be a table of segment key = value, got {value!r}")
        self.want = segment_text(value)

    def __call__(self, facts: Facts) -> bool:
        return all(facts.segment.get(k) == v for k, v in self.want.items())


# -- rules ------------------------------------------------------------------------------------
#: Keys of a rule table that are not conditions.
RULE_KEYS = ("category", "match", "severity")
_CATEGORY = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


@dataclass(frozen=True)
class Rule:
    """A category and the conditions that put a case in it."""

    category: str
    conditions: tuple[Condition, ...]
    match_any: bool = False
    severity: float = 1.0

    def matches(self, facts: Facts) -> bool:
        results = (c(facts) for c in self.conditions)
        return any(results) if self.match_any else all(results)


@dataclass(frozen=True)
class RuleSet:
    """Ordered rules, first match wins; ``fingerprint`` names them (stored with each dataset)."""

    rules: tuple[Rule, ...]
    fingerprint: str

    @classmethod
    def compile(cls, tables: Sequence[Mapping[str, Any]], latency_threshold_ms: float) -> RuleSet:
        """Check and build rules from ``[[badcases.rules]]`` tables; errors name the rule and key."""
        context = RuleContext(latency_threshold_ms)
        rules = []
        for i, table in enumerate(tables):
            where = f"badcases.rules[{i}]"
            if not isinstance(table, Mapping):
                raise ConfigError(f"{where} must be a table, got {table!r}")
            category = table.get("category")
            if not isinstance(category, str) or not _CATEGORY.match(category):
                raise ConfigError(f"{where}.category must be a short lower-case name (letters, digits, _ or -), "
                                  f"got {category!r}")
            where = f"badcases.rules[{i}] ({category})"
            match = table.get("match", "all")
            if match not in ("all", "any"):
                raise ConfigError(f"{where}.match must be \"all\" or \"any\", got {match!r}")
            severity = table.get("severity", 1.0)
            if isinstance(severity, bool) or not isinstance(severity, int | float) or not 0 < severity <= 10:
                raise ConfigError(f"{where}.severity must be a number in (0, 10], got {severity!r}")
            conditions = []
            for key, value in table.items():
                if key in RULE_KEYS:
                    continue
                kind = CONDITIONS.get(key)
                if kind is None:
                    known = ", ".join([*RULE_KEYS, *CONDITIONS])
                    raise ConfigError(f"{where} has unknown key {key!r}; a rule has {known}")
                conditions.append(kind(value, f"{where}.{key}", context))
            if not conditions:
                raise ConfigError(f"{where} has no condition; give at least one of {', '.join(CONDITIONS)}")
            rules.append(Rule(category, tuple(conditions), match == "any", float(severity)))
        canonical = orjson.dumps([dict(t) for t in tables], option=orjson.OPT_SORT_KEYS)
        fingerprint = hashlib.sha256(canonical + f"|{latency_threshold_ms!r}".encode()).hexdigest()[:16]
        return cls(tuple(rules), fingerprint)

    def categorise(self, facts: Facts) -> str:
        for rule in self.rules:
            if rule.matches(facts):
                return rule.category
        return UNCATEGORISED

    def categories(self) -> list[str]:
        """Every category the rules can give, in rule order, then ``uncategorised``."""
        return list(dict.fromkeys([*(r.category for r in self.rules), UNCATEGORISED]))

    def severity(self, category: str) -> float:
        """A category's severity: the highest of the rules that name it (1 for uncategorised)."""
        return max((r.severity for r in self.rules if r.category == category), default=1.0)


# -- cases, as read back ------------------------------------------------------------------------
@dataclass
class Case:
    """A stored bad case, with what is worked out when it is read: its group and priority."""

    event_id: str
    model: str
    model_version: str | None
    kind: str
    reason: str | None
    comment: str | None
    value: Any
    category: str
    segment: dict[str, str]
    event_ts: float
    latency_ms: float | None
    status: str | None
    active_alerts: list[str]
    features: dict[str, Any]
    prediction: dict[str, Any]
    joined: bool
    flagged_at: float = 0.0
    group_id: str = ""
    group_size: int = 1
    score: float = 0.0
    priority: str = "P3"
    parts: dict[str, tuple[float, float, str]] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Case:
        """A case from a row of ``mm_flagged_samples``."""
        payload = row["payload"] or {}
        feedback = payload.get("feedback") or {}
        prediction = payload.get("prediction") or {}
        facts = Facts.of(row["reason"], payload)
        return cls(
            event_id=row["event_id"], model=row["model"], model_version=row["model_version"], kind=row["reason"],
            reason=facts.reason, comment=facts.comment, value=feedback.get("value"),
            category=row.get("category") or UNCATEGORISED, segment=dict(facts.segment),
            event_ts=float(row["event_ts"]), latency_ms=facts.latency_ms, status=facts.status,
            active_alerts=sorted(facts.alert_kinds - {""}), features=dict(prediction.get("features") or {}),
            prediction=dict(prediction.get("prediction") or {}), joined=bool(payload.get("joined")),
            flagged_at=float(row.get("flagged_at") or 0.0))

    def record(self) -> dict[str, Any]:
        """The case as ``monitor badcases --format jsonl`` prints it (already redacted)."""
        return {"event_id": self.event_id, "model": self.model, "model_version": self.model_version,
                "kind": self.kind, "reason": self.reason, "comment": self.comment, "value": self.value,
                "category": self.category, "priority": self.priority, "score": round(self.score, 1),
                "segment": self.segment, "event_ts": self.event_ts, "latency_ms": self.latency_ms,
                "status": self.status, "active_alerts": self.active_alerts, "group_id": self.group_id,
                "group_size": self.group_size, "features": self.features, "prediction": self.prediction,
                "joined": self.joined}

    def explain(self) -> str:
        """How the case got its priority, one line per part."""
        lines = [f"{self.event_id}: {self.priority} ({BAND_MEANING[self.priority]}), score {self.score:.1f} of 100"]
        for name, (points, weight, why) in self.parts.items():
            lines.append(f"  {name:<10} {points:5.1f} of {weight:g}  {why}")
        return "\n".join(lines)


# -- near-duplicates ------------------------------------------------------------------------------
_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)
_DIGITS = re.compile(r"\d+")


#: Fewest characters (normalised, spaces aside) a comment needs to make two cases near-
#: duplicates: many users writing "no" or "答非所问" are many users, not one repeating.
MIN_DUPLICATE_TEXT = 12


def normalise(text: str) -> str:
    """Comment text as compared for near-duplicates: NFKC, case-folded, numbers and
    punctuation folded, placeholders kept.

    >>> normalise("Call me on [PHONE]!!  It's WRONG, order 12345.")
    'call me on phone it s wrong order 0'
    >>> normalise("推荐的 完全 无关！") == normalise("推荐的完全无关")
    False
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _DIGITS.sub("0", text)
    return _NOT_WORD.sub(" ", text).strip()


def _shingles(text: str, size: int = 3) -> set[bytes]:
    compact = text.replace(" ", "\x00") if text else ""
    if len(compact) <= size:
        return {compact.encode()} if compact else set()
    return {compact[i:i + size].encode() for i in range(len(compact) - size + 1)}


def _inputs_key(case: Case) -> str | None:
    if not case.features:
        return None
    return hashlib.sha1(orjson.dumps([case.model, case.features], option=orjson.OPT_SORT_KEYS)).hexdigest()


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group(cases: Sequence[Case], threshold: float = 0.7, num_perm: int = 64) -> None:
    """Set ``group_id`` and ``group_size`` of each case: near-duplicates of one model share a group.

    Two cases are near-duplicates when their inputs (the prediction's features) are the
    same, or their normalised comments (of at least ``MIN_DUPLICATE_TEXT`` characters)
    have an estimated Jaccard similarity of at least ``threshold`` over character 3-grams
    (MinHash LSH, from datasketch). A group's id
    names its earliest case, so it does not change as later cases join.

    >>> a = Case("a", "m", "v", "thumbs_down", None, "totally irrelevant results!!", None, "irrelevant", {}, 1.0,
    ...          None, None, [], {}, {}, True)
    >>> b = Case("b", "m", "v", "thumbs_down", None, "Totally irrelevant results", None, "irrelevant", {}, 2.0,
    ...          None, None, [], {}, {}, True)
    >>> c = Case("c", "m", "v", "complaint", None, "far too slow", None, "slow", {}, 3.0, None, None, [], {}, {}, True)
    >>> group([a, b, c]); (a.group_id == b.group_id != c.group_id, a.group_size, c.group_size)
    (True, 2, 1)
    """
    from datasketch import MinHash, MinHashLSH  # noqa: PLC0415 - only the read commands need it

    order = sorted(range(len(cases)), key=lambda i: (cases[i].model, cases[i].event_ts, cases[i].event_id))
    uf = _UnionFind(len(cases))
    by_model: dict[str, list[int]] = defaultdict(list)
    for i in order:
        by_model[cases[i].model].append(i)
    for members in by_model.values():
        first_with: dict[tuple[str, str], int] = {}
        for i in members:
            case = cases[i]
            keys = [("inputs", k) for k in (_inputs_key(case),) if k]
            text = normalise(case.comment) if case.comment else ""
            if len(text.replace(" ", "")) >= MIN_DUPLICATE_TEXT:
                keys.append(("text", text))
            for key in keys:
                j = first_with.setdefault(key, i)
                if j != i:
                    uf.union(j, i)
        # Near (not equal) comments: one MinHash per distinct normalised text.
        texts = {key[1]: i for key, i in first_with.items() if key[0] == "text"}
        if len(texts) > 1:
            lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
            hashes: dict[str, MinHash] = {}
            for text, i in texts.items():
                mh = MinHash(num_perm=num_perm, seed=1)
                mh.update_batch(list(_shingles(text)))
                hashes[text] = mh
                for other in lsh.query(mh):
                    if hashes[other].jaccard(mh) >= threshold:
                        uf.union(texts[other], i)
                lsh.insert(text, mh)
    roots = [uf.find(i) for i in range(len(cases))]
    sizes = Counter(roots)
    for i, case in enumerate(cases):
        root = cases[roots[i]]
        case.group_id = "g-" + hashlib.sha1(f"{root.model}\x00{root.event_id}".encode()).hexdigest()[:12]
        case.group_size = sizes[roots[i]]


# -- priority ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PriorityWeights:
    """The points each part of the score can give (they add up to the score's maximum, 100)."""

    severity: float = 40.0
    frequency: float = 25.0
    growth: float = 15.0
    share: float = 20.0
    #: Severity of each feedback kind, before the category's severity multiplies it (capped at 1).
    kind_severity: Mapping[str, float] = field(default_factory=lambda: {
        "complaint": 1.0, "correction": 0.7, "wrong_label": 0.6, "thumbs_down": 0.5})
    #: Distinct groups of a category in a period at which its frequency counts half.
    frequency_half: float = 20.0
    #: Lowest score of P0, P1 and P2; below the last is P3.
    bands: tuple[float, float, float] = (70.0, 50.0, 30.0)
    #: The period ``this period against the last`` compares.
    period_s: float = 7 * 86400.0


#: Traffic: predictions by (model, segment as sorted (key, value-as-text) pairs); the
#: slice ``()`` holds the predictions without a segment.
Traffic = Mapping[tuple[str, tuple[tuple[str, str], ...]], int]


def band(score: float, bands: tuple[float, float, float]) -> str:
    """The band of a score.

    >>> [band(s, (70, 50, 30)) for s in (85, 70, 55, 31, 2)]
    ['P0', 'P0', 'P1', 'P2', 'P3']
    """
    for name, lowest in zip(BANDS, bands, strict=False):
        if score >= lowest:
            return name
    return BANDS[-1]


def slice_share(traffic: Traffic, model: str, segment: Mapping[str, str]) -> float | None:
    """The share of the model's predictions whose segment has every pair of ``segment``.

    >>> t = {("m", (("region", "east"),)): 30, ("m", (("region", "west"),)): 60, ("m", ()): 10}
    >>> slice_share(t, "m", {"region": "east"}), slice_share(t, "m", {}), slice_share(t, "x", {})
    (0.3, 0.1, None)
    """
    total = hit = 0
    want = set(segment.items())
    for (m, pairs), n in traffic.items():
        if m != model:
            continue
        total += n
        if (want <= set(pairs)) if want else not pairs:
            hit += n
    return hit / total if total else None


def rank(cases: Sequence[Case], rules: RuleSet, traffic: Traffic, weights: PriorityWeights,
         now: float | None = None) -> None:
    """Score every case and set its priority; group the cases first (:func:`group`).

    The score adds four parts, each a share of its weight:

    - **severity**: the kind's severity times the category's (the highest ``severity``
      of the rules naming it), at most 1;
    - **frequency**: ``n / (n + frequency_half)``, n the category's distinct groups of
      the model in this period (so one user repeating himself counts once);
    - **growth**: ``log2((n + 1) / (n_before + 1)) / 2`` between 0 and 1, against the
      period before (a category four times as frequent as before scores all of it); 0
      when the model has no case at all in the period before (nothing to compare with);
    - **share**: the square root of the share of the model's predictions in this period
      (all of them, if the traffic has no count for the period) whose segment is the
      case's, so that a slice of a tenth of the traffic still counts a third; 0.5 for
      feedback that never met its prediction.

    Periods end at ``now``: by default the newest case's event time, so the same store
    gives the same priorities whenever it is read.
    """
    if not cases:
        return
    end = max(c.event_ts for c in cases) if now is None else now
    start, before = end - weights.period_s, end - 2 * weights.period_s
    now_groups: dict[tuple[str, str], set[str]] = defaultdict(set)
    then_groups: dict[tuple[str, str], set[str]] = defaultdict(set)
    for c in cases:
        if start < c.event_ts <= end:
            now_groups[(c.model, c.category)].add(c.group_id)
        elif before < c.event_ts <= start:
            then_groups[(c.model, c.category)].add(c.group_id)
    history = {m for (m, _), groups in then_groups.items() if groups}
    period = "7 days" if weights.period_s == 7 * 86400 else f"{weights.period_s / 86400:g} days"
    shares: dict[tuple[str, tuple[tuple[str, str], ...]], float | None] = {}
    for c in cases:
        n = len(now_groups[(c.model, c.category)])
        n_before = len(then_groups[(c.model, c.category)])
        kind_sev = weights.kind_severity.get(c.kind, 0.5)
        cat_sev = rules.severity(c.category)
        sev = min(1.0, kind_sev * cat_sev)
        freq = n / (n + weights.frequency_half)
        growth = min(1.0, max(0.0, math.log2((n + 1) / (n_before + 1)) / 2)) if c.model in history else 0.0
        slice_key = (c.model, tuple(sorted(c.segment.items())))
        if slice_key not in shares:
            shares[slice_key] = slice_share(traffic, c.model, c.segment)
        share = shares[slice_key]
        seg_text = ", ".join(f"{k}={v}" for k, v in sorted(c.segment.items())) or "no segment"
        if not c.joined:
            share_value, share_why = 0.5, "feedback never met its prediction: segment unknown, counted as half"
        elif share is None:
            share_value, share_why = 1.0, f"no traffic counted for {c.model}: counted as all of it"
        else:
            share_value, share_why = math.sqrt(share), f"{seg_text} carries {share:.0%} of {c.model}'s predictions"
        c.parts = {
            "severity": (weights.severity * sev, weights.severity,
                         f"{c.kind} {kind_sev:g} x category {c.category} {cat_sev:g}"),
            "frequency": (weights.frequency * freq, weights.frequency,
                          f"{n} distinct {c.category} case groups of {c.model} in the last {period}"),
            "growth": (weights.growth * growth, weights.growth,
                       f"{n} against {n_before} in the {period} before" if c.model in history
                       else f"no case of {c.model} in the {period} before: nothing to compare with"),
            "share": (weights.share * share_value, weights.share, share_why),
        }
        c.score = sum(points for points, _, _ in c.parts.values())
        c.priority = band(c.score, weights.bands)


def sort_key(case: Case) -> tuple[float, float, str]:
    """Highest priority first, then newest, then by event id (a stable order)."""
    return (-round(case.score, 6), -case.event_ts, case.event_id)


def representatives(cases: Iterable[Case]) -> list[Case]:
    """One case per near-duplicate group: its highest-ranked member."""
    best: dict[str, Case] = {}
    for c in cases:
        kept = best.get(c.group_id)
        if kept is None or sort_key(c) < sort_key(kept):
            best[c.group_id] = c
    return sorted(best.values(), key=sort_key)

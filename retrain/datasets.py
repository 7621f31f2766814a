"""Versioned retraining datasets built from a model's bad cases.

``build`` writes one new version of a model's dataset into ``OUT/MODEL/vN/``:

- ``data.jsonl`` (or ``data.parquet``): one record per near-duplicate group of bad
  cases (its highest-priority case, with ``duplicates``: how many it stands for),
  stratified by category and segment, at most ``max_per_category`` per category;
- ``to_label.jsonl`` (or ``.parquet``): predictions sampled from drifted windows,
  which have no label yet and want a human one;
- ``manifest.json``: the dataset id and version, its parent version, the model, the
  time range, counts by category, source and segment, each file's rows, bytes and
  sha256, the rules' fingerprint, and the alerts and trigger that caused it.

A sample goes into one version of a model's dataset only (the store records which),
unless ``include_used``. Everything in it was redacted before it was stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from common.errors import ConfigError, OutputError, StoreFailed
from retrain.badcases import BADCASE_KINDS, Case, PriorityWeights, RuleSet, group, rank, sort_key
from retrain.store import SampleStore

FORMATS = ("jsonl", "parquet")
#: Flagged-sample reasons of predictions sampled from a drifted window (they want a label).
DRIFT_REASONS = ("data_drift", "prediction_drift")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class DatasetOptions:
    """How a dataset version is cut."""

    out_dir: str = "datasets"
    fmt: str = "jsonl"
    max_per_category: int = 500
    include_used: bool = False
    since: float | None = None
    until: float | None = None


def load_ranked(store: SampleStore, rules: RuleSet, weights: PriorityWeights, threshold: float,
                models: Sequence[str] | None = None, until: float | None = None,
                since: float | None = None) -> list[Case]:
    """Every stored bad case of ``models`` (all if None) from ``since`` up to ``until``,
    grouped and ranked, highest priority first; the priority's periods end at ``until``
    or at the newest case."""
    rows = store.badcase_rows(models=models, since=since, until=until, reasons=BADCASE_KINDS)
    cases = [Case.from_row(row) for row in rows]
    if not cases:
        return []
    group(cases, threshold=threshold)
    end = until if until is not None else max(c.event_ts for c in cases)
    traffic = store.traffic(since=end - weights.period_s, until=end, models=sorted({c.model for c in cases}))
    rank(cases, rules, traffic, weights, now=end)
    return sorted(cases, key=sort_key)


def _segment_key(segment: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(segment.items())) or "-"


def stratify(cases: Sequence[Case], cap: int) -> list[tuple[Case, int]]:
    """One case per near-duplicate group (the best ranked), at most ``cap`` per category,
    taken from the category's segments in turn so that no segment crowds out the rest.
    Returns (case, how many cases of the selection it stands for).

    >>> def c(i, cat, seg, g):
    ...     return Case(f"e{i}", "m", "v", "thumbs_down", None, None, None, cat, {"r": seg}, float(i), None, None,
    ...                 [], {}, {}, True, group_id=g, score=100.0 - i)
    >>> picked = stratify([c(1, "slow", "a", "g1"), c(2, "slow", "a", "g1"), c(3, "slow", "a", "g3"),
    ...                    c(4, "slow", "b", "g4"), c(5, "wrong", "a", "g5")], cap=2)
    >>> [(case.event_id, n) for case, n in picked]
    [('e1', 2), ('e4', 1), ('e5', 1)]
    """
    sizes = Counter(c.group_id for c in cases)
    best: dict[str, Case] = {}
    for c in sorted(cases, key=sort_key):
        best.setdefault(c.group_id, c)
    by_category: dict[str, dict[str, list[Case]]] = defaultdict(lambda: defaultdict(list))
    for c in best.values():
        by_category[c.category][_segment_key(c.segment)].append(c)
    picked: list[tuple[Case, int]] = []
    for category in sorted(by_category):
        queues = [sorted(q, key=sort_key) for _, q in sorted(by_category[category].items())]
        queues.sort(key=lambda q: sort_key(q[0]))  # the segment with the best case starts
        taken = 0
        while taken < cap and any(queues):
            for queue in queues:
                if queue and taken < cap:
                    case = queue.pop(0)
                    picked.append((case, sizes[case.group_id]))
                    taken += 1
    return picked


def _record(case: Case, duplicates: int) -> dict[str, Any]:
    label = case.value if case.kind in ("wrong_label", "correction") else None
    return {"event_id": case.event_id, "model": case.model, "model_version": case.model_version,
            "category": case.category, "priority": case.priority, "score": round(case.score, 1),
            "source": case.kind, "reason": case.reason, "comment": case.comment, "label": label,
            "features": case.features, "prediction": case.prediction, "segment": case.segment,
            "event_ts": case.event_ts, "group_id": case.group_id, "duplicates": duplicates}


def _to_label_record(row: Mapping[str, Any]) -> dict[str, Any]:
    prediction = (row["payload"] or {}).get("prediction") or {}
    alert = (row["payload"] or {}).get("alert") or {}
    return {"event_id": row["event_id"], "model": row["model"], "model_version": row["model_version"],
            "source": row["reason"], "detector": row["detail"], "features": prediction.get("features") or {},
            "prediction": prediction.get("prediction") or {}, "segment": prediction.get("segment") or {},
            "event_ts": row["event_ts"], "alert_key_ts": alert.get("ts")}


def _write(path: Path, records: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "jsonl":
        with open(path, "wb") as f:
            for record in records:
                # Keys sorted: the same file (and sha256) from SQLite and PostgreSQL.
                f.write(orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS) + b"\n")
        return
    import pyarrow as pa  # noqa: PLC0415 - only Parquet datasets need it
    import pyarrow.parquet as pq  # noqa: PLC0415

    try:
        table = pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # Values of one field differ in type between records (a label that is sometimes a
        # string, sometimes a number): nested fields go in as JSON text instead.
        nested = {k for r in records for k, v in r.items() if isinstance(v, dict | list) or k in ("label", "value")}
        table = pa.Table.from_pylist([{k: orjson.dumps(v).decode() if k in nested else v for k, v in r.items()}
                                      for r in records])
    pq.write_table(table, path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass
class _Plan:
    """What one version would hold, chosen from the samples not yet in a version."""

    picked: list[tuple[Case, int]]
    records: list[dict[str, Any]]
    to_label: list[dict[str, Any]]

    @property
    def event_ids(self) -> list[str]:
        return [r["event_id"] for r in self.records] + [r["event_id"] for r in self.to_label]


def _plan(store: SampleStore, model: str, rules: RuleSet, weights: PriorityWeights, threshold: float,
          options: DatasetOptions) -> _Plan | None:
    used = set() if options.include_used else store.used_samples(model)
    ranked = load_ranked(store, rules, weights, threshold, [model], options.until)
    chosen = [c for c in ranked if c.event_id not in used
              and (options.since is None or c.event_ts >= options.since)]
    picked = stratify(chosen, options.max_per_category)
    drift_rows = [r for r in store.badcase_rows(models=[model], since=options.since, until=options.until,
                                                reasons=DRIFT_REASONS) if r["event_id"] not in used]
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in drift_rows:
        if len(by_kind[row["reason"]]) < options.max_per_category:
            by_kind[row["reason"]].append(row)
    to_label = [_to_label_record(r) for kind in sorted(by_kind) for r in by_kind[kind]]
    if not picked and not to_label:
        return None
    return _Plan(picked, [_record(case, n) for case, n in picked], to_label)


def build(store: SampleStore, model: str, rules: RuleSet, weights: PriorityWeights, threshold: float,
          options: DatasetOptions, trigger: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Write the next dataset version of ``model``; return its manifest, or None when no
    sample is left to put in one (nothing is written then).

    The files are in place before the store records the version (a version the store
    names always has its files), and the store takes it only if no sample of it went
    into another version meanwhile (another builder, another daemon): then this one
    chooses again from what is left.
    """
    if options.fmt not in FORMATS:
        raise ConfigError(f"dataset format must be one of {', '.join(FORMATS)}, got {options.fmt!r}")
    if options.max_per_category < 1:
        raise ConfigError(f"max_per_category must be >= 1, got {options.max_per_category}")
    root = Path(options.out_dir).resolve() / _safe(model)
    for _ in range(5):
        plan = _plan(store, model, rules, weights, threshold, options)
        if plan is None:
            return None
        versions = store.dataset_versions(model)
        version = max([v["version"] for v in versions] + _versions_on_disk(root)) + 1
        final = root / f"v{version}"
        staging = root / f".v{version}.{os.getpid()}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.mkdir(parents=True)
        except OSError as exc:
            raise OutputError(f"cannot write the dataset of {model} in {options.out_dir}: {exc.strerror}") from None
        try:
            manifest = _write_version(staging, store, model, version, plan, rules, options, trigger)
            staging.rename(final)  # before the store names it: never a recorded version without files
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise OutputError(f"cannot write the dataset of {model} in {options.out_dir}: {exc}") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            taken = store.add_dataset(model, version, manifest["dataset_id"], str(final), manifest, plan.event_ids,
                                      exclusive=not options.include_used)
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
        if taken:
            return {**manifest, "path": str(final)}
        shutil.rmtree(final, ignore_errors=True)  # the number or a sample went to another builder: choose again
    raise StoreFailed(f"could not record a dataset version of {model} after 5 tries: other builders kept taking "
                      "the same samples or version numbers")


def _versions_on_disk(root: Path) -> list[int]:
    """Version numbers of the folders already in ``root`` (never overwritten)."""
    if not root.is_dir():
        return [0]
    return [0, *(int(p.name[1:]) for p in root.iterdir() if p.name[:1] == "v" and p.name[1:].isdigit())]


def _write_version(folder: Path, store: SampleStore, model: str, version: int, plan: _Plan, rules: RuleSet,
                   options: DatasetOptions, trigger: Mapping[str, Any] | None) -> dict[str, Any]:
    """Write a version's files and manifest into ``folder``; return the manifest."""
    records, to_label, picked = plan.records, plan.to_label, plan.picked
    times = [c.event_ts for c, _ in picked] + [float(r["event_ts"]) for r in to_label]
    files = []
    for name, rows in ((f"data.{options.fmt}", records), (f"to_label.{options.fmt}", to_label)):
        path = folder / name
        _write(path, rows, options.fmt)
        files.append({"name": name, "rows": len(rows), "bytes": path.stat().st_size, "sha256": _sha256(path)})
    manifest: dict[str, Any] = {
        "dataset_id": f"{model}-v{version}", "version": version, "parent_version": version - 1 if version > 1 else None,
        "model": model, "created_at": _iso(dt.datetime.now(dt.UTC).timestamp()),
        "format": options.fmt,
        "time_range": {"since": _iso(options.since), "until": _iso(options.until),
                       "first_event": _iso(min(times)), "last_event": _iso(max(times))},
        "counts": {
            "records": len(records), "to_label": len(to_label),
            "cases": sum(n for _, n in picked),
            "by_category": dict(sorted(Counter(r["category"] for r in records).items())),
            "by_source": dict(sorted(Counter([*(r["source"] for r in records),
                                              *(r["source"] for r in to_label)]).items())),
            "by_segment": dict(sorted(Counter(_segment_key(r["segment"]) for r in records).items())),
            "by_version": dict(sorted(Counter(str(r["model_version"]) for r in records).items())),
        },
        "files": files,
        "rules_fingerprint": rules.fingerprint,
        "options": {"max_per_category": options.max_per_category, "include_used": options.include_used},
        "trigger": dict(trigger) if trigger else None,
        "alerts": store.alerts_of(model, since=options.since, until=options.until, limit=100),
    }
    (folder / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
    return manifest


def _safe(name: str) -> str:
    """A model name as one path component.

    >>> _safe("team/recsys v2")
    'team_recsys_v2'
    """
    out = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip(".")
    return out or "_"

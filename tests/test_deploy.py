"""The deploy/ folder: Prometheus rules and their promtool tests, Alertmanager routing,
the Grafana dashboard, the container and Kubernetes manifests, the example config.

promtool, prometheus and amtool come from Debian's ``prometheus`` and
``prometheus-alertmanager`` packages. When one is missing the tests that need it are
skipped, except under CI (the ``CI`` environment variable set), where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import ProcessCollector

from monitor.config import load_settings
from monitor.http import Health, StatusServer
from monitor.metrics import (
    ALERTS,
    BATCH_DURATION,
    BATCHES,
    BOUND_CAPACITY,
    BOUND_ENTRIES,
    BOUND_OVERFLOW,
    BROKER_OUTAGES,
    BUSINESS_EVENTS,
    CANARY_DIFFERENCE,
    CANARY_VERDICT,
    CHECKPOINT_BYTES,
    CHECKPOINTS,
    COMMITTED_MESSAGES,
    CONSUMER_LAG,
    DETECTOR_SCORE,
    DETECTOR_THRESHOLD,
    DRIFT_TESTED_PREDICTIONS,
    ERRORS,
    ESTIMATED_ERROR,
    EVENTS,
    FAIRNESS_RATIO,
    FEATURE_TYPE_MISMATCHES,
    FEEDBACK,
    FLAGGED_SAMPLES,
    INVALID_EVENTS,
    JOIN,
    JOIN_MOVES,
    LAST_EVENT_TIMESTAMP,
    METRICS,
    PREDICTION_LATENCY,
    PREDICTIONS,
    READY,
    REDACTIONS,
    RETRAIN_PENDING,
    RETRAIN_PUSHED,
    RETRAIN_TRIGGERS,
    SEGMENT_EVENTS,
    STAGE_SECONDS,
    Metrics,
)

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
DASHBOARD = DEPLOY / "grafana" / "model-monitor.json"
KUBERNETES = DEPLOY / "kubernetes"
EXAMPLE_CONFIG = DEPLOY / "monitor.example.toml"
DOCKERFILE = DEPLOY / "Dockerfile"

#: Metrics the rules may use that the daemon does not export (Prometheus makes them).
PROMETHEUS_OWN = frozenset({"up"})


# -- helpers ---------------------------------------------------------------------------
def tool(name: str) -> str:
    """The path of a Debian-packaged tool; skip without it, or fail under CI."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        package = "prometheus-alertmanager" if name in ("amtool", "alertmanager") else "prometheus"
        message = f"{name} is not installed (Debian package {package}: apt-get install -y {package})"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must have it")
        pytest.skip(message)
    return path


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")


def series_names() -> set[str]:
    """Every series name the daemon exports: histograms as their _bucket/_sum/_count, and
    the process_* metrics of prometheus_client's ProcessCollector on its registry."""
    names = {sample.name for family in ProcessCollector(registry=None).collect() for sample in family.samples}
    for spec in METRICS:
        if spec.type == "histogram":
            names.update(spec.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(spec.name)
    return names


_OUR_METRIC = re.compile(r"(?<![A-Za-z0-9_:])model_monitor_[A-Za-z0-9_]+(?![A-Za-z0-9_:])")
_RECORDED = re.compile(r"(?<![A-Za-z0-9_:])[a-z_]+:[a-z0-9_]+:[a-z0-9_]+(?![A-Za-z0-9_:])")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![A-Za-z0-9_:.$])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                       "group_left", "group_right", "inf", "nan", "atan2"})


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub(" ", text)      # label matchers
    text = _BRACKETS.sub(" ", text)    # ranges, subqueries, [$__rate_interval]
    text = _GROUPING.sub(" ", text)    # by (...), on (...), group_left (...)
    names = set()
    for match in _IDENT.finditer(text):
        if text[match.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def yaml_values(text: str, key: str) -> list[str]:
    """The values of ``key:`` in a YAML file, block scalars (| and >) included.

    A small reader for our own files, so these checks need no YAML library.
    """
    lines = text.splitlines()
    values = []
    i = 0
    pattern = re.compile(rf"^(\s*)(?:- )?{re.escape(key)}:\s*(.*?)\s*$")
    while i < len(lines):
        match = pattern.match(lines[i])
        i += 1
        if not match:
            continue
        indent, value = len(match.group(1)), match.group(2)
        if value in ("|", "|-", ">", ">-"):
            block = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                block.append(lines[i].strip())
                i += 1
            values.append(("\n" if value.startswith("|") else " ").join(block).strip())
        elif len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            values.append(value[1:-1])
        else:
            values.append(value)
    return values


def grafana_exprs(dashboard: dict[str, Any]) -> list[str]:
    """The PromQL of every panel target, and the series selector of every query variable
    (Grafana's ``label_values(SELECTOR, LABEL)``)."""
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") == "query":
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["definition"])
            assert match, variable["definition"]
            exprs.append(match.group(1))
    return exprs


def as_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced by plain values."""
    for var, value in (("$__rate_interval", "5m"), ("$__interval", "1m"), ("$__range", "1h")):
        expr = expr.replace(var, value)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def load_yaml_documents(path: Path) -> list[Any]:
    """All documents of a YAML file, with PyYAML; from Debian's python3-yaml if the
    project's environment lacks it; else skip (or fail under CI)."""
    try:
        import yaml  # noqa: PLC0415
    except ImportError:
        pass
    else:
        return list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    for python in ("/usr/bin/python3", shutil.which("python3")):
        if not python or Path(python).resolve() == Path(sys.executable).resolve():
            continue
        result = run(python, "-c", "import json, sys, yaml; "
                     "print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1], encoding='utf-8')))))",
                     str(path))
        if result.returncode == 0:
            return list(json.loads(result.stdout))
    message = "PyYAML is not importable (nor in the system python3) to parse the Kubernetes manifests"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


# -- the tokenizer itself --------------------------------------------------------------
@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (model) (rate(model_monitor_predictions_total{status="ok"}[5m]))',
     {"model_monitor_predictions_total"}),
    ('histogram_quantile(0.99, sum by (le) (rate(model_monitor_batch_duration_seconds_bucket[$__rate_interval])))',
     {"model_monitor_batch_duration_seconds_bucket"}),
    ('a:b:c > 2 * x:y:z offset 10m and on (job) up{job="model-monitor"} == 0 unless vector(1e-9)',
     {"a:b:c", "x:y:z", "up"}),
    ('max(model_monitor_bound_entries / ignoring(x) group_left (y) bogus_name{a="b,c}"})',
     {"model_monitor_bound_entries", "bogus_name"}),
])
def test_metric_names_in(expr: str, names: set[str]) -> None:
    assert metric_names_in(expr) == names


def test_yaml_values_reads_block_scalars() -> None:
    text = ("# expr: not this\nrules:\n  - record: a:b:c\n    expr: |\n      sum(x)\n      / sum(y)\n"
            "  - alert: A\n    expr: up == 0\n  - expr: 'q'\n")
    assert yaml_values(text, "expr") == ["sum(x)\n/ sum(y)", "up == 0", "q"]
    assert yaml_values(text, "record") == ["a:b:c"]


# -- Prometheus: rules, their unit tests, the example configuration --------------------
def test_promtool_check_rules() -> None:
    assert_ok(run(tool("promtool"), "check", "rules", str(RULES)))


def test_promtool_test_rules() -> None:
    assert_ok(run(tool("promtool"), "test", "rules", str(RULE_TESTS)))


def test_promtool_check_config() -> None:
    assert_ok(run(tool("promtool"), "check", "config", str(PROMETHEUS_CONFIG)))


def rules() -> list[tuple[str, str, str]]:
    """(record or alert, name, expr) of every rule of rules.yml."""
    text = RULES.read_text(encoding="utf-8")
    found = []
    for block in re.split(r"^(?=[ \t]*- (?:record|alert): )", text, flags=re.MULTILINE)[1:]:
        match = re.match(r"[ \t]*- (record|alert): (\S+)", block)
        assert match, block
        exprs = yaml_values(block, "expr")
        assert len(exprs) == 1, f"rule {match.group(2)} has one expr"
        found.append((match.group(1), match.group(2), exprs[0]))
    assert len(found) == len(yaml_values(text, "expr"))
    return found


def rule_exprs() -> list[str]:
    return [expr for _, _, expr in rules()]


def recorded_names() -> set[str]:
    return {name for kind, name, _ in rules() if kind == "record"}


def test_rules_use_only_exported_metrics() -> None:
    known = series_names() | recorded_names() | PROMETHEUS_OWN
    for expr in rule_exprs():
        unknown = metric_names_in(expr) - known
        assert not unknown, f"unknown metric(s) {sorted(unknown)} in rule expression:\n{expr}"


def test_every_model_monitor_name_in_rules_and_tests_exists() -> None:
    """Anything named model_monitor_* anywhere in the files (annotations, comments and
    series of the tests included) is a series the daemon exports; every level:metric:op
    name is a recording rule of rules.yml."""
    known, recorded = series_names(), recorded_names()
    assert recorded, "rules.yml defines recording rules"
    for path in (RULES, RULE_TESTS):
        text = path.read_text(encoding="utf-8")
        unknown = set(_OUR_METRIC.findall(text)) - known
        assert not unknown, f"{path.name}: not in monitor.metrics.METRICS: {sorted(unknown)}"
        undefined = set(_RECORDED.findall(text)) - recorded
        assert not undefined, f"{path.name}: recording rules not defined in rules.yml: {sorted(undefined)}"


def test_rule_tests_feed_only_exported_series() -> None:
    text = RULE_TESTS.read_text(encoding="utf-8")
    names = {s.split("{", 1)[0] for s in yaml_values(text, "series")}
    assert names, "tests.yml has input series"
    assert names <= series_names() | PROMETHEUS_OWN, sorted(names - series_names() - PROMETHEUS_OWN)
    exprs = yaml_values(text, "expr")
    assert exprs
    for expr in exprs:
        assert metric_names_in(expr) <= series_names() | recorded_names(), expr


def test_every_alert_is_tested_and_annotated() -> None:
    text = RULES.read_text(encoding="utf-8")
    alerts = set(yaml_values(text, "alert"))
    tested = set(yaml_values(RULE_TESTS.read_text(encoding="utf-8"), "alertname"))
    assert alerts - tested == set(), f"alerts without a promtool test: {sorted(alerts - tested)}"
    assert set(yaml_values(text, "severity")) == {"page", "ticket"}
    # Each alert block has a severity, a summary, a description and a runbook hint.
    for block in re.split(r"^\s*- alert: ", text, flags=re.MULTILINE)[1:]:
        name = block.split()[0]
        for key in ("severity", "summary", "description", "runbook", "runbook_url"):
            assert re.search(rf"^\s+{key}:", block, flags=re.MULTILINE), f"{name} has no {key}"


def test_runbook_links_point_to_readme_sections() -> None:
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    slugs = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
             for h in re.findall(r"^#{1,6} (.+)$", readme, flags=re.MULTILINE)}
    urls = yaml_values(RULES.read_text(encoding="utf-8"), "runbook_url")
    assert urls
    for url in urls:
        assert url.split("#")[0].endswith("deploy/README.md"), url
        assert url.split("#")[1] in slugs, f"{url}: no such section in deploy/README.md"


def test_rules_match_the_default_objectives() -> None:
    """rules.yml hard-codes the [slo] defaults: keep them in step."""
    slo = load_settings(environ={}).slo
    text = RULES.read_text(encoding="utf-8")
    assert f'le="{slo.latency_threshold_ms / 1000:g}"' in text
    assert f"(1 - {slo.latency_objective:g})" in text
    assert f"(1 - {slo.availability_objective:g})" in text


# -- Alertmanager ----------------------------------------------------------------------
def test_amtool_check_config() -> None:
    assert_ok(run(tool("amtool"), "check-config", str(ALERTMANAGER_CONFIG)))


@pytest.mark.parametrize("severity", ["page", "ticket"])
def test_alertmanager_routes_severity_to_its_receiver(severity: str) -> None:
    assert_ok(run(tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
                  f"--verify.receivers={severity}", f"severity={severity}", "alertname=ModelMonitorX",
                  "model=recsys"))


# -- Grafana ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_dashboard_structure(dashboard: dict[str, Any]) -> None:
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["model"]["definition"] == "label_values(model_monitor_predictions_total, model)"
    assert variables["model"]["query"]["query"] == variables["model"]["definition"]
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert rows == ["Traffic and SLOs", "Drift", "Slices, fairness and canaries", "Feedback loop", "Health"]
    for panel in panels:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys(), panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no targets"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_dashboard_uses_only_exported_metrics(dashboard: dict[str, Any]) -> None:
    known = series_names() | recorded_names()
    exprs = grafana_exprs(dashboard)
    for expr in exprs:
        unknown = metric_names_in(as_promql(expr)) - known
        assert not unknown, f"unknown metric(s) {sorted(unknown)} in dashboard expression:\n{expr}"
        assert set(_OUR_METRIC.findall(expr)) <= series_names(), expr
        assert set(_RECORDED.findall(expr)) <= recorded_names(), expr
    # Every metric of the contract is on the dashboard, directly or through a recording rule.
    recorded = {name: expr for kind, name, expr in rules() if kind == "record"}
    used = {name for expr in exprs for name in metric_names_in(as_promql(expr))}
    used |= {name for rule in used & recorded.keys() for name in metric_names_in(recorded[rule])}
    shown = used | {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    missing = {s.name for s in METRICS} - shown
    assert not missing, f"metrics on no dashboard panel: {sorted(missing)}"


def test_dashboard_expressions_parse(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool parses every dashboard expression (as recording rules of a scratch file)."""
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(grafana_exprs(dashboard)):
        lines += [f"      - record: dashboard_expression_{i}", f"        expr: {json.dumps(as_promql(expr))}"]
    scratch = tmp_path / "dashboard-rules.yml"
    scratch.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert_ok(run(tool("promtool"), "check", "rules", str(scratch)))


# -- the example configuration, the container, Kubernetes ------------------------------
def monitor_command() -> list[str]:
    script = Path(sys.executable).parent / "monitor"
    return [str(script)] if script.exists() else [sys.executable, "-m", "monitor"]


def test_example_config_is_accepted() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    result = subprocess.run([*monitor_command(), "config", "--check", "-c", str(EXAMPLE_CONFIG)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT, env=env, check=False)
    assert_ok(result)


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert instructions[0].startswith("FROM python:3.11-slim")
    assert "EXPOSE 9465" in instructions
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "runs as a non-root user"
    healthcheck = text[text.index("HEALTHCHECK"):].split("\n\n")[0]
    assert "/healthz" in healthcheck and "9465" in healthcheck
    entrypoint = next(line for line in instructions if line.startswith("ENTRYPOINT "))
    cmd = next(line for line in instructions if line.startswith("CMD "))
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == ["monitor"]
    assert json.loads(cmd.removeprefix("CMD ")) == ["run", "-c", "/etc/model-monitor/monitor.toml"]
    assert re.search(r"pip install .*/src", text)
    for source in re.findall(r"^COPY (?!\. )(\S+) ", text, flags=re.MULTILINE):
        assert (ROOT / source).exists(), f"COPY {source}: no such file"


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """The Kubernetes objects by kind."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in load_yaml_documents(path):
            assert isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind"), path.name
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], path.name
            objects[doc["kind"]] = doc
    return objects


def test_kubernetes_manifests(manifests: dict[str, dict[str, Any]]) -> None:
    assert {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "Kustomization"} <= manifests.keys()
    listed = set(manifests["Kustomization"]["resources"])
    assert listed == {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}

    deployment, service, pdb = manifests["Deployment"], manifests["Service"], manifests["PodDisruptionBudget"]
    spec, pod = deployment["spec"], deployment["spec"]["template"]
    assert spec["replicas"] == 2
    labels = pod["metadata"]["labels"]
    for selector in (spec["selector"]["matchLabels"], service["spec"]["selector"],
                     pdb["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()

    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e for e in container.get("env", [])}
    assert env["MONITOR_STORE_URL"]["valueFrom"]["secretKeyRef"]["key"]

    # The ConfigMap's monitor.toml with the Deployment's environment is a valid config.
    toml_text = manifests["ConfigMap"]["data"]["monitor.toml"]
    tomllib.loads(toml_text)
    settings = load_settings(toml_text=toml_text, environ={
        name: "postgresql+psycopg://monitor@postgres/monitor" if name == "MONITOR_STORE_URL" else "x"
        for name in env})
    assert settings.store.url.startswith("postgresql")

    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert container["args"] == ["run", "-c", f"{mount['mountPath']}/monitor.toml"]
    assert pod["spec"]["terminationGracePeriodSeconds"] > settings.service.shutdown_timeout_s

    port = settings.http.port
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port in ports.values()
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == port
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= container["resources"][kind].keys()
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True

    (service_port,) = service["spec"]["ports"]
    assert service_port["port"] == port and service_port["targetPort"] in ports
    assert pdb["spec"]["minAvailable"] < spec["replicas"]


# -- end to end: a real Prometheus scrapes the daemon's /metrics and runs the rules -------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def query(base: str, expr: str) -> list[dict[str, Any]]:
    answer = get_json(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert answer["status"] == "success", (expr, answer)
    return answer["data"]["result"]


def wait_for(what: str, check: Any, log: Path, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            pytest.fail(f"timed out waiting for {what}; prometheus log:\n{tail}")
        time.sleep(0.1)


@pytest.fixture
def traffic() -> Iterator[StatusServer]:
    """The daemon's real HTTP server on a free port, with every metric set and moving:
    per tick 99 ok and 1 error prediction, 9 latencies up to 100 ms and 1 over, 2 bad
    messages of 100, 5 clicks per 100 impressions, 1 thumbs_down and 1 complaint."""
    metrics = Metrics("test")
    stop = threading.Event()

    def tick() -> None:
        with metrics.lock:
            metrics.inc(PREDICTIONS, ("recsys", "v1", "ok"), 99)
            metrics.inc(PREDICTIONS, ("recsys", "v1", "error"), 1)
            metrics.inc(DRIFT_TESTED_PREDICTIONS, ("recsys",), 25)  # sample_rate 0.25
            metrics.observe_many(PREDICTION_LATENCY, ("recsys", "v1"),
                                 np.array([0.02] * 8 + [0.1, 0.3]))
            metrics.inc(EVENTS, ("recsys", "prediction"), 100)
            metrics.inc(EVENTS, ("recsys", "impression"), 100)
            metrics.inc(EVENTS, ("recsys", "click"), 5)
            metrics.inc(FEEDBACK, ("recsys", "thumbs_down"), 1)
            metrics.inc(FEEDBACK, ("recsys", "complaint"), 1)
            metrics.inc(FEEDBACK, ("recsys", "thumbs_up"), 3)
            metrics.inc(INVALID_EVENTS, ("not_json",), 2)
            metrics.inc(COMMITTED_MESSAGES, (), 100)
            metrics.inc(BATCHES, ())
            metrics.observe_many(BATCH_DURATION, (), np.array([0.004]))
            metrics.set(BOUND_ENTRIES, ("join_predictions",), 1000)
            metrics.set(BOUND_CAPACITY, ("join_predictions",), 200000)
            metrics.set(DETECTOR_SCORE, ("recsys", "v1", "data_drift", "price", "ks"), 0.1)
            metrics.set(DETECTOR_THRESHOLD, ("recsys", "v1", "data_drift", "price", "ks"), 0.3)
            metrics.inc(ALERTS, ("recsys", "data_drift", "ks"))
            metrics.inc(JOIN, ("matched",))
            metrics.inc(FLAGGED_SAMPLES, ("recsys", "thumbs_down"))
            metrics.inc(RETRAIN_PUSHED, ("recsys", "queue"))
            metrics.set(RETRAIN_PENDING, ("queue",), 10)
            metrics.set(READY, (), 1)
            metrics.inc(RETRAIN_TRIGGERS, ("recsys", "weekly"))
            metrics.inc(REDACTIONS, ("email",))
            metrics.inc(FEATURE_TYPE_MISMATCHES, ("recsys",))
            metrics.set(CONSUMER_LAG, ("monitor.tracking", "0"), 5)
            metrics.inc(BOUND_OVERFLOW, ("join_predictions",))
            metrics.inc(ERRORS, ("store", "true"))
            metrics.inc(STAGE_SECONDS, ("decode",), 0.01)
            metrics.inc(CHECKPOINTS, ("saved",))
            metrics.set(CHECKPOINT_BYTES, (), 2**20)
            metrics.inc(JOIN_MOVES, ("taken",))
            metrics.set(LAST_EVENT_TIMESTAMP, ("recsys",), time.time())
            for event, n in (("prediction", 50), ("error", 1), ("slow", 5), ("negative_feedback", 1), ("label", 10),
                             ("label_error", 1), ("impression", 50), ("click", 3), ("conversion", 1)):
                metrics.inc(SEGMENT_EVENTS, ("recsys", "region", "east", event), n)
            for typ, n in (("impression", 100), ("click", 5), ("conversion", 2)):
                metrics.inc(BUSINESS_EVENTS, ("recsys", "v1", typ), n)
            for verdict in ("pass", "fail", "inconclusive"):
                metrics.set(CANARY_VERDICT, ("recsys", "v2", "v1", verdict), float(verdict == "inconclusive"))
            for bound, value in (("estimate", 0.01), ("lower", -0.02), ("upper", 0.04)):
                metrics.set(CANARY_DIFFERENCE, ("recsys", "v2", "v1", "error_rate", bound), value)
                metrics.set(FAIRNESS_RATIO, ("recsys", "gender", "f", "demographic_parity", bound), 1 + value)
            metrics.set(ESTIMATED_ERROR, ("recsys", "v1"), 0.07)
            metrics.inc(BROKER_OUTAGES, ())

    def loop() -> None:
        while not stop.wait(0.05):
            tick()

    tick()
    server = StatusServer("127.0.0.1", 0, metrics.registry(), Health(60.0))
    server.start()
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=5)
        server.stop()


@pytest.mark.slow
def test_prometheus_scrapes_and_records(traffic: StatusServer, tmp_path: Path,
                                        dashboard: dict[str, Any]) -> None:
    prometheus = tool("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "model-monitor",
                            "static_configs": [{"targets": [f"127.0.0.1:{traffic.port}"]}]}],
    }), encoding="utf-8")  # JSON is YAML
    log = tmp_path / "prometheus.log"
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        def target_up() -> bool:
            targets = get_json(f"{base}/api/v1/targets")["data"]["activeTargets"]
            return any(t["labels"].get("job") == "model-monitor" and t["health"] == "up" for t in targets)

        wait_for("the model-monitor target to be up", target_up, log)

        def recorded(name: str) -> float | None:
            result = query(base, f'{name}{{model="recsys"}}')
            value = float(result[0]["value"][1]) if result else None
            return None if value is None or value != value else value  # NaN: not enough samples yet

        success = wait_for("model:model_monitor_predictions_success:ratio_rate5m",
                           lambda: recorded("model:model_monitor_predictions_success:ratio_rate5m"), log)
        assert success == pytest.approx(0.99)
        good = wait_for("the latency good ratio",
                        lambda: recorded("model:model_monitor_prediction_latency_good:ratio_rate5m"), log)
        assert good == pytest.approx(0.9)  # 0.1 s itself counts as good: le="0.1"
        negative = wait_for("the negative feedback ratio",
                            lambda: recorded("model:model_monitor_feedback_negative:ratio_rate5m"), log)
        assert negative == pytest.approx(0.02)
        ctr = wait_for("the CTR", lambda: recorded("model:model_monitor_events_ctr:ratio_rate5m"), log)
        assert ctr == pytest.approx(0.05)
        bad_input = wait_for("the bad-input share",
                             lambda: query(base, "job:model_monitor_invalid_events:ratio_rate5m"), log)
        assert float(bad_input[0]["value"][1]) == pytest.approx(0.02)

        # Every rule has been evaluated without error (no many-to-many matches, ...).
        def rules_evaluated() -> list[dict[str, Any]] | None:
            groups = get_json(f"{base}/api/v1/rules")["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return rules if rules and all(r["health"] != "unknown" for r in rules) else None

        rules = wait_for("every rule to be evaluated", rules_evaluated, log)
        assert len(rules) == len(rule_exprs())
        failing = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
        assert not failing, failing
        # The fake traffic is healthy by the SLOs' standards... except for latency (10%
        # over 100 ms) and bad input (2%), whose alerts are pending or firing now.
        def active_alerts() -> set[str] | None:
            groups = get_json(f"{base}/api/v1/rules?type=alert")["data"]["groups"]
            active = {r["name"] for g in groups for r in g["rules"] if r["state"] != "inactive"}
            return active if {"ModelMonitorLatencySLOSlowBurn", "ModelMonitorBadInputHigh"} <= active else None

        active = wait_for("the latency and bad-input alerts to be pending", active_alerts, log)
        assert "ModelMonitorAvailabilitySLOFastBurn" not in active  # 1% errors: burn rate 10 < 14.4
        assert "ModelMonitorLatencySLOFastBurn" not in active  # 10% slow: burn rate 10 < 14.4

        # Every dashboard expression runs on the real server, and the panels have data.
        # (A recording rule may need one more evaluation: poll briefly.)
        deadline = time.monotonic() + 10
        while True:
            empty = [expr for expr in grafana_exprs(dashboard)
                     if not query(base, as_promql(expr).replace("[5m]", "[10s]"))]
            if not empty or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert not empty, f"dashboard expressions with no data: {empty}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

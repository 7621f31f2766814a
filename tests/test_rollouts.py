"""deploy/rollouts/: the Argo Rollouts AnalysisTemplate and the Flagger MetricTemplate.

Their PromQL runs on Prometheus's own engine (``promtool test rules``) over the verdict
gauge as the daemons export it, in every state a canary can be in, with the templates'
arguments replaced by concrete values; a misspelt metric or label name fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_deploy import assert_ok, load_yaml_documents, metric_names_in, run, series_names, tool

from monitor.metrics import CANARY_VERDICT

ROOT = Path(__file__).resolve().parent.parent
ROLLOUTS = ROOT / "deploy" / "rollouts"
ARGO = ROLLOUTS / "argo-analysistemplate.yaml"
FLAGGER = ROLLOUTS / "flagger-metrictemplate.yaml"

MODEL, CANARY, BASELINE = "recsys", "v13", "v12"
VERDICTS = ("pass", "fail", "inconclusive")


def single(path: Path) -> dict[str, Any]:
    docs = [d for d in load_yaml_documents(path) if d is not None]
    assert len(docs) == 1, f"{path.name} holds one object"
    assert isinstance(docs[0], dict)
    return docs[0]


@pytest.fixture(scope="module")
def argo() -> dict[str, Any]:
    return single(ARGO)


@pytest.fixture(scope="module")
def flagger() -> dict[str, Any]:
    return single(FLAGGER)


def argo_query(template: dict[str, Any], **args: str) -> str:
    """The AnalysisTemplate's query with ``{{args.NAME}}`` replaced, as Argo does."""
    query = str(template["spec"]["metrics"][0]["provider"]["prometheus"]["query"])
    names = set(re.findall(r"\{\{\s*args\.([\w-]+)\s*\}\}", query))
    declared = {a["name"] for a in template["spec"]["args"]}
    assert names <= declared, f"the query uses undeclared args {sorted(names - declared)}"
    filled = re.sub(r"\{\{\s*args\.([\w-]+)\s*\}\}", lambda m: args[m.group(1)], query)
    assert "{{" not in filled, filled
    return filled


def flagger_query(template: dict[str, Any], **variables: str) -> str:
    """The MetricTemplate's query with ``{{ variables.NAME }}`` replaced, as Flagger does."""
    query = str(template["spec"]["query"])
    filled = re.sub(r"\{\{\s*variables\.(\w+)\s*\}\}", lambda m: variables[m.group(1)], query)
    assert "{{" not in filled, filled
    return filled


def test_argo_analysis_template(argo: dict[str, Any]) -> None:
    assert (argo["apiVersion"], argo["kind"]) == ("argoproj.io/v1alpha1", "AnalysisTemplate")
    assert argo["metadata"]["name"] == "model-monitor-canary"
    args = {a["name"]: a for a in argo["spec"]["args"]}
    assert args.keys() == {"model", "canary-version", "prometheus-address"}
    assert "value" not in args["model"] and "value" not in args["canary-version"], "no default: must be given"
    (metric,) = argo["spec"]["metrics"]
    assert metric["provider"]["prometheus"]["address"] == "{{args.prometheus-address}}"
    assert re.fullmatch(r"\d+[smh]", metric["interval"])
    assert metric["failureLimit"] == 0, "one failed measurement aborts the rollout"
    assert metric["count"] >= 2
    assert metric["inconclusiveLimit"] == metric["count"] - 1, "success needs one pass, no fail"
    assert metric["successCondition"] == "result[0] == 1"
    assert metric["failureCondition"] == "result[0] == -1"


def test_flagger_metric_template(flagger: dict[str, Any]) -> None:
    assert (flagger["apiVersion"], flagger["kind"]) == ("flagger.app/v1beta1", "MetricTemplate")
    assert flagger["metadata"]["name"] == "model-monitor-canary-fail"
    assert flagger["spec"]["provider"]["type"] == "prometheus"
    assert flagger["spec"]["provider"]["address"].startswith("http")
    assert set(re.findall(r"variables\.(\w+)", flagger["spec"]["query"])) == {"model", "canary_version"}
    text = FLAGGER.read_text(encoding="utf-8")
    assert re.search(r"^#\s+thresholdRange:\n#\s+max: 0\b", text, flags=re.MULTILINE), "the Canary example"
    assert re.search(r"^#\s+templateVariables:\n#\s+model: \S+\n#\s+canary_version: \S+", text,
                     flags=re.MULTILINE)


def test_the_queries_name_only_the_verdict_gauge_and_its_labels(argo: dict[str, Any],
                                                                 flagger: dict[str, Any]) -> None:
    for query in (argo_query(argo, **{"model": MODEL, "canary-version": CANARY}),
                  flagger_query(flagger, model=MODEL, canary_version=CANARY)):
        assert metric_names_in(query) == {CANARY_VERDICT.name}
        assert CANARY_VERDICT.name in series_names()
        matchers = set(re.findall(r"(\w+)\s*=~?\s*\"", query))
        assert matchers == {"model", "model_version", "verdict"} <= set(CANARY_VERDICT.labels), matchers
        assert set(re.findall(r'verdict="(\w+)"', query)) <= set(VERDICTS)


# -- the queries on Prometheus's engine ---------------------------------------------------
def verdict_series(model: str, version: str, verdict: str, instance: str, baseline: str = BASELINE
                   ) -> list[dict[str, str]]:
    """The three series one daemon exports for a canary whose verdict is ``verdict``."""
    return [{"series": f'{CANARY_VERDICT.name}{{instance="{instance}",job="model-monitor",model="{model}",'
                       f'model_version="{version}",baseline_version="{baseline}",verdict="{v}"}}',
             "values": f"{int(v == verdict)}x10"} for v in VERDICTS]


#: Series of other canaries, in every scenario: the query must not see them.
NOISE = [*verdict_series(MODEL, "v14", "fail", "a"), *verdict_series("search", CANARY, "fail", "a"),
         *verdict_series(MODEL, "v1", "fail", "a")]

#: scenario -> (the verdicts the daemons export for recsys v13, the Argo result, the Flagger result)
SCENARIOS: dict[str, tuple[list[str], int, int]] = {
    "pass": (["pass"], 1, 0),
    "fail": (["fail"], -1, 1),
    "inconclusive": (["inconclusive"], 0, 0),
    "not seen yet": ([], 0, 0),
    "two daemons, one fails": (["inconclusive", "fail"], -1, 1),
    "two daemons, one passes": (["pass", "inconclusive"], 0, 0),
    "two daemons, both pass": (["pass", "pass"], 1, 0),
}


def argo_outcome(condition: dict[str, Any], value: float) -> str:
    """What Argo makes of a measurement. Its conditions are expr-lang over ``result`` (the
    query's values); these two must be plain ``result[0] == N`` comparisons, read here."""
    def holds(key: str) -> bool:
        match = re.fullmatch(r"result\[0\] == (-?\d+)", condition[key])
        assert match, condition[key]
        return value == int(match.group(1))
    return "Failed" if holds("failureCondition") else "Successful" if holds("successCondition") else "Inconclusive"


def test_the_queries_give_each_verdict_on_prometheus(argo: dict[str, Any], flagger: dict[str, Any],
                                                     tmp_path: Path) -> None:
    promtool = tool("promtool")
    queries = {"argo": argo_query(argo, **{"model": MODEL, "canary-version": CANARY}),
               "flagger": flagger_query(flagger, model=MODEL, canary_version=CANARY)}
    tests = []
    for name, (verdicts, argo_value, flagger_value) in SCENARIOS.items():
        series = [s for i, v in enumerate(verdicts) for s in verdict_series(MODEL, CANARY, v, f"daemon-{i}")]
        expected = {"argo": argo_value, "flagger": flagger_value}
        tests.append({
            "name": name, "interval": "1m", "input_series": series + NOISE,
            "promql_expr_test": [{"expr": queries[q], "eval_time": "5m",
                                  "exp_samples": [{"labels": "{}", "value": expected[q]}]} for q in queries],
        })
    path = tmp_path / "rollout-queries-test.yml"
    path.write_text(json.dumps({"rule_files": [], "evaluation_interval": "1m", "tests": tests}, indent=1),
                    encoding="utf-8")  # JSON is YAML
    assert_ok(run(promtool, "test", "rules", str(path)))

    # And what Argo makes of each result.
    metric = argo["spec"]["metrics"][0]
    outcomes = {name: argo_outcome(metric, value) for name, (_, value, _) in SCENARIOS.items()}
    assert outcomes == {"pass": "Successful", "fail": "Failed", "inconclusive": "Inconclusive",
                        "not seen yet": "Inconclusive", "two daemons, one fails": "Failed",
                        "two daemons, one passes": "Inconclusive", "two daemons, both pass": "Successful"}


def test_a_misspelt_label_would_be_caught(argo: dict[str, Any], tmp_path: Path) -> None:
    """The check above is not vacuous: the Argo query with a misspelt label gives 0 on a failing canary."""
    promtool = tool("promtool")
    broken = argo_query(argo, **{"model": MODEL, "canary-version": CANARY}).replace("model_version=", "modelversion=")
    path = tmp_path / "broken-test.yml"
    path.write_text(json.dumps({"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": verdict_series(MODEL, CANARY, "fail", "a"),
        "promql_expr_test": [{"expr": broken, "eval_time": "5m", "exp_samples": [{"labels": "{}", "value": -1}]}],
    }]}), encoding="utf-8")
    result = run(promtool, "test", "rules", str(path))
    assert result.returncode != 0, "promtool accepted a query that cannot see the failing canary"

"""The monitoring assets query only metrics that exist, and Prometheus accepts them.

Every PromQL expression in the Grafana dashboards (panel targets, template variables) and in
the alert rules is tokenised; each metric name must be one the Layer 3 registry exposes
(its own families and the ``process_*`` / ``python_*`` collectors it registers) or one
Prometheus adds itself (``up``, ``scrape_*``), and every ``histogram_quantile`` must be taken
over ``rate``/``increase`` of a ``_bucket`` series.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from conftest import REPO
from himari_l3.observability.metrics import Layer3Metrics

ROOT = REPO
MONITORING = ROOT / "monitoring"
DASHBOARDS = MONITORING / "grafana" / "dashboards"
ALERTS = MONITORING / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = MONITORING / "prometheus" / "prometheus.yml"

EXPECTED_TITLES = {
    "Position Sizing Overview",
    "Risk Management",
    "Regime & Cascade",
    "Portfolio/Ensemble",
    "System Health & Circuit Breaker",
}

# ------------------------------------------------------------------ exposed sample names

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "gauge": ("",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "unknown": ("",),
}

# Series Prometheus adds to every scrape itself.
_SCRAPE = {
    "up", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added",
}


def exposed_sample_names(registry: CollectorRegistry) -> set[str]:
    """The sample names Prometheus would store for every family on ``registry``."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + s for s in _SUFFIXES[family.type])
        names.update(s.name for s in family.samples)
    return names


def known_metric_names() -> set[str]:
    """What a fresh Layer 3 registry exposes (the service's /metrics) plus the scrape names.

    Only the registry itself counts: the process panel once queried ``process_*`` series
    that the service's own registry never had."""
    layer3 = CollectorRegistry()
    Layer3Metrics(layer3)
    return exposed_sample_names(layer3) | _SCRAPE


# ------------------------------------------------------------------------- PromQL parsing

FUNCTIONS = {
    # aggregation operators
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    # functions (Prometheus 2.x/3.x)
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
    "delta", "deriv", "exp", "floor", "histogram_avg", "histogram_count",
    "histogram_fraction", "histogram_quantile", "histogram_stddev", "histogram_stdvar",
    "histogram_sum", "holt_winters", "double_exponential_smoothing", "hour", "idelta",
    "increase", "irate", "label_join", "label_replace", "last_over_time", "ln", "log10",
    "log2", "mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi",
    "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
    "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc",
    "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan",
    "tanh", "time", "timestamp", "vector", "year",
}
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "atan2", "inf", "nan", "start", "end",
}

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")
_OFFSET = re.compile(r"\boffset\s+-?[\w$]+|@\s*[\w.()]+")
_IDENT = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_LABEL_VALUES = re.compile(r"^\s*label_values\s*\((.*?)(?:,\s*\w+\s*)?\)\s*$", re.S)
_HQ_RATE = re.compile(
    r"\b(?:rate|increase)\s*\(\s*[a-zA-Z_:][\w:]*_bucket\s*(?:\{[^{}]*\})?\s*\[[^\]]+\]\s*\)")


def _blank_strings(expr: str) -> str:
    return _STRING.sub('""', expr)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL (or Grafana ``label_values``) expression selects."""
    m = _LABEL_VALUES.match(expr)
    if m:  # Grafana: label_values(metric_or_selector, label) / label_values(label)
        inner = m.group(1).strip()
        if "," not in expr:  # label_values(label): a label name, no metric
            return set()
        expr = inner
    e = _blank_strings(expr)
    e = _GRAFANA_VAR.sub(" ", e)
    e = _MATCHERS.sub(" ", e)
    e = _RANGE.sub(" ", e)
    e = _OFFSET.sub(" ", e)
    while True:  # grouping clauses may be repeated (``on (...) group_left (...)``)
        stripped = _GROUPING.sub(" ", e)
        if stripped == e:
            break
        e = stripped
    names: set[str] = set()
    for ident, call in _IDENT.findall(e):
        low = ident.lower()
        if call:
            if ident not in FUNCTIONS and low not in KEYWORDS:
                names.add(ident + "(")  # an unknown function is an error too
        elif low not in KEYWORDS and ident not in FUNCTIONS:
            names.add(ident)
    return names


def _balanced_args(expr: str, open_index: int) -> str:
    depth = 0
    for i in range(open_index, len(expr)):
        if expr[i] == "(":
            depth += 1
        elif expr[i] == ")":
            depth -= 1
            if depth == 0:
                return expr[open_index + 1:i]
    raise ValueError(f"unbalanced parentheses in {expr!r}")


def histogram_quantile_problems(expr: str) -> list[str]:
    """``histogram_quantile`` calls whose argument is not a rate/increase over ``_bucket``."""
    e = _blank_strings(expr)
    problems = []
    for m in re.finditer(r"\bhistogram_quantile\s*\(", e):
        args = _balanced_args(e, m.end() - 1)
        if not _HQ_RATE.search(args):
            problems.append(f"histogram_quantile({args}) has no rate(..._bucket[...])")
    return problems


def check_expression(expr: str, known: set[str]) -> list[str]:
    """Every problem with one expression (empty when it is fine)."""
    problems = [f"unknown metric or function {name!r}"
                for name in sorted(metric_names(expr) - known)]
    return problems + histogram_quantile_problems(expr)


# ------------------------------------------------------------------------ asset loading

def load_dashboards() -> dict[Path, dict[str, Any]]:
    return {p: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def dashboard_expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) for every panel target and every query template variable."""
    found = []
    for panel in _walk(dashboard.get("panels", [])):
        if isinstance(panel.get("targets"), list):
            for t in panel["targets"]:
                if t.get("expr"):
                    found.append((f"panel {panel.get('title')!r} {t.get('refId')}", t["expr"]))
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if q:
                found.append((f"variable ${var['name']}", q))
    return found


def alert_expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load(ALERTS.read_text())
    found = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            found.append((f"{group['name']}/{rule.get('alert') or rule.get('record')}",
                          rule["expr"]))
    return found


def all_expressions() -> list[tuple[str, str]]:
    found = [(f"{p.name}: {where}", expr)
             for p, d in load_dashboards().items() for where, expr in dashboard_expressions(d)]
    return found + [(f"alerts.yml: {where}", expr) for where, expr in alert_expressions()]


@pytest.fixture(scope="module")
def known() -> set[str]:
    return known_metric_names()


# ---------------------------------------------------------------------------- the tests

def test_every_query_names_only_existing_metrics(known: set[str]) -> None:
    """No dashboard or alert query names a metric the registry does not expose."""
    exprs = all_expressions()
    assert len(exprs) > 60, "expected the five dashboards and the alert rules to be found"
    problems = [f"{where}: {p}\n    {expr}"
                for where, expr in exprs for p in check_expression(expr, known)]
    assert not problems, "\n".join(problems)


def test_every_query_selects_at_least_one_layer3_or_standard_metric() -> None:
    """Each expression selects some metric (a tokeniser that drops everything would pass)."""
    empty = [where for where, expr in all_expressions()
             if not metric_names(expr) and "label_values" not in expr]
    assert not empty, empty


def test_five_dashboards_with_exact_titles_and_unique_uids() -> None:
    """Exactly the five named dashboards, with distinct uids."""
    dashboards = load_dashboards()
    titles = [d["title"] for d in dashboards.values()]
    assert sorted(titles) == sorted(EXPECTED_TITLES)
    uids = [d["uid"] for d in dashboards.values()]
    assert all(uids) and len(set(uids)) == len(uids), uids


@pytest.mark.parametrize("path", sorted(DASHBOARDS.glob("*.json")), ids=lambda p: p.stem)
def test_dashboard_shape(path: Path) -> None:
    """Each dashboard has a Prometheus ${datasource} variable, 6-16 panels, units, ids."""
    d = json.loads(path.read_text())
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in d["panels"] if p.get("type") != "row"]
    assert 6 <= len(panels) <= 16, len(panels)
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids)
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"]), p["title"]
        assert p["fieldConfig"]["defaults"].get("unit"), f"{p['title']} has no unit"
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]), p["title"]


def test_alerts_have_for_severity_and_annotations() -> None:
    """Every alert waits (for:), has a severity and summary/description/runbook."""
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    alerts = [r for r in rules if "alert" in r]
    assert len(alerts) >= 14
    names = [r["alert"] for r in alerts]
    assert len(set(names)) == len(names)
    for r in alerts:
        assert "for" in r, r["alert"]
        assert r["labels"]["severity"] in {"critical", "warning", "info"}, r["alert"]
        assert {"summary", "description", "runbook"} <= set(r["annotations"]), r["alert"]


def test_scrape_config_points_at_the_service_and_the_alerts() -> None:
    """Job himari_l3 scrapes 127.0.0.1:8080/metrics every 15s and loads alerts.yml."""
    cfg = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == "himari_l3"]
    assert job["metrics_path"] == "/metrics"
    assert job["scrape_interval"] == "15s"
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:8080"]
    rule_files = [(PROMETHEUS_CONFIG.parent / f).resolve() for f in cfg["rule_files"]]
    assert ALERTS.resolve() in rule_files


def test_grafana_provisioning_files() -> None:
    """The datasource and dashboard providers are provisioned."""
    prov = MONITORING / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())
    assert ds["datasources"][0]["type"] == "prometheus"
    dash = yaml.safe_load((prov / "dashboards" / "himari.yml").read_text())
    assert dash["providers"][0]["type"] == "file"


# ------------------------------------------------------------------- checker self-tests

@pytest.mark.parametrize(("expr", "expected"), [
    ('sum by (le) (rate(himari_l3_sizing_latency_seconds_bucket{job="$job"}[5m]))',
     {"himari_l3_sizing_latency_seconds_bucket"}),
    ('a_total{code=~"5..", x="not_a_metric(y)"} / ignoring (code) group_left (x) b offset 5m',
     {"a_total", "b"}),
    ("rate(c_total[$__rate_interval]) > bool 0 and on (instance) up == 1", {"c_total", "up"}),
    ("time() - max(d_timestamp_seconds{job=~\"${job:regex}\"}) * 1e3", {"d_timestamp_seconds"}),
    ("label_values(himari_l3_cascade_risk_score, symbol)", {"himari_l3_cascade_risk_score"}),
    ("label_values(symbol)", set()),
])
def test_tokeniser_extracts_only_metric_names(expr: str, expected: set[str]) -> None:
    """Labels, strings, ranges, variables, functions and keywords are not metric names."""
    assert metric_names(expr) == expected


def test_checker_flags_a_made_up_metric(known: set[str]) -> None:
    """A metric the registry does not define is reported."""
    problems = check_expression('sum(rate(himari_l3_made_up_total{job="x"}[5m]))', known)
    assert problems == ["unknown metric or function 'himari_l3_made_up_total'"]


def test_checker_flags_histogram_quantile_without_rate(known: set[str]) -> None:
    """histogram_quantile over raw buckets (no rate/increase) is reported."""
    bare = "histogram_quantile(0.99, sum by (le) (himari_l3_sizing_latency_seconds_bucket))"
    assert histogram_quantile_problems(bare)
    gauge = "histogram_quantile(0.5, rate(himari_l3_portfolio_utilization_ratio[5m]))"
    assert check_expression(gauge, known)
    good = ("histogram_quantile(0.99, sum by (le) "
            "(rate(himari_l3_decision_latency_seconds_bucket[5m])))")
    assert check_expression(good, known) == []


# --------------------------------------------------------------------------- promtool

def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = ("promtool not found on PATH (Debian package 'prometheus'); "
                   "cannot validate monitoring/prometheus/*.yml")
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.mark.parametrize(("command", "path"), [
    ("rules", ALERTS), ("config", PROMETHEUS_CONFIG)], ids=["rules", "config"])
def test_promtool_accepts(command: str, path: Path) -> None:
    """promtool check rules/config succeeds."""
    proc = subprocess.run([_promtool(), "check", command, str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_process_panel_queries_metrics_the_registry_exposes(known: set[str]) -> None:
    """The System Health dashboard's process panel reads RSS and CPU from the registry."""
    board = json.loads((DASHBOARDS / "system-health-circuit-breaker.json").read_text())
    exprs = [e for _, e in dashboard_expressions(board) if "process_" in e]
    assert exprs, "the process panel has no process_* query"
    for expr in exprs:
        assert check_expression(expr, known) == [], expr
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total",
            "python_gc_collections_total", "python_info"} <= known

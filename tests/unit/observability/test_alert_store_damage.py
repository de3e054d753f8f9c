"""promtool unit test of the HimariL3StoreDamage alert: a process that skipped a damaged
snapshot at start-up exposes the counter already at 1 (a new series), which a rule built on
increase() would never see; this one fires on the first scrape."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from unit.observability.test_monitoring_assets import ALERTS, _promtool

TESTS: dict[str, Any] = {
    "rule_files": [str(ALERTS)],
    "evaluation_interval": "1m",
    "tests": [{
        "interval": "1m",
        "input_series": [
            {"series": 'himari_l3_persistence_errors_total{job="himari_l3", instance="a", '
                       'operation="snapshot_decode"}', "values": "1 1 1"},
            {"series": 'himari_l3_persistence_errors_total{job="himari_l3", instance="b", '
                       'operation="snapshot_decode"}', "values": "0 0 0"},
            {"series": 'himari_l3_persistence_errors_total{job="himari_l3", instance="c", '
                       'operation="append"}', "values": "0 3 7"},
        ],
        "alert_rule_test": [{
            "eval_time": "1m", "alertname": "HimariL3StoreDamage",
            "exp_alerts": [{
                "exp_labels": {"severity": "warning", "team": "himari", "job": "himari_l3",
                               "instance": "a", "operation": "snapshot_decode"},
            }],
        }],
    }],
}


def _annotations() -> dict[str, str]:
    """The rule's annotations as promtool renders them for instance a."""
    rules = yaml.safe_load(ALERTS.read_text())
    rule = next(r for g in rules["groups"] for r in g["rules"]
                if r.get("alert") == "HimariL3StoreDamage")
    out = dict(rule["annotations"])
    out["summary"] = "Store damage seen (snapshot_decode) on a"
    return out


def test_store_damage_alert_fires_on_a_counter_born_at_one(tmp_path: Path) -> None:
    """The alert fires for instance a (counter 1 from its first sample), not for b (0) nor
    for other operations (c)."""
    TESTS["tests"][0]["alert_rule_test"][0]["exp_alerts"][0]["exp_annotations"] = (
        _annotations())
    spec = tmp_path / "store_damage_test.yml"
    spec.write_text(yaml.safe_dump(TESTS, sort_keys=False))
    proc = subprocess.run([_promtool(), "test", "rules", str(spec)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr

"""docs/metrics.md and the Layer3Metrics registry list the same families, named by convention."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from conftest import REPO
from himari_l3.observability.metrics import Layer3Metrics
from himari_l3.observability.prometheus import PrometheusObserver, default_observer

ROOT = REPO
DOC = ROOT / "docs" / "metrics.md"

# How a family is named in PromQL (and so in the doc's "Name (as exposed)" column).
_EXPOSED_SUFFIX = {"counter": "_total", "info": "_info"}
_WRITERS = ("Phase 1 sizing", "Phase 2 allocation", "Phase 3 hybrid", "circuit breaker",
            "book", "service", "persistence", "config", "observer start-up", "stream loop",
            "trading states", "paper executor")
_ROW = re.compile(r"^\|\s*`(?P<name>[a-zA-Z_:][\w:]*)`\s*\|(?P<rest>.*)\|\s*$")


def all_registry_families() -> dict[str, str]:
    """Exposed name -> type for every family of a fresh Layer3Metrics registry."""
    registry = CollectorRegistry()
    Layer3Metrics(registry)
    return {f.name + _EXPOSED_SUFFIX.get(f.type, ""): f.type for f in registry.collect()}


def registry_families() -> dict[str, str]:
    """The ``himari_l3_*`` catalogue (the runtime collectors are listed separately)."""
    return {k: v for k, v in all_registry_families().items() if k.startswith("himari_l3_")}


def documented_families() -> dict[str, list[str]]:
    """Exposed name -> remaining cells, from the table under '## Families' in the doc."""
    text = DOC.read_text()
    section = text.split("\n## Families", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        m = _ROW.match(line.strip())
        if m:
            name = m.group("name")
            assert name not in rows, f"{name} documented twice"
            rows[name] = [c.strip() for c in m.group("rest").split("|")]
    return rows


def metric_wrappers(metrics: Layer3Metrics) -> list[MetricWrapperBase]:
    return [v for v in vars(metrics).values() if isinstance(v, MetricWrapperBase)]


def test_every_family_is_documented_and_every_documented_family_exists() -> None:
    """The doc's table and the registry agree, name for name."""
    registered, documented = registry_families(), documented_families()
    missing = sorted(set(registered) - set(documented))
    extra = sorted(set(documented) - set(registered))
    assert not missing, f"families missing from docs/metrics.md: {missing}"
    assert not extra, f"docs/metrics.md documents families that do not exist: {extra}"


def test_documented_types_labels_and_writers_match() -> None:
    """Each row states the family's real type, names each of its labels and a code path."""
    documented = documented_families()
    metrics = Layer3Metrics(CollectorRegistry())
    for wrapper in metric_wrappers(metrics):
        kind = wrapper._type  # prometheus_client has no public accessor
        exposed = wrapper._name + _EXPOSED_SUFFIX.get(kind, "")
        doc_type, labels, unit, meaning, writer = documented[exposed][:5]
        assert doc_type == kind, f"{exposed}: documented as {doc_type}, registered as {kind}"
        for label in wrapper._labelnames:
            assert f"`{label}`" in labels, f"{exposed}: label {label!r} not documented"
        assert unit and meaning, exposed
        assert any(w in writer for w in _WRITERS), f"{exposed}: writer {writer!r}"


def test_names_follow_conventions() -> None:
    """All names start with himari_l3_; counters (and only counters) end in _total."""
    registry = CollectorRegistry()
    metrics = Layer3Metrics(registry)
    for name, kind in registry_families().items():
        assert name.startswith("himari_l3_"), name
        assert name.endswith("_total") == (kind == "counter"), (name, kind)
    counters = [w for w in metric_wrappers(metrics) if w._type == "counter"]
    for counter in counters:  # make every labelled counter expose a sample
        if counter._labelnames:
            counter.labels(*["x"] * len(counter._labelnames))
    samples = {s.name for f in registry.collect() for s in f.samples}
    assert all(c._name + "_total" in samples for c in counters)


def test_at_least_45_families() -> None:
    """The spec promises at least 45 families (the user's document counts them)."""
    assert len(registry_families()) >= 45


def test_separate_registries_do_not_collide() -> None:
    """Two Layer3Metrics on two registries register every family once each."""
    a, b = CollectorRegistry(), CollectorRegistry()
    Layer3Metrics(a)
    Layer3Metrics(b)
    names_a = [f.name for f in a.collect()]
    assert names_a == [f.name for f in b.collect()]
    assert len(names_a) == len(set(names_a))


def test_same_registry_twice_is_refused() -> None:
    """Registering the catalogue twice on one registry fails loudly (so default_observer
    must memoise)."""
    registry = CollectorRegistry()
    Layer3Metrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Layer3Metrics(registry)


def test_default_observer_is_created_once() -> None:
    """default_observer() returns one shared observer and never re-registers families."""
    first = default_observer()
    second = default_observer()
    assert first is second
    assert isinstance(first, PrometheusObserver)
    from himari_l3.phase1 import Layer3Phase1

    a = Layer3Phase1(enable_metrics=True)
    b = Layer3Phase1(enable_metrics=True)
    assert a.observer is b.observer is first


def test_runtime_collectors_are_registered_and_documented() -> None:
    """The registry also exposes prometheus_client's process / python families (the System
    Health dashboard's process panel reads them), and docs/metrics.md names each one."""
    runtime = {k for k in all_registry_families() if not k.startswith("himari_l3_")}
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total", "python_info",
            "python_gc_collections_total"} <= runtime
    section = DOC.read_text().split("\n## Process and runtime", 1)[1].split("\n## ", 1)[0]
    assert all(f"`{name}`" in section for name in runtime), sorted(runtime)


def test_runtime_collectors_are_not_registered_twice_on_the_global_registry() -> None:
    """Layer3Metrics on prometheus_client.REGISTRY (which has them from import) works."""
    observer = default_observer()
    assert observer.metrics.registry is not None

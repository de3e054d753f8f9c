"""Store on SQLite: durability pragmas, schema version check, seq bookkeeping, and the
cooperative snapshot encoder producing exactly ``json.dumps``'s text."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import text

from himari_l3.persistence import JournalEntry, Store
from himari_l3.runtime.jsonio import dumps, encode_cooperatively


def test_sqlite_runs_wal_with_full_sync(tmp_path: Path) -> None:
    """Every connection uses WAL and synchronous=FULL (a commit is fsynced)."""
    store = Store(f"sqlite:///{tmp_path / 's.sqlite'}")
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2
    store.close()


def test_schema_version_mismatch_is_refused(tmp_path: Path) -> None:
    """A store written by another schema version is not silently reused."""
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    Store(url).close()
    store = Store(url)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE meta SET value='99' WHERE key='schema_version'"))
    store.close()
    with pytest.raises(RuntimeError, match="schema_version"):
        Store(url)


def test_duplicate_seq_is_rejected_atomically(tmp_path: Path) -> None:
    """An append whose second row collides commits neither row (one transaction)."""
    store = Store(f"sqlite:///{tmp_path / 's.sqlite'}")
    row = {"seq": 1, "ts_ns": 1, "config_version": "v", "request": "{}", "response": None}
    store.append([JournalEntry("returns", row)])
    with pytest.raises(Exception, match="UNIQUE"):
        store.append([JournalEntry("returns", {**row, "seq": 2}),
                      JournalEntry("returns", row)])
    assert [e.seq for e in store.journal_after(0)] == [1]
    store.close()


def test_empty_store_has_no_snapshot(tmp_path: Path) -> None:
    """A new store: no snapshot, max_seq 0, empty journal."""
    store = Store(f"sqlite:///{tmp_path / 's.sqlite'}")
    assert store.latest_snapshot() is None and store.max_seq() == 0
    assert store.journal_after(0) == []
    with pytest.raises(ValueError, match="keep_snapshots"):
        Store(f"sqlite:///{tmp_path / 's.sqlite'}", keep_snapshots=0)
    store.close()


def test_cooperative_encoding_equals_json_dumps() -> None:
    """Chunked encoding of long lists and nested dicts gives json.dumps's exact text."""
    value = {"a": [[i, "s", i / 3, float("nan") if i == 7 else 0.5, i] for i in range(2500)],
             "b": {"x": list(range(1500)), "y": {"z": None, "w": True}}, "c": "é"}
    got = asyncio.run(encode_cooperatively(value))
    assert got == json.dumps(value, separators=(",", ":"))


def test_wire_json_has_no_nan() -> None:
    """Responses are strict JSON: non-finite numbers become null."""
    assert dumps({"x": float("nan"), "y": [float("inf"), 1.0]}) == '{"x":null,"y":[null,1.0]}'


@pytest.mark.parametrize(("level", "pragma"), [("full", 2), ("normal", 1)])
def test_sqlite_synchronous_level_is_applied(tmp_path: Path, level: str, pragma: int) -> None:
    """persistence.sqlite_synchronous sets SQLite's PRAGMA synchronous on every connection."""
    store = Store(f"sqlite:///{tmp_path / 'l3.sqlite'}", sqlite_synchronous=level)
    try:
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA synchronous")).scalar_one() == pragma
            assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
    finally:
        store.close()
    with pytest.raises(ValueError, match="sqlite_synchronous"):
        Store(f"sqlite:///{tmp_path / 'other.sqlite'}", sqlite_synchronous="off")


def test_service_passes_the_configured_durability_to_its_store(tmp_path: Path) -> None:
    """create_app builds its store with the configured persistence.sqlite_synchronous."""
    from prometheus_client import CollectorRegistry

    from himari_l3.config.schema import Layer3Config, parse_config
    from himari_l3.service import create_app

    cfg = parse_config(Layer3Config, {"persistence": {
        "url": f"sqlite:///{tmp_path / 'l3.sqlite'}", "sqlite_synchronous": "normal"}})
    app = create_app(cfg, registry=CollectorRegistry())
    store = app.state.service.store
    try:
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 1
    finally:
        store.close()

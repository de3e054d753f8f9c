"""Cost of recording the acknowledged seq outside the database (``<file>-ack``) per commit.

Three SQLite stores (``synchronous=FULL``) in a temporary directory, one returns row per
commit: the record posted to its writer thread (what the store does), written on the
committing thread (the alternative), and skipped. Rounds of ``--appends`` commits are
interleaved (``--rounds`` each); the medians of wall and process CPU time per commit on the
committing thread's clock are reported (``bench/results/ack_record.json``).

    .venv/bin/python bench/bench_ack_record.py [--rounds 6] [--appends 400]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from himari_l3.persistence import JournalEntry, Store

RESULTS = Path(__file__).resolve().parent / "results"


def _row(seq: int) -> JournalEntry:
    return JournalEntry("returns", {"seq": seq, "ts_ns": seq, "config_version": "v",
                                    "request": "{}", "response": None})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--appends", type=int, default=400)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=RESULTS.parent) as tmp:
        stores = {"posted": Store(f"sqlite:///{tmp}/a.sqlite"),
                  "inline": Store(f"sqlite:///{tmp}/b.sqlite"),
                  "skipped": Store(f"sqlite:///{tmp}/c.sqlite")}
        inline, skipped = stores["inline"].ack, stores["skipped"].ack
        assert inline is not None and skipped is not None
        inline.post = inline.write  # type: ignore[method-assign]
        skipped.post = lambda seq: None  # type: ignore[method-assign]
        seqs = dict.fromkeys(stores, 0)
        samples: dict[str, list[tuple[float, float]]] = {k: [] for k in stores}
        for _ in range(args.rounds):
            for name, store in stores.items():
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(args.appends):
                    seqs[name] += 1
                    store.append([_row(seqs[name])])
                if store.ack is not None and name == "posted":
                    store.ack.flush()  # its writes count in this round's time
                samples[name].append(((time.perf_counter() - wall) / args.appends * 1e3,
                                      (time.process_time() - cpu) / args.appends * 1e3))
        for store in stores.values():
            store.close()
    out = {name: {"wall_ms_per_commit": round(statistics.median(w for w, _ in v), 3),
                  "cpu_ms_per_commit": round(statistics.median(c for _, c in v), 3)}
           for name, v in samples.items()}
    print(json.dumps(out))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ack_record.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

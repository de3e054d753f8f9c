"""Backtest outputs: ``summary.json``, ``equity.csv``, PNG plots and one self-contained HTML.

``equity.csv`` columns: ``timestamp_ms, datetime`` (UTC ISO 8601), ``equity`` (after the
bar's costs), ``return`` (:math:`E_t/E_{t-1} - 1`, :math:`E_{-1}` = initial capital),
``position_usd`` (net signed USD held over the next bar, summed over symbols), ``exposure``
(gross USD / equity), ``turnover`` (traded USD / equity before costs), ``drawdown``; with more
than one symbol, one ``position_usd[SYMBOL]`` column per symbol follows. Floats are written
with ``repr`` precision so the file recomputes the summary exactly.

Plots are drawn on ``matplotlib.figure.Figure`` (Agg canvas), never through ``pyplot``, so
nothing global (backend, open figures) is touched.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .engine import Replay

__all__ = ["jsonable", "write_equity_csv", "write_html", "write_plots", "write_summary"]

PLOT_FILES = ("equity.png", "drawdown.png", "exposure.png")


def jsonable(value: Any) -> Any:
    """Plain JSON data: NaN/inf become ``None``, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    path.write_text(json.dumps(jsonable(summary), indent=2, allow_nan=False) + "\n",
                    encoding="utf-8")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_equity_csv(path: Path, rep: Replay) -> None:
    multi = len(rep.symbols) > 1
    header = ["timestamp_ms", "datetime", "equity", "return", "position_usd", "exposure",
              "turnover", "drawdown", "traded_usd", "fees_usd", "slippage_usd", "fills",
              "trading_state"]
    if multi:
        header += [f"position_usd[{s}]" for s in rep.symbols]
    rets, dd = rep.returns.tolist(), rep.drawdown.tolist()
    eq, expo, turn = rep.equity.tolist(), rep.exposure.tolist(), rep.turnover.tolist()
    pos = rep.positions.tolist()
    traded, fees, slip = rep.traded_usd.tolist(), rep.fees.tolist(), rep.slippage.tolist()
    fills, states = rep.fills.tolist(), rep.trading_state.tolist()
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for t, ms in enumerate(rep.timestamp_ms.tolist()):
            row = [str(ms), _iso(ms), repr(eq[t]), repr(rets[t]), repr(float(sum(pos[t]))),
                   repr(expo[t]), repr(turn[t]), repr(dd[t]), repr(traded[t]), repr(fees[t]),
                   repr(slip[t]), str(fills[t]), str(states[t])]
            if multi:
                row += [repr(x) for x in pos[t]]
            w.writerow(row)


def _dates(rep: Replay) -> np.ndarray[Any, np.dtype[np.datetime64]]:
    return rep.timestamp_ms.astype("datetime64[ms]")


def _figure(title: str, ylabel: str) -> tuple[Figure, Any]:
    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def write_plots(out_dir: Path, main: Replay, others: Sequence[Replay]) -> list[Path]:
    """equity.png (main policy and the ablation policies), drawdown.png, exposure.png."""
    paths = [out_dir / name for name in PLOT_FILES]
    x = _dates(main)
    fig, ax = _figure("Equity (USD)", "equity")
    ax.plot(x, main.equity, lw=1.6, label=f"{main.policy} (main)")
    for rep in others:
        if rep is not main:
            ax.plot(_dates(rep), rep.equity, lw=0.9, alpha=0.8, label=rep.policy)
    ax.axhline(main.initial_capital, color="grey", lw=0.7, ls="--")
    ax.legend(loc="best", fontsize=8)
    fig.savefig(paths[0])
    fig, ax = _figure(f"Drawdown — {main.policy}", "drawdown")
    ax.fill_between(x, main.drawdown * 100.0, 0.0, color="tab:red", alpha=0.4, lw=0)
    ax.set_ylabel("drawdown (%)")
    fig.savefig(paths[1])
    fig, ax = _figure(f"Gross exposure — {main.policy}", "exposure (% of equity)")
    ax.plot(x, main.exposure * 100.0, lw=0.8, color="tab:green")
    fig.savefig(paths[2])
    return paths


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return html.escape(str(v)) if v is not None else "n/a"


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_METRIC_COLUMNS = ("total_return", "annualized_return", "annualized_volatility", "sharpe",
                   "sortino", "max_drawdown", "calmar", "turnover_annualized",
                   "average_exposure", "hit_rate")

_CSS = ("body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "th{background:#f3f3f3}img{max-width:100%}")


def write_html(path: Path, summary: dict[str, Any], plots: Sequence[Path]) -> None:
    """One file: tables plus the PNGs embedded as base64 data URIs."""
    inputs, metrics = summary["inputs"], summary["metrics"]
    sig = summary.get("significance") or {}
    input_rows = [{"field": k, "value": ", ".join(map(str, v)) if isinstance(v, list) else v}
                  for k, v in inputs.items()]
    metric_rows = [{"metric": k, "value": metrics.get(k)} for k in
                   ("final_equity", *_METRIC_COLUMNS, "turnover_total", "n_periods")]
    ablation = [dict(r, **r.get("metrics", {})) for r in summary.get("ablation", [])]
    ablation_cols = ("policy", "status", *_METRIC_COLUMNS, "bars_per_sec", "reason")
    imgs = "".join(
        f'<h3>{html.escape(p.stem)}</h3><img alt="{html.escape(p.stem)}" '
        f'src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        for p in plots)
    sig_html = "<p>not run</p>"
    if sig:
        sig_html = (_table([sig], ("n_shuffles", "seed", "actual_sharpe",
                                   "mean_shuffled_sharpe", "std_shuffled_sharpe",
                                   "p_value")) +
                    "<p>p = (1 + #shuffled Sharpe &ge; actual) / (N + 1): the share of "
                    "signal-timing permutations that did at least as well. With N shuffles "
                    "the smallest possible p is 1/(N+1).</p>")
    doc = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>HIMARI L3 backtest — {html.escape(str(summary['policy']))}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>HIMARI Layer 3 backtest — {html.escape(str(summary['policy']))}</h1>"
        f"<h2>Inputs</h2>{_table(input_rows, ('field', 'value'))}"
        f"<h2>Metrics</h2>{_table(metric_rows, ('metric', 'value'))}"
        f"<h2>Ablation: sizing policies on the same signals</h2>"
        f"{_table(ablation, ablation_cols)}"
        f"<h2>Significance (shuffled-signal replays)</h2>{sig_html}"
        f"<h2>Plots</h2>{imgs}"
        "<p>Metric definitions: docs/backtest.md.</p></body></html>\n")
    path.write_text(doc, encoding="utf-8")

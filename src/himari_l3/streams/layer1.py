r"""Layer 1's prices and stress readings as `CascadeIndicators` (pure; docs/integration.md).

Layer 1 keeps one hash per symbol (``streams.cascade_key``, default ``l1:cascade:{symbol}``)
with ``funding_rate``, ``oi_change_pct``, ``volume_ratio``, ``onchain_whale_pressure``,
``exchange_netflow_zscore``, optional ``liquidation_volume_24h``, and ``timestamp`` (ms), in
Layer 1's own scales:

* ``onchain_whale_pressure`` :math:`s \in [-1, 1]`, +1 = whales buying. It becomes the
  readings' ``whale_flow``: risk only against a trade's direction (docs/sizing-math.md §6);
* ``exchange_netflow_zscore`` :math:`x \in [-1, 1]`, the z-score compressed by Layer 1.
  It is rescaled to a z-score before scoring (`netflow_zscore`): with
  ``streams.netflow_compression: clip`` (Layer 1 wrote :math:`x = \mathrm{clip}(z/s, -1, 1)`)
  :math:`z = s\,x`; with ``tanh`` (:math:`x = \tanh(z/s)`) :math:`z = s\,\mathrm{atanh}(x)`,
  :math:`|x|` capped at :math:`1 - 10^{-12}` and :math:`z` at the contract's ±50. The scale
  :math:`s` is ``streams.netflow_scale`` (default 3, Layer 1's). A saturated reading
  (:math:`|x| = 1` under clip) reads :math:`z = \pm s`, which saturates the netflow
  component at its default threshold (3σ) — the compression loses nothing the score uses.

A reading older than ``streams.l1_max_age_ms``, absent or invalid, counts as missing, and a
missing reading follows ``streams.l1_missing_policy`` (`resolve_readings`): ``neutral``
(calm readings, score 0) or ``stressed`` (every component at its threshold: score 1, which
is an EXIT under the default bands). What happened is recorded per symbol (a `ReasonCode`),
and the consumer puts it in the decision's trace (``inputs``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._exceptions import ValidationError
from ..config.schema import CascadeConfig, StreamsConfig
from ..contracts import CascadeIndicators
from ..trace import ReasonCode
from .wire import MessageRejected, RejectCode, integer, number

__all__ = [
    "Layer1Note",
    "netflow_zscore",
    "parse_price",
    "parse_readings",
    "resolve_readings",
    "stressed_readings",
]

_MS = 1_000_000
_Z_MAX = 50.0  # the contract's bound on exchange_netflow_zscore
_EDGE = 1.0 - 1e-12


@dataclass(frozen=True, slots=True)
class Layer1Note:
    """Why a symbol's readings (or price) are not Layer 1's: the reason, the policy applied
    and the reading's age (ms; None when there was none)."""

    code: ReasonCode
    policy: str
    age_ms: int | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code.value, "policy": self.policy, "age_ms": self.age_ms,
                "detail": self.detail}


def netflow_zscore(x: float, compression: str, scale: float) -> float:
    """The z-score behind Layer 1's compressed netflow ``x`` (see the module docstring)."""
    z = scale * math.atanh(max(-_EDGE, min(_EDGE, x))) if compression == "tanh" else scale * x
    return max(-_Z_MAX, min(_Z_MAX, z))


def parse_readings(fields: Mapping[str, Any], config: StreamsConfig) -> tuple[
        CascadeIndicators, int]:
    """One symbol's hash as (readings, timestamp in ms); `MessageRejected` if invalid."""
    ts = integer(fields, "timestamp", 0, (2**63 - 1) // _MS, required=True)
    flow = _required(fields, "onchain_whale_pressure", -1.0, 1.0)
    x = _required(fields, "exchange_netflow_zscore", -1.0, 1.0)
    # The contract checks the ranges of the other three and names the field.
    funding, oi, volume = (_required(fields, k, -1e13, 1e13)
                           for k in ("funding_rate", "oi_change_pct", "volume_ratio"))
    liq = number(fields, "liquidation_volume_24h", 0.0, 1e13)
    assert ts is not None
    z = netflow_zscore(x, config.netflow_compression, config.netflow_scale)
    try:
        ind = CascadeIndicators.from_whale_flow(funding, oi, volume, flow, z, liq)
    except ValidationError as err:
        raise MessageRejected(RejectCode.MALFORMED, err.field, err.value, err.expected) from None
    return ind, ts


def _required(fields: Mapping[str, Any], name: str, lo: float, hi: float) -> float:
    value = number(fields, name, lo, hi, required=True)
    assert value is not None  # required=True raises instead
    return value


def stressed_readings(cascade: CascadeConfig) -> CascadeIndicators:
    """Readings with every component at its threshold (score 1 under any weights)."""
    t = cascade.thresholds
    return CascadeIndicators(t.funding_rate, -t.oi_drop, t.volume_ratio, t.whale_pressure,
                             t.netflow_zscore)


_NEUTRAL = CascadeIndicators(0.0, 0.0, 1.0, 0.0, 0.0)


def resolve_readings(symbols: Sequence[str], raw: Mapping[str, Mapping[str, Any] | None],
                     now_ns: int, config: StreamsConfig, cascade: CascadeConfig) -> tuple[
        dict[str, CascadeIndicators], dict[str, Layer1Note]]:
    """Readings for each symbol (keyed as in ``raw``: Layer 1's symbols): Layer 1's when
    present, valid and fresh; else the policy's, with a note saying why."""
    out: dict[str, CascadeIndicators] = {}
    notes: dict[str, Layer1Note] = {}
    policy = config.l1_missing_policy
    fallback = _NEUTRAL if policy == "neutral" else stressed_readings(cascade)
    for sym in symbols:
        fields = raw.get(sym)
        if not fields:
            out[sym], notes[sym] = fallback, Layer1Note(ReasonCode.LAYER1_MISSING, policy)
            continue
        try:
            ind, ts_ms = parse_readings(fields, config)
        except MessageRejected as err:
            out[sym] = fallback
            notes[sym] = Layer1Note(ReasonCode.LAYER1_INVALID, policy, None, str(err))
            continue
        age_ms = (now_ns - ts_ms * _MS) // _MS
        if age_ms > config.l1_max_age_ms:
            out[sym] = fallback
            notes[sym] = Layer1Note(ReasonCode.LAYER1_STALE, policy, int(age_ms),
                                    f"older than streams.l1_max_age_ms "
                                    f"({config.l1_max_age_ms} ms)")
            continue
        out[sym] = ind
    return out, notes


def parse_price(raw: object) -> float | None:
    """A price from Layer 1's prices hash: a finite number > 0, else None."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("ascii")
        except UnicodeDecodeError:
            return None
    if raw is None or isinstance(raw, bool):
        return None
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None

r"""How much of a new batch fits beside commitments: the arithmetic of whole-book limits.

A limit that holds over a whole book sees two kinds of exposure: **commitments** (standing
targets the batch does not touch, held as they are) and the **batch** (scaled by one factor
:math:`f \in [0, 1]`). Each function here returns the largest :math:`f` for which the limit
holds, given that the commitments alone fit (the caller scales them first when they do not).

* a signed sum (one symbol's net, or the portfolio's net):
  :math:`|c + f\,b| \le \text{cap}` is linear in :math:`f`:
  :math:`f^* = (\text{cap} - c\,\operatorname{sgn} b) / |b|`, clipped to [0, 1];
* a gross of nets: :math:`g(f) = \sum_s |c_s + f\,b_s|` is convex and piecewise linear in
  :math:`f` (kinks where a symbol's net crosses zero, :math:`f = -c_s/b_s`); with
  :math:`g(0) \le \text{cap}` the feasible set is an interval :math:`[0, f^*]`, found exactly
  by walking the kinks in order and interpolating on the segment where :math:`g` crosses
  the cap.

Room smaller than ``CRUMB`` x cap is no room: scaling commitments by a factor a few ulps
below 1 (so that a total never lands a hair above its cap) must not leave a batch a
1e-8 USD position.

Pure functions over floats (no state, no I/O); ``constraints.py`` applies them.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["CRUMB", "gross_room", "linear_room"]

CRUMB = 1e-9


def linear_room(committed: float, batch: float, cap: float) -> float:
    """Largest ``f`` in [0, 1] with ``|committed + f * batch| <= cap``.

    Assumes ``|committed| <= cap`` (so ``f = 0`` is feasible)."""
    if batch == 0.0:
        return 1.0
    room = (cap - committed) / batch if batch > 0.0 else (cap + committed) / -batch
    if room * abs(batch) <= CRUMB * cap:
        return 0.0
    return min(1.0, max(0.0, room))


def gross_room(committed: Sequence[float], batch: Sequence[float], cap: float) -> float:
    """Largest ``f`` in [0, 1] with ``sum(|c + f * b|) <= cap`` over paired entries.

    Assumes ``sum(|c|) <= cap`` (so ``f = 0`` is feasible)."""
    pairs = list(zip(committed, batch, strict=True))
    if sum((abs(c + b) for c, b in pairs), 0.0) <= cap:
        return 1.0
    kinks = sorted({-c / b for c, b in pairs if b != 0.0 and 0.0 < -c / b < 1.0})
    prev_f, prev_g = 0.0, sum((abs(c) for c, _ in pairs), 0.0)
    for f in (*kinks, 1.0):
        g = sum((abs(c + f * b) for c, b in pairs), 0.0)
        if g > cap:  # g(prev_f) <= cap < g(f): g is linear in between
            room = min(1.0, max(0.0, prev_f + (cap - prev_g) / (g - prev_g) * (f - prev_f)))
            return 0.0 if room * sum((abs(b) for b in batch), 0.0) <= CRUMB * cap else room
        prev_f, prev_g = f, g
    return 1.0

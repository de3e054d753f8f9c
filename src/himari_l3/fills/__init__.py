"""The fill model (core, no I/O): how simulated orders fill — fees, slippage and impact,
latency, partial fills — shared by the paper executor and the backtest."""

from .model import FillModel
from .records import OrderSide, Quote, SimFill, SimOrder, TimeInForce
from .simulator import FillSimulator, Worked, side_of

__all__ = [
    "FillModel",
    "FillSimulator",
    "OrderSide",
    "Quote",
    "SimFill",
    "SimOrder",
    "TimeInForce",
    "Worked",
    "side_of",
]

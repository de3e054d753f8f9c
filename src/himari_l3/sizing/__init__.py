"""Phase 1's stages and the math behind them (Kelly, conformal, sentiment, regime, cascade,
limits); `stages.py` and `limits.py` adapt the math to the one stage contract."""

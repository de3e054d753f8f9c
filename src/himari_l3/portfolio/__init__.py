"""Phase 2 building blocks: correlation monitor, correlation adjustment, budgets, drift."""

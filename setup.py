"""Build script: pure Python by default; the strictly typed sizing core compiled with mypyc
when ``HIMARI_L3_COMPILE=1`` (see docs/performance.md, "Compiled build").

The compiled build is all or nothing: if mypyc is missing or the C compiler fails, the
wheel is built pure (a warning says why) rather than with some modules compiled. An
editable install is always pure (``build_backend/himari_build.py``): a compiled module in
``src/`` would shadow later edits of its ``.py`` file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

# The modules that run per decision: typed strictly, no dynamic tricks. Their decisions are
# pinned bit for bit by tests/golden, and tests/integration/build/test_compiled_build.py
# runs the unit, property and golden tests against a compiled build.
COMPILED_MODULES = (
    "trace", "_validate", "batch",
    "sizing/stages", "sizing/limits", "sizing/kelly", "sizing/kelly_forms",
    "sizing/cascade", "sizing/regime", "sizing/conformal", "sizing/sentiment",
    "sizing/retention",
    "phase1",
    "portfolio/budgets", "portfolio/constraints", "portfolio/headroom", "portfolio/drift",
    "phase2",
    "book/book", "book/exposure", "book/portfolio", "book/positions", "book/rebalance",
    "book/fills", "book/views", "book/markets",
    "trading/gate", "trading/machine",
    # The replay's loop (a backtest runs the decision path once per bar): the correlation
    # monitor fed each bar, the execution desk and the paper executor it drives, the
    # replay, its policies and its execution glue.
    "portfolio/correlation", "book/desk", "book/settings", "executors/paper",
    "fills/simulator", "backtest/engine", "backtest/execution", "backtest/policies",
)


def _warn(message: str) -> None:
    print(f"himari-l3 build: {message}; building pure Python", file=sys.stderr)


class AllOrNothingBuildExt(build_ext):  # type: ignore[misc]  # setuptools ships no stubs here
    """Compile every extension or none: on a compiler error remove what was built."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as err:  # the compiler's error types differ per platform
            for path in self.get_outputs():
                Path(path).unlink(missing_ok=True)
            self.extensions: list[Any] = []
            _warn(f"the C compiler failed ({type(err).__name__}: {err})")


def ext_modules() -> list[Any]:
    if os.environ.get("HIMARI_L3_COMPILE") != "1":
        return []
    if set(sys.argv[1:2]) <= {"egg_info", "dist_info"}:
        return []  # metadata only (pip asks before it installs mypy): nothing to compile
    try:
        from mypyc.build import mypycify  # noqa: PLC0415 (optional: only a compiled build)
    except ImportError as err:
        _warn(f"mypyc is not installed ({err})")
        return []
    paths = [f"src/himari_l3/{m}.py" for m in COMPILED_MODULES]
    try:
        return list(mypycify(["--config-file", "pyproject.toml", *paths], opt_level="3"))
    except (Exception, SystemExit) as err:  # mypyc reports type errors via SystemExit
        _warn(f"mypyc failed ({type(err).__name__}: {err})")
        return []


setup(ext_modules=ext_modules(), cmdclass={"build_ext": AllOrNothingBuildExt})

"""The compiled build (``HIMARI_L3_COMPILE=1``, setup.py): every listed module compiles with
mypyc, the unit, property and golden tests pass against it (so pure and compiled give the
same decisions, bit for bit: tests/golden pins their digests), and without a working C
compiler the build falls back to pure Python instead of failing or compiling half."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
BUILD_FILES = ("setup.py", "pyproject.toml", "README.md", "build_backend")


def compiled_modules() -> tuple[str, ...]:
    """setup.py's COMPILED_MODULES, read without running setup.py."""
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "COMPILED_MODULES" for t in node.targets):
            value = ast.literal_eval(node.value)
            assert isinstance(value, tuple)
            return tuple(str(v) for v in value)
    raise AssertionError("setup.py has no COMPILED_MODULES")


def copy_project(into: Path) -> Path:
    """The sources and build files (no caches, no built modules) under ``into``."""
    shutil.copytree(REPO / "src", into / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info"))
    for name in BUILD_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, into / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, into / name)
    return into


def build(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``setup.py build_ext --inplace`` with the compiled build asked for."""
    return subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=project,
        env={**os.environ, "HIMARI_L3_COMPILE": "1", **env}, capture_output=True, text=True,
        timeout=900, check=False)


def built_modules(project: Path) -> list[str]:
    pkg = project / "src" / "himari_l3"
    return sorted(str(p.relative_to(pkg)).split(".")[0] for p in pkg.rglob("*.so"))


@pytest.fixture(scope="module")
def toolchain() -> None:
    """Skip (saying why) where there is no C compiler or no mypyc to compile with."""
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler (cc) on this machine: the compiled build cannot be tried")
    try:
        import mypyc  # noqa: F401
    except ImportError:
        pytest.skip("mypyc (part of mypy, a dev dependency) is not installed")


def test_compiled_build_gives_the_same_decisions(toolchain: None, tmp_path: Path) -> None:
    """Every listed module compiles, and the unit, property and golden tests pass on it."""
    project = copy_project(tmp_path)
    result = build(project)
    assert result.returncode == 0, result.stderr[-4000:]
    assert built_modules(project) == sorted(compiled_modules()), result.stderr[-4000:]
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    where = subprocess.run(
        [sys.executable, "-c", "import himari_l3.phase1 as m, himari_l3.phase2 as n; "
                               "print(m.__file__); print(n.__file__)"],
        env=env, capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert all(path.endswith(".so") and path.startswith(str(project)) for path in where), where
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
         "tests/unit", "tests/property", "tests/golden"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert tests.returncode == 0, tests.stdout[-6000:]
    assert " passed" in tests.stdout.splitlines()[-1]


def test_no_working_compiler_builds_pure(toolchain: None, tmp_path: Path) -> None:
    """A C compiler that fails leaves no compiled module behind and says why."""
    project = copy_project(tmp_path)
    result = build(project, CC="false")
    assert result.returncode == 0, result.stderr[-4000:]
    assert built_modules(project) == []
    assert "the C compiler failed" in result.stderr
    assert "building pure Python" in result.stderr

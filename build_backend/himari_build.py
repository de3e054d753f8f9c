"""In-tree build backend: setuptools, plus mypy (for mypyc) and the package's own runtime
dependencies (mypyc type-checks the core against numpy's and pydantic's types) among the
build requirements when a compiled build is asked for (``HIMARI_L3_COMPILE=1``), so that
``HIMARI_L3_COMPILE=1 pip install .`` works in pip's isolated build environment. Editable
installs are always pure (a compiled module in ``src/`` would shadow later edits)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # noqa: F401  (the PEP 517/660 hooks we pass through)
    build_sdist,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

MYPYC_REQUIREMENT = "mypy>=1.10"


def _compile() -> bool:
    return os.environ.get("HIMARI_L3_COMPILE") == "1"


def _compile_requires() -> list[str]:
    project = tomllib.loads(Path("pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [MYPYC_REQUIREMENT, *project["dependencies"]]


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    requires = list(_setuptools.get_requires_for_build_wheel(config_settings))
    return [*requires, *_compile_requires()] if _compile() else requires


def build_wheel(wheel_directory: str, config_settings: dict[str, Any] | None = None,
                metadata_directory: str | None = None) -> str:
    return str(_setuptools.build_wheel(wheel_directory, config_settings, metadata_directory))


def get_requires_for_build_editable(
        config_settings: dict[str, Any] | None = None) -> list[str]:
    return list(_setuptools.get_requires_for_build_editable(config_settings))


def build_editable(wheel_directory: str, config_settings: dict[str, Any] | None = None,
                   metadata_directory: str | None = None) -> str:
    os.environ.pop("HIMARI_L3_COMPILE", None)
    return str(_setuptools.build_editable(wheel_directory, config_settings,
                                          metadata_directory))

"""Typed configuration tree and its loader."""

from .schema import SizingConfig

__all__ = ["SizingConfig"]

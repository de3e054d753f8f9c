"""The package version (one place; ``himari_l3.__version__`` re-exports it)."""

__version__ = "0.1.0"

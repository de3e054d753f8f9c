"""Executors behind the executor port (``executor_port.py``): the paper executor today;
Layer 4 over Redis is another."""

from .paper import PaperExecutor

__all__ = ["PaperExecutor"]

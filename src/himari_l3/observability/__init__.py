"""Adapters that observe decisions: Prometheus metrics."""

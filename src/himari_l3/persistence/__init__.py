"""Durable storage of decisions, outcomes and learned state (SQLite or PostgreSQL)."""

from .store import JournalEntry, Snapshot, Store

__all__ = ["JournalEntry", "Snapshot", "Store"]

"""Persistent storage of accepted records (not part of the pure core)."""

from repp2p.store.abc import RecordStoreAPI
from repp2p.store.sqlite import SqliteRecordStore

__all__ = ["RecordStoreAPI", "SqliteRecordStore"]

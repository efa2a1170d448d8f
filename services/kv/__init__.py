"""Workers KV data: the store port, its Redis and SQLite adapters, the data-service routes."""

from services.kv.port import KvEntry, KvKey, KvPage, KvStore

__all__ = ["KvEntry", "KvKey", "KvPage", "KvStore"]

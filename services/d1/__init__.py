"""The D1 owner service: one SQLite file per database, each owned by one replica
through a fenced lease (docs/d1.md)."""

from services.d1.service import D1Service

__all__ = ["D1Service"]

"""The data service: tenant data (KV values, R2 objects) behind the binding entrypoints."""

from services.data.resources import ResourceIndex
from services.data.service import DataService

__all__ = ["DataService", "ResourceIndex"]

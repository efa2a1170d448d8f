"""What one tail subscriber wants to see, applied on the server (never shipped to clients)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from services.tail.events import TailEvent

STATUSES = ("ok", "error")
MAX_SEARCH = 256


class InvalidFilter(ValueError):
    pass


@dataclass(frozen=True)
class TailFilter:
    status: str | None = None  # "ok" | "error"
    search: str | None = None  # case-insensitive substring of url, console lines, exceptions
    sample: float = 1.0  # keep each matching event with this probability

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise InvalidFilter(f"status must be one of {', '.join(STATUSES)}")
        if self.search is not None and not 0 < len(self.search) <= MAX_SEARCH:
            raise InvalidFilter(f"search must be 1 to {MAX_SEARCH} characters")
        if not 0 < self.sample <= 1:
            raise InvalidFilter("sample must be a rate with 0 < rate <= 1")

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> TailFilter:
        raw = query.get("sample")
        try:
            sample = float(raw) if raw else 1.0
        except ValueError:
            raise InvalidFilter("sample must be a number") from None
        return cls(status=query.get("status") or None, search=query.get("search") or None,
                   sample=sample)

    def to_query(self) -> dict[str, str]:
        out = {"sample": repr(self.sample)} if self.sample != 1 else {}
        if self.status:
            out["status"] = self.status
        if self.search:
            out["search"] = self.search
        return out

    def matches(self, event: TailEvent, rng: random.Random) -> bool:
        if self.status is not None and event.is_error != (self.status == "error"):
            return False
        if self.search is not None and self.search.lower() not in event.haystack:
            return False
        return self.sample >= 1 or rng.random() < self.sample

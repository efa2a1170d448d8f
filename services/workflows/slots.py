"""Invocation slots of the engine, shared fairly between namespaces.

The one place the engine's scheduling policy plugs in: `Engine` asks
`async with slots.slot(namespace)` around each invocation and nothing else.
The platform's `services.fairshare.FairShare` is the implementation: a
namespace holds at most its `workflow_slots` share, and a freed slot goes to
the next namespace waiting (round-robin), so one namespace's surplus work never
stands in the shared queue ahead of another namespace's.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol


class SlotShare(Protocol):
    def slot(self, namespace: str) -> AbstractAsyncContextManager[Any]: ...

    def held(self, namespace: str) -> int: ...

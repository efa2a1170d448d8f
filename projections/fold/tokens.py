"""API tokens: issued records and the sha256 -> token index."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from eventlog import events as ev
from eventlog.aggregates import AggregateKind
from eventlog.envelope import Envelope
from projections import keys
from projections.changes import Changes
from projections.fold.core import FoldCore, Reject
from projections.fold.encoding import dumps


@dataclass(slots=True)
class TokenState:
    version: int = 0
    exists: bool = False
    sha256: str = ""
    revoked: bool = False
    record: dict[str, Any] = field(default_factory=dict)


class TokenRules(FoldCore):
    """Folds token events."""

    HANDLERS: ClassVar[Mapping[type[Any], str]] = {
        ev.TokenIssued: "_token_issued",
        ev.TokenRevoked: "_token_revoked",
    }
    VERSIONS: ClassVar[Mapping[str, str]] = {AggregateKind.TOKEN: "_token_version"}

    def __init__(self, partition: int) -> None:
        super().__init__(partition)
        self.tokens: dict[str, TokenState] = {}

    def _token_version(self, aggregate_id: str) -> int:
        state = self.tokens.get(aggregate_id)
        return 0 if state is None else state.version

    def _token_issued(self, e: ev.TokenIssued, env: Envelope, out: Changes) -> int:
        t = self.tokens.setdefault(e.token_id, TokenState())
        if t.exists:
            raise Reject("token_exists", f"token {e.token_id} already exists")
        t.exists = True
        t.sha256 = e.token_sha256.hex()
        t.version += 1
        t.record = {
            "sha256": t.sha256, "role": e.role, "namespaces": list(e.namespaces),
            "label": e.label, "expires_at": e.expires_at, "revoked_at": None,
            "issued_at": env.occurred_at, "issued_by": env.actor,
        }
        out.set(keys.TOKENS, e.token_id, dumps(t.record))
        out.set(keys.TOKEN_HASHES, t.sha256, e.token_id)
        return t.version

    def _token_revoked(self, e: ev.TokenRevoked, env: Envelope, out: Changes) -> int:
        t = self.tokens.get(e.token_id)
        if t is None or not t.exists:
            raise Reject("token_missing", f"token {e.token_id} does not exist")
        if t.revoked:
            raise Reject("token_revoked", f"token {e.token_id} is already revoked")
        t.revoked = True
        t.version += 1
        out.delete(keys.TOKEN_HASHES, t.sha256)
        # The record stays, marked revoked, so listings show what was revoked when.
        t.record["revoked_at"] = env.occurred_at
        out.set(keys.TOKENS, e.token_id, dumps(t.record))
        return t.version

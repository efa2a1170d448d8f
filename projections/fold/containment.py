"""Containment: the watchdog's strikes against namespaces and the holds they lead to.

A strike counts against the namespace, whatever version ran: a tenant that
deploys a fresh version before every spin collects them all the same. Strikes
older than the event's `window_s` (judged by occurred_at, never the wall
clock) are forgotten; `hold_after` strikes within it hold the namespace back.
A hold is rendered in the namespace record (the state service, which caches
it per namespace, refuses the namespace's requests with 503) and in the
`quarantine` hash under the bare namespace; only `namespace.quarantine_lifted`
ends it, and the strikes start over.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from eventlog import events as ev
from eventlog.envelope import Envelope
from projections import keys
from projections.changes import Changes
from projections.fold.core import Reject
from projections.fold.encoding import dumps
from projections.fold.namespaces import NamespaceRules, NamespaceState


class ContainmentRules(NamespaceRules):
    HANDLERS: ClassVar[Mapping[type[Any], str]] = {
        ev.NamespaceStruck: "_struck",
        ev.NamespaceQuarantineLifted: "_hold_lifted",
    }

    def _struck(self, e: ev.NamespaceStruck, env: Envelope, out: Changes) -> int:
        state = self._namespace(e.namespace)
        since = env.occurred_at - e.window_s * 1000
        state.strikes = [at for at in state.strikes if at > since] + [env.occurred_at]
        last = {"worker": e.worker, "version_id": e.version_id, "reason": e.reason,
                "precise": e.precise, "instance": e.instance, "detail": e.detail,
                "at": env.occurred_at}
        if state.held is None and len(state.strikes) >= e.hold_after:
            state.held = {"namespace": e.namespace, "worker": None, "version_id": None,
                          "scope": "namespace", "reason": e.reason,
                          "strikes": len(state.strikes), "detail": e.detail[:2000],
                          "at": env.occurred_at, "by": env.actor, "last": last}
            out.set(keys.QUARANTINE, e.namespace, dumps(state.held))
        state.version += 1
        self._render_strikes(e.namespace, state, e.window_s, e.hold_after, last, out)
        self._render_namespace(e.namespace, state, out)
        return state.version

    def _hold_lifted(self, e: ev.NamespaceQuarantineLifted, env: Envelope,
                     out: Changes) -> int:
        state = self._namespace(e.namespace)
        if state.held is None:
            raise Reject("not_quarantined", f"namespace {e.namespace!r} is not held back")
        state.held = None
        state.strikes = []
        state.version += 1
        out.delete(keys.QUARANTINE, e.namespace)
        out.delete(keys.STRIKES, e.namespace)
        self._render_namespace(e.namespace, state, out)
        return state.version

    @staticmethod
    def _render_strikes(name: str, s: NamespaceState, window_s: int, hold_after: int,
                        last: dict[str, Any], out: Changes) -> None:
        out.set(keys.STRIKES, name, dumps({
            "namespace": name, "strikes": s.strikes, "window_s": window_s,
            "hold_after": hold_after, "held": s.held is not None, "last": last}))

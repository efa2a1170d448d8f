"""Namespace policies: the egress policy and service grants, kept in the namespace record.

They are namespace-aggregate events: the namespace version moves with them,
and the gateway, which caches per namespace, sees them with the namespace's
next invalidation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from eventlog import events as ev
from eventlog.envelope import Envelope
from projections.changes import Changes
from projections.fold.core import Reject
from projections.fold.namespaces import NamespaceRules


class PolicyRules(NamespaceRules):
    HANDLERS: ClassVar[Mapping[type[Any], str]] = {
        ev.EgressPolicySet: "_egress_set",
        ev.ServiceGranted: "_service_granted",
        ev.ServiceRevoked: "_service_revoked",
        ev.NamespaceLimitsSet: "_limits_set",
    }

    def _limits_set(self, e: ev.NamespaceLimitsSet, env: Envelope, out: Changes) -> int:
        state = self._namespace(e.namespace)
        limits = {"wall_ms": e.wall_ms, "subrequests": e.subrequests}
        # Shares appear in the record only when set, so records of old events stay as they were.
        limits.update({k: getattr(e, k) for k in ev.SHARE_FIELDS if getattr(e, k)})
        state.limits = limits if any(limits.values()) else None
        state.version += 1
        self._render_namespace(e.namespace, state, out)
        return state.version

    def _egress_set(self, e: ev.EgressPolicySet, env: Envelope, out: Changes) -> int:
        state = self._namespace(e.namespace)
        state.egress = {"mode": e.mode,
                        "allow": [{"host": r.host, "ports": list(r.ports)} for r in e.allow]}
        state.version += 1
        self._render_namespace(e.namespace, state, out)
        return state.version

    def _service_granted(self, e: ev.ServiceGranted, env: Envelope, out: Changes) -> int:
        state = self._namespace(e.namespace)
        grant = {"namespace": e.grantee, "worker": e.worker}
        if grant in state.grants:
            raise Reject("grant_exists", f"{e.grantee} may already call "
                                         f"{e.namespace}/{e.worker}")
        state.grants = sorted([*state.grants, grant],
                              key=lambda g: (g["namespace"], g["worker"]))
        state.version += 1
        self._render_namespace(e.namespace, state, out)
        return state.version

    def _service_revoked(self, e: ev.ServiceRevoked, env: Envelope, out: Changes) -> int:
        state = self._namespace(e.namespace)
        if e.worker == ev.ALL_GRANTS:
            # Every grant to the grantee, in one event: nothing of it is left behind.
            if not any(g["namespace"] == e.grantee for g in state.grants):
                raise Reject("grant_missing", f"{e.grantee} has no grant for any worker of "
                                              f"{e.namespace}")
            state.grants = [g for g in state.grants if g["namespace"] != e.grantee]
        else:
            grant = {"namespace": e.grantee, "worker": e.worker}
            if grant not in state.grants:
                raise Reject("grant_missing", f"{e.grantee} has no grant for "
                                              f"{e.namespace}/{e.worker}")
            state.grants = [g for g in state.grants if g != grant]
        state.version += 1
        self._render_namespace(e.namespace, state, out)
        return state.version

"""Hyperdrive configs (aggregate kind `hyperdrive`, docs/hyperdrive.md).

A config's aggregate id is `namespace/name` (names are unique per namespace), but
wrangler binds it by its platform-made `config_id`: the namespace's resource set
(what versions' bindings are checked against) and `res:hyperdrive:{ns}` are keyed
by the id. `hyperdrive` (config id -> record with the namespace) is what the
pooler service reads to render PgBouncer's configuration. Records carry the sealed
origin and pooler password as the log does: ciphertext only, opened by the pooler
(origin) and the state service's bundle (password) alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec

from eventlog import events as ev
from eventlog.aggregates import AggregateKind
from eventlog.envelope import Envelope
from projections import keys
from projections.changes import Changes
from projections.fold.core import Reject
from projections.fold.encoding import dumps
from projections.fold.resources import ResourceRules, ResourceState

KIND = str(AggregateKind.HYPERDRIVE)


@dataclass(slots=True)
class HyperdriveState:
    config_id: str
    record: dict[str, Any]


class HyperdriveRules(ResourceRules):
    HANDLERS: ClassVar[Mapping[type[Any], str]] = {
        ev.HyperdriveCreated: "_hd_created",
        ev.HyperdriveUpdated: "_hd_updated",
        ev.HyperdriveDeleted: "_hd_deleted",
    }
    VERSIONS: ClassVar[Mapping[str, str]] = {AggregateKind.HYPERDRIVE: "_hd_version"}

    def __init__(self, partition: int) -> None:
        super().__init__(partition)
        self.hyperdrive: dict[tuple[str, str], HyperdriveState] = {}

    def _hd_version(self, aggregate_id: str) -> int:
        return self._resource_version(KIND, aggregate_id)

    def _hd_render(self, e: ev.HyperdriveCreated | ev.HyperdriveUpdated,
                   state: ResourceState, hd: HyperdriveState, out: Changes) -> None:
        hd.record.update({
            "namespace": e.namespace, "name": e.name, "config_id": e.config_id,
            "origin_host": e.origin_host, "origin_port": e.origin_port,
            "origin_database": e.origin_database, "pool_size": e.pool_size,
            "sealed_origin": msgspec.to_builtins(e.sealed_origin),
            "created_at": state.created_at, "created_by": state.created_by,
            "version": state.version})
        text = dumps(hd.record)
        out.set(keys.resources(KIND, e.namespace), e.config_id, text)
        out.set(keys.HYPERDRIVE, e.config_id, text)

    def _hd_created(self, e: ev.HyperdriveCreated, env: Envelope, out: Changes) -> int:
        for (ns, name), hd in self.hyperdrive.items():
            if hd.config_id == e.config_id and self.resources[(KIND, ns, name)].exists:
                raise Reject("config_id_in_use", f"config id {e.config_id} is in use")
        state = self.resources.setdefault((KIND, e.namespace, e.name), ResourceState())
        if state.exists:
            raise Reject("resource_exists", f"{self._label(KIND, e.namespace, e.name)} "
                                            "already exists")
        state.exists = True
        state.created_at = env.occurred_at
        state.created_by = env.actor
        state.version += 1
        self._namespace(e.namespace).resources.setdefault(KIND, set()).add(e.config_id)
        hd = self.hyperdrive[(e.namespace, e.name)] = HyperdriveState(e.config_id, {
            "sealed_password": msgspec.to_builtins(e.sealed_password)})
        self._hd_render(e, state, hd, out)
        return state.version

    def _hd_live(self, e: ev.HyperdriveUpdated | ev.HyperdriveDeleted,
                 ) -> tuple[ResourceState, HyperdriveState]:
        state = self.resources.get((KIND, e.namespace, e.name))
        hd = self.hyperdrive.get((e.namespace, e.name))
        if state is None or not state.exists or hd is None:
            raise Reject("resource_not_found",
                         f"{self._label(KIND, e.namespace, e.name)} does not exist")
        return state, hd

    def _hd_updated(self, e: ev.HyperdriveUpdated, env: Envelope, out: Changes) -> int:
        state, hd = self._hd_live(e)
        if e.config_id != hd.config_id:
            # The id (and the pooler credentials sealed for it) never change.
            raise Reject("config_id_mismatch", f"config {e.name!r} has another id")
        state.version += 1
        self._hd_render(e, state, hd, out)
        return state.version

    def _hd_deleted(self, e: ev.HyperdriveDeleted, env: Envelope, out: Changes) -> int:
        state, hd = self._hd_live(e)
        if not e.force:
            users = self._bound_by_active(KIND, e.namespace, hd.config_id)
            if users:
                raise Reject("resource_in_use",
                             f"{self._label(KIND, e.namespace, e.name)} is bound by the "
                             f"active version of {', '.join(users)}; promote versions "
                             "without it first, or delete with force")
        state.exists = False
        state.version += 1
        self._namespace(e.namespace).resources.get(KIND, set()).discard(hd.config_id)
        del self.hyperdrive[(e.namespace, e.name)]
        out.delete(keys.resources(KIND, e.namespace), hd.config_id)
        out.delete(keys.HYPERDRIVE, hd.config_id)
        return state.version

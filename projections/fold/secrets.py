"""Secrets: names per namespace or worker scope; the sealed value is rendered as is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec

from eventlog import events as ev
from eventlog.envelope import Envelope
from projections import keys
from projections.changes import Changes
from projections.fold.core import Reject
from projections.fold.encoding import dumps
from projections.fold.namespaces import NamespaceState
from projections.fold.workers import WorkerRules


class SecretRules(WorkerRules):
    """Folds secret events; they count as events of their namespace or worker aggregate."""

    HANDLERS: ClassVar[Mapping[type[Any], str]] = {
        ev.SecretPut: "_secret_put",
        ev.SecretDeleted: "_secret_deleted",
    }

    def _secret_scope(self, e: ev.SecretPut | ev.SecretDeleted) -> tuple[set[str], Any]:
        if e.worker is None:
            ns = self._namespace(e.namespace)
            return ns.secrets, ns
        w = self._worker(e.namespace, e.worker)
        return w.secrets, w

    def _secret_put(self, e: ev.SecretPut, env: Envelope, out: Changes) -> int:
        names, owner = self._secret_scope(e)
        names.add(e.name)
        owner.version += 1
        sealed = msgspec.to_builtins(e.sealed)  # bytes become base64 text
        out.set(keys.secrets(e.namespace, e.worker), e.name,
                dumps({**sealed, "updated_at": env.occurred_at}))
        if isinstance(owner, NamespaceState):
            self._render_namespace(e.namespace, owner, out)
        else:
            assert e.worker is not None
            self._render_worker(e.namespace, e.worker, owner, out)
        return int(owner.version)

    def _secret_deleted(self, e: ev.SecretDeleted, env: Envelope, out: Changes) -> int:
        names, owner = self._secret_scope(e)
        if e.name not in names:
            raise Reject("secret_missing", f"secret {e.name!r} does not exist")
        names.discard(e.name)
        owner.version += 1
        out.delete(keys.secrets(e.namespace, e.worker), e.name)
        if isinstance(owner, NamespaceState):
            self._render_namespace(e.namespace, owner, out)
        else:
            assert e.worker is not None
            self._render_worker(e.namespace, e.worker, owner, out)
        return int(owner.version)

"""Typed reads of the projection, and read-your-writes waits, for the API and data plane.

Everything here reads the *current* generation through the store, so a
rebuild's switch is invisible to callers. Values are the JSON documents the
fold renders (projections/fold/); docs/redis-keys.md lists them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from projections import keys
from projections.store import ProjectionStore, VerdictWatch

_decode = msgspec.json.Decoder()
# How long a waiter trusts notifications before it reads anyway: what a lost
# notification costs at most.
_POLL_S = 0.05


class VerdictTimeout(Exception):
    """The projector did not reach the event in time; its outcome is still pending."""

    code = "verdict_timeout"


@dataclass(frozen=True)
class VerdictView:
    event_id: str
    accepted: bool
    code: str | None
    message: str
    partition: int
    offset: int
    aggregate_version: int


def _json(value: str | None) -> Any:
    return None if value is None else _decode.decode(value)


def _verdict_view(event_id: str, raw: str | None) -> VerdictView | None:
    doc = _json(raw)
    if doc is None:
        return None
    return VerdictView(event_id, bool(doc["accepted"]), doc["code"], doc["message"],
                       int(doc["partition"]), int(doc["offset"]), int(doc["aggregate_version"]))


class ProjectionReader:
    def __init__(self, store: ProjectionStore) -> None:
        self.store = store

    # --- read-your-writes ---------------------------------------------------

    async def applied(self) -> dict[int, int]:
        return await self.store.applied(await self.store.current_generation())

    async def wait_applied(self, partition: int, offset: int, timeout: float = 10.0) -> None:
        """Return once the current generation has applied `offset` of `partition`."""
        async def done() -> bool:
            return (await self.applied()).get(partition, 0) > offset

        if not await self._wait(done, timeout):
            raise VerdictTimeout(
                f"position {partition}:{offset} not projected within {timeout:.1f}s")

    async def _wait(self, done: Callable[[], Awaitable[bool]], timeout: float) -> bool:
        """Until `done()` (True) or the timeout (False), re-checking on every change.

        The wake-up is armed *before* each check: a change that lands between the
        check and the wait would otherwise be missed and cost a whole poll period
        (which the p99 of a command would show). The poll bounds a missed message."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            waiter = asyncio.ensure_future(self.store.wait_for_change(min(max(remaining, 0),
                                                                          _POLL_S)))
            try:
                if await done():
                    return True
                if remaining <= 0:
                    return False
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()

    async def verdict(self, event_id: str, partition: int) -> VerdictView | None:
        return _verdict_view(event_id, await self.store.hget(keys.verdicts(partition), event_id))

    @contextlib.contextmanager
    def expect_verdict(self, event_id: str, partition: int) -> Iterator[VerdictWatch | None]:
        """Enter before appending the event, pass to `wait_verdict`: where the store's
        notifications carry verdicts, its verdict then needs no read."""
        watch = self.store.watch_verdict(event_id, partition)
        try:
            yield watch
        finally:
            if watch is not None:
                self.store.unwatch_verdict(watch)

    async def wait_verdict(self, event_id: str, partition: int, offset: int,
                           timeout: float = 10.0, *,
                           watch: VerdictWatch | None = None) -> VerdictView:
        # The verdict is written in the same transaction as the applied position; both
        # are read as of one instant in one round trip, to tell "not yet" from "applied
        # without a verdict". A notification carrying the verdict (from the current
        # generation, as of that transaction) is the same answer without the read.
        found: VerdictView | None = None
        fields = [(keys.verdicts(partition), event_id), (keys.APPLIED, str(partition))]

        async def done() -> bool:
            nonlocal found
            raw, applied = await self.store.hget_many(fields)
            found = _verdict_view(event_id, raw)
            if found is not None:
                return True
            if int(applied or 0) <= offset:
                return False
            # Applied but not recorded: the record was dead-lettered.
            found = VerdictView(event_id, False, "dead_lettered",
                                "the event could not be applied; see dead letters",
                                partition, offset, 0)
            return True

        if watch is None:
            finished = await self._wait(done, timeout)
        else:
            watch.partition, watch.offset = partition, offset
            finished = await self._watch(watch, done, timeout)
            if watch.verdict is not None and found is None:
                found = _verdict_view(event_id, watch.verdict)
        if not finished:
            raise VerdictTimeout(
                f"position {partition}:{offset} not projected within {timeout:.1f}s")
        assert found is not None
        return found

    async def _watch(self, watch: VerdictWatch, done: Callable[[], Awaitable[bool]],
                     timeout: float) -> bool:
        """`_wait` on a watch: reads only when a notification says the event may be
        applied without carrying its verdict, after _POLL_S without one, and first
        when the watch may have missed notifications already."""
        deadline = time.monotonic() + timeout
        read = not watch.live
        while True:
            if watch.verdict is not None:
                return True
            if read and await done():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await watch.wait(min(remaining, _POLL_S))
            read = True

    async def aggregate_version(self, kind: str, aggregate_id: str) -> int:
        """Accepted events of an aggregate so far (0 if none): the `expected_version` to send."""
        value = await self.store.hget(keys.AGGREGATES, f"{kind}:{aggregate_id}")
        return 0 if value is None else int(value)

    async def idempotent_event(self, key: str, partition: int) -> str | None:
        return await self.store.hget(keys.idempotency(partition), key)

    # --- namespaces and workers -----------------------------------------------

    async def namespace(self, name: str) -> dict[str, Any] | None:
        return _json(await self.store.hget(keys.NAMESPACES, name))  # type: ignore[no-any-return]

    async def namespaces(self) -> dict[str, dict[str, Any]]:
        return {k: _json(v) for k, v in (await self.store.hgetall(keys.NAMESPACES)).items()}

    async def namespace_and_worker(self, namespace: str, worker: str,
                                   ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Both records as of one instant, in one read (a command checks both)."""
        ns, w = await self.store.hget_many([(keys.NAMESPACES, namespace),
                                            (keys.workers(namespace), worker)])
        return _json(ns), _json(w)

    async def worker(self, namespace: str, worker: str) -> dict[str, Any] | None:
        return _json(await self.store.hget(keys.workers(namespace), worker))  # type: ignore[no-any-return]

    async def workers(self, namespace: str) -> dict[str, dict[str, Any]]:
        raw = await self.store.hgetall(keys.workers(namespace))
        return {k: _json(v) for k, v in raw.items()}

    async def active_version(self, namespace: str, worker: str) -> str | None:
        return await self.store.hget(keys.routes(namespace), worker)

    async def routes(self, namespace: str) -> dict[str, str]:
        return await self.store.hgetall(keys.routes(namespace))

    async def version(self, namespace: str, worker: str, version: str) -> dict[str, Any] | None:
        return _json(await self.store.hget(keys.versions(namespace, worker), version))  # type: ignore[no-any-return]

    async def versions(self, namespace: str, worker: str) -> dict[str, dict[str, Any]]:
        raw = await self.store.hgetall(keys.versions(namespace, worker))
        return {k: _json(v) for k, v in raw.items()}

    # --- secrets (sealed envelopes only) ---------------------------------------

    async def secrets(self, namespace: str, worker: str | None) -> dict[str, dict[str, Any]]:
        raw = await self.store.hgetall(keys.secrets(namespace, worker))
        return {k: _json(v) for k, v in raw.items()}

    # --- hosts, cron, leases, tokens -------------------------------------------

    async def hosts(self) -> dict[str, dict[str, Any]]:
        return {k: _json(v) for k, v in (await self.store.hgetall(keys.HOSTS)).items()}

    async def host_owner(self, host: str) -> dict[str, Any] | None:
        owner: dict[str, Any] | None = _json(await self.store.hget(keys.HOST_OWNERS, host))
        return owner

    async def quarantined(self) -> list[dict[str, Any]]:
        """Every quarantined version and held namespace (the watchdog's and operators'
        decisions); a namespace's hold has `worker` and `version_id` null."""
        raw = await self.store.hgetall(keys.QUARANTINE)
        return [_json(raw[k]) for k in sorted(raw)]

    async def held(self, namespace: str) -> dict[str, Any] | None:
        """The namespace's hold, if the watchdog's strikes led to one."""
        return _json(await self.store.hget(keys.QUARANTINE, namespace))  # type: ignore[no-any-return]

    async def strikes(self) -> list[dict[str, Any]]:
        """Every namespace's recent strikes (projections/fold/containment.py)."""
        raw = await self.store.hgetall(keys.STRIKES)
        return [_json(raw[k]) for k in sorted(raw)]

    async def cron_schedule(self) -> dict[str, dict[str, Any]]:
        return {k: _json(v) for k, v in (await self.store.hgetall(keys.CRON)).items()}

    async def cron_runs(self, namespace: str, worker: str) -> dict[str, dict[str, Any]]:
        raw = await self.store.hgetall(keys.cron_runs(namespace, worker))
        return {k: _json(v) for k, v in raw.items()}

    async def lease(self, scope: str) -> dict[str, Any] | None:
        return _json(await self.store.hget(keys.LEASES, scope))  # type: ignore[no-any-return]

    async def leases(self) -> dict[str, dict[str, Any]]:
        return {k: _json(v) for k, v in (await self.store.hgetall(keys.LEASES)).items()}

    async def token_id_for_hash(self, sha256_hex: str) -> str | None:
        return await self.store.hget(keys.TOKEN_HASHES, sha256_hex)

    async def token(self, token_id: str) -> dict[str, Any] | None:
        return _json(await self.store.hget(keys.TOKENS, token_id))  # type: ignore[no-any-return]

    async def tokens(self) -> dict[str, dict[str, Any]]:
        return {k: _json(v) for k, v in (await self.store.hgetall(keys.TOKENS)).items()}

    # --- tenant resources (KV namespaces, R2 buckets, ...) and policies --------

    async def resource(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A resource record (`kind` is `kv`, `r2`, ...), or None if it does not exist."""
        return _json(await self.store.hget(keys.resources(kind, namespace), name))  # type: ignore[no-any-return]

    async def resources(self, kind: str, namespace: str) -> dict[str, dict[str, Any]]:
        raw = await self.store.hgetall(keys.resources(kind, namespace))
        return {k: _json(v) for k, v in raw.items()}

    async def d1_backups(self, namespace: str, database: str) -> dict[str, dict[str, Any]]:
        raw = await self.store.hgetall(keys.d1_backups(namespace, database))
        return {k: _json(v) for k, v in raw.items()}

    async def egress_policy(self, namespace: str) -> dict[str, Any] | None:
        return _json(await self.store.hget(keys.EGRESS, namespace))  # type: ignore[no-any-return]

    async def dead_letters(self, partition: int) -> dict[str, dict[str, Any]]:
        raw = await self.store.hgetall(keys.dead_letters(partition))
        return {k: _json(v) for k, v in raw.items()}


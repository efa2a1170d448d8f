"""A realistic control-plane history: what a busy multi-tenant platform's log looks like.

The generator keeps just enough state to make most commands valid (so the
fold does real work: accepts, renders, prunes), while a share of them race
or go stale the way concurrent writers do and get rejected.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from eventlog import events as ev
from eventlog.envelope import Envelope

T0 = 1_790_000_000_000


@dataclass
class _Worker:
    ns: str
    name: str
    versions: list[str] = field(default_factory=list)
    active: str | None = None
    version: int = 0  # aggregate version as the fold will count it (accepted events)
    deleted: bool = False


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def history(events: int, *, namespaces: int = 100, workers_per_ns: int = 100,
            seed: int = 42) -> Iterator[Envelope]:
    rnd = random.Random(seed)
    clock = T0
    sealed = ev.SealedSecret(key_id="root-1", wrapped_key=rnd.randbytes(40),
                             nonce=rnd.randbytes(12), ciphertext=rnd.randbytes(48))
    emitted = 0

    def env(payload: ev.Event, **kw: object) -> Envelope:
        nonlocal clock, emitted
        clock += rnd.randrange(1, 20)
        emitted += 1
        return Envelope.new(payload, actor=f"token-{rnd.randrange(500)}", occurred_at=clock,
                            **kw)  # type: ignore[arg-type]

    ns_names = [f"tenant-{i:03d}" for i in range(namespaces)]
    for ns in ns_names:
        yield env(ev.NamespaceCreated(namespace=ns, description=f"{ns} team"))
    workers = [_Worker(ns, f"svc-{j:03d}") for ns in ns_names for j in range(workers_per_ns)]
    leases: dict[str, tuple[str, int, int]] = {}
    hosts: dict[str, str] = {}
    counter = 0
    while emitted < events:
        w = workers[rnd.randrange(len(workers))]
        roll = rnd.random()
        if w.deleted:
            if roll < 0.5:
                w.deleted = False
                w.versions.clear()
                w.active = None
                w.version += 1
                yield env(ev.WorkerPurged(namespace=w.ns, worker=w.name),
                          expected_version=w.version - 1)
            continue
        if roll < 0.25 or not w.versions:
            counter += 1
            vid = f"v{counter:08d}"
            body = f"export default {{ fetch() {{ return new Response('{vid}') }} }}"
            crons = ("*/5 * * * *",) if rnd.random() < 0.1 else ()
            yield env(ev.WorkerVersionUploaded(
                namespace=w.ns, worker=w.name, version_id=vid, bundle_sha256=_digest(body),
                bundle_size=len(body) + rnd.randrange(50_000),
                modules=(ev.ModuleRef(name="index.js", type="esm", sha256=_digest(vid),
                                      size=len(body)),
                         ev.ModuleRef(name="lib/util.js", type="esm",
                                      sha256=_digest(vid + "u"), size=1200)),
                main_module="index.js", compatibility_date="2025-09-01",
                compatibility_flags=("nodejs_compat",),
                vars={"ENV": "production", "REGION": f"r{rnd.randrange(5)}"},
                cron_triggers=crons))
            w.versions.append(vid)
            w.version += 1
        elif roll < 0.50:
            target = rnd.choice(w.versions)
            stale = rnd.random() < 0.05
            expected = w.version - 1 if stale and w.version else w.version
            yield env(ev.VersionPromoted(namespace=w.ns, worker=w.name, version_id=target),
                      expected_version=expected)
            if not stale and target != w.active:
                w.active = target
                w.version += 1
        elif roll < 0.55 and w.active and len(w.versions) > 1:
            target = next(v for v in reversed(w.versions) if v != w.active)
            yield env(ev.WorkerRolledBack(namespace=w.ns, worker=w.name, version_id=target,
                                          reason="error rate"), expected_version=w.version)
            w.active = target
            w.version += 1
        elif roll < 0.60 and len(w.versions) > 2:
            victim = next((v for v in w.versions if v != w.active), None)
            if victim is not None:
                yield env(ev.VersionDeleted(namespace=w.ns, worker=w.name, version_id=victim))
                w.versions.remove(victim)
                w.version += 1
        elif roll < 0.70:
            yield env(ev.SecretPut(namespace=w.ns, worker=w.name,
                                   name=f"SECRET_{rnd.randrange(4)}", sealed=sealed))
            w.version += 1
        elif roll < 0.75:
            pattern = f"app{rnd.randrange(5000)}.example.com"
            owner = hosts.get(pattern)
            if owner is None or owner == w.ns:
                yield env(ev.HostClaimed(pattern=pattern, namespace=w.ns, worker=w.name,
                                         match="exact" if rnd.random() < 0.7 else "prefix"))
                hosts[pattern] = w.ns
            else:
                yield env(ev.HostReleased(pattern=pattern, namespace=owner))
                del hosts[pattern]
        elif roll < 0.995:
            scope = f"owner/{w.ns}/{rnd.randrange(20)}"
            holder, gen, expires = leases.get(scope, ("", 0, 0))
            ttl = 15_000
            if holder and expires > clock and rnd.random() < 0.85:
                yield env(ev.LeaseRenewed(scope=scope, holder=holder, generation=gen,
                                          ttl_ms=ttl, expires_at=clock + 10 + ttl),
                          expected_generation=gen)
                leases[scope] = (holder, gen, clock + 10 + ttl)
            else:
                new_holder = f"replica-{rnd.randrange(8)}"
                kind = ev.LeaseTakenOver if holder else ev.LeaseAcquired
                extra = {"previous_holder": holder} if holder else {}
                yield env(kind(scope=scope, holder=new_holder, generation=gen + 1, ttl_ms=ttl,
                               expires_at=clock + 10 + ttl, **extra),
                          expected_generation=gen)
                leases[scope] = (new_holder, gen + 1, clock + 10 + ttl)
        else:
            yield env(ev.WorkerDeleted(namespace=w.ns, worker=w.name))
            w.deleted = True
            w.version += 1

"""One realistic instance of every event type, shared by the event log tests."""

from __future__ import annotations

import hashlib

from eventlog import (
    Binding,
    CronRunCompleted,
    CronSlotClaimed,
    Envelope,
    Event,
    HostClaimed,
    HostReleased,
    HostVerified,
    LeaseAcquired,
    LeaseReleased,
    LeaseRenewed,
    LeaseTakenOver,
    ModuleRef,
    NamespaceCreated,
    SealedSecret,
    SecretDeleted,
    SecretPut,
    TokenIssued,
    TokenRevoked,
    VersionDeleted,
    VersionPromoted,
    WorkerDeleted,
    WorkerPurged,
    WorkerRolledBack,
    WorkerTagsSet,
    WorkerVersionUploaded,
)
from eventlog.events import (
    D1BackupCreated,
    D1DatabaseCreated,
    D1DatabaseDeleted,
    D1DatabaseRestored,
    D1MigrationsApplied,
    EgressPolicySet,
    EgressRule,
    HyperdriveCreated,
    HyperdriveDeleted,
    HyperdriveUpdated,
    KvNamespaceCreated,
    KvNamespaceDeleted,
    NamespaceLimitsSet,
    NamespaceQuarantineLifted,
    NamespaceStruck,
    QuarantineLifted,
    QueueConsumerRemoved,
    QueueConsumerSet,
    QueueCreated,
    QueueDeleted,
    R2BucketCreated,
    R2BucketDeleted,
    ServiceGranted,
    ServiceRevoked,
    VersionQuarantined,
)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def upload(
    namespace: str = "acme", worker: str = "api", version: str = "v1"
) -> WorkerVersionUploaded:
    return WorkerVersionUploaded(
        namespace=namespace,
        worker=worker,
        version_id=version,
        bundle_sha256=digest(f"{namespace}/{worker}/{version}"),
        bundle_size=2048,
        modules=(
            ModuleRef(name="index.js", type="esm", sha256=digest("index"), size=1800),
            ModuleRef(name="data.bin", type="data", sha256=digest("data"), size=248),
        ),
        main_module="index.js",
        compatibility_date="2025-09-01",
        compatibility_flags=("nodejs_compat",),
        vars={"GREETING": "hello", "MODE": "prod"},
        bindings=(
            Binding(name="AUTH", kind="service", target="auth"),
            Binding(name="CONFIG", kind="json", value='{"retries": 3}'),
            Binding(name="API_KEY", kind="secret", target="API_KEY"),
        ),
        cron_triggers=("*/5 * * * *", "0 3 * * mon"),
    )


def sealed() -> SealedSecret:
    return SealedSecret(
        key_id="root-2026-01",
        wrapped_key=bytes(range(40)),
        nonce=bytes(12),
        ciphertext=b"\x8f\x00ciphertext-bytes\xff",
    )


def every_event() -> list[tuple[Event, dict[str, int]]]:
    """Each event type once, with the precondition it is normally appended with."""
    return [
        (NamespaceCreated(namespace="acme", description="Acme Corp"), {"expected_version": 0}),
        (upload(), {"expected_version": 0}),
        (VersionPromoted(namespace="acme", worker="api", version_id="v1"), {"expected_version": 1}),
        (
            WorkerRolledBack(namespace="acme", worker="api", version_id="v1", reason="5xx spike"),
            {"expected_version": 3},
        ),
        (VersionDeleted(namespace="acme", worker="api", version_id="v2"), {}),
        (WorkerDeleted(namespace="acme", worker="api"), {}),
        (WorkerTagsSet(namespace="acme", worker="api", tags=("cust-1", "plan:pro")), {}),
        (WorkerPurged(namespace="acme", worker="api"), {}),
        (SecretPut(namespace="acme", worker="api", name="API_KEY", sealed=sealed()), {}),
        (SecretPut(namespace="acme", name="SHARED", sealed=sealed()), {}),
        (SecretDeleted(namespace="acme", worker=None, name="SHARED"), {}),
        (HostClaimed(pattern="api.acme.example", namespace="acme"), {}),
        (HostClaimed(pattern="acme.example/app/", match="prefix", namespace="acme"), {}),
        (HostReleased(pattern="api.acme.example", namespace="acme"), {}),
        (HostVerified(host="api.acme.example", namespace="acme",
                      record="_wdl-challenge.api.acme.example",
                      challenge="wdl-verify=5f0c6a1e9b2d4c7a8e3f1b6d0a9c2e4f"), {}),
        (
            LeaseAcquired(
                scope="cron/acme",
                holder="sched-1",
                generation=1,
                ttl_ms=10_000,
                expires_at=T0 + 10_000,
            ),
            {"expected_generation": 0},
        ),
        (
            LeaseRenewed(
                scope="cron/acme",
                holder="sched-1",
                generation=1,
                ttl_ms=10_000,
                expires_at=T0 + 20_000,
            ),
            {"expected_generation": 1},
        ),
        (
            LeaseTakenOver(
                scope="cron/acme",
                holder="sched-2",
                previous_holder="sched-1",
                generation=2,
                ttl_ms=10_000,
                expires_at=T0 + 30_000,
            ),
            {"expected_generation": 1},
        ),
        (
            LeaseReleased(scope="cron/acme", holder="sched-2", generation=2),
            {"expected_generation": 2},
        ),
        (
            TokenIssued(
                token_id="tok_01",
                token_sha256=hashlib.sha256(b"secret").digest(),
                role="deployer",
                namespaces=("acme",),
                label="ci",
            ),
            {},
        ),
        (TokenRevoked(token_id="tok_01", reason="rotated"), {}),
        (CronSlotClaimed(scope="scheduler", holder="sched-a", generation=3, namespace="acme",
                         worker="api", version_id="v2", cron="*/5 * * * *",
                         slot_ms=T0 + 300_000), {"expected_generation": 3}),
        (CronRunCompleted(scope="scheduler", holder="sched-a", generation=3, namespace="acme",
                          worker="api", version_id="v2", cron="*/5 * * * *",
                          slot_ms=T0 + 300_000, status="error", duration_ms=12,
                          error="Error: upstream down"), {"expected_generation": 3}),
        (KvNamespaceCreated(namespace="acme", name="cache", title="page cache"),
         {"expected_version": 0}),
        (KvNamespaceDeleted(namespace="acme", name="cache", force=True), {}),
        (R2BucketCreated(namespace="acme", name="assets"), {"expected_version": 0}),
        (R2BucketDeleted(namespace="acme", name="assets"), {}),
        (D1DatabaseCreated(namespace="acme", name="main",
                           database_id="6d0f7a3c-1b2e-4c5d-8e9f-0a1b2c3d4e5f"),
         {"expected_version": 0}),
        (D1MigrationsApplied(namespace="acme", name="main", migrations=("0001_init.sql",)), {}),
        (D1BackupCreated(namespace="acme", name="main", backup_id="b1", size=4096,
                         sha256="a" * 64), {}),
        (D1DatabaseRestored(namespace="acme", name="main", backup_id="b1"), {}),
        (D1DatabaseDeleted(namespace="acme", name="main"), {}),
        (QueueCreated(namespace="acme", name="jobs", delivery_delay=5), {"expected_version": 0}),
        (QueueConsumerSet(namespace="acme", name="jobs", worker="api", max_batch_size=50,
                          max_batch_timeout=2, max_retries=4, retry_delay=10,
                          dead_letter_queue="jobs-dlq", max_concurrency=2), {}),
        (QueueConsumerRemoved(namespace="acme", name="jobs", worker="api"), {}),
        (QueueDeleted(namespace="acme", name="jobs", force=True), {}),
        (EgressPolicySet(namespace="acme", mode="allow",
                         allow=(EgressRule(host="api.example.com", ports=(443,)),
                                EgressRule(host="*.example.org"))), {}),
        (ServiceGranted(namespace="acme", grantee="partner", worker="api"), {}),
        (ServiceRevoked(namespace="acme", grantee="partner", worker="api"), {}),
        (NamespaceLimitsSet(namespace="acme", wall_ms=30_000, subrequests=50), {}),
        (VersionQuarantined(namespace="acme", worker="api", version_id="v1", reason="hang",
                            strikes=3, detail="workerd gw-1 stopped answering"), {}),
        (QuarantineLifted(namespace="acme", worker="api", version_id="v1", note="fixed"), {}),
        (NamespaceStruck(namespace="acme", worker="api", version_id="v1", reason="hang",
                         precise=True, instance="gw0-1", detail="no answer for 1.5 s",
                         hold_after=3, window_s=600), {}),
        (NamespaceQuarantineLifted(namespace="acme", note="fixed"), {}),
        (HyperdriveCreated(namespace="acme", name="main-db", config_id="0" * 32,
                           origin_host="db.internal", origin_port=5432, origin_database="app",
                           sealed_origin=sealed(), sealed_password=sealed()),
         {"expected_version": 0}),
        (HyperdriveUpdated(namespace="acme", name="main-db", config_id="0" * 32,
                           origin_host="10.0.0.5", origin_port=6432, origin_database="app",
                           pool_size=3, sealed_origin=sealed()), {}),
        (HyperdriveDeleted(namespace="acme", name="main-db"), {}),
    ]


def envelope(event: Event, precondition: dict[str, int] | None = None) -> Envelope:
    pre = precondition or {}
    return Envelope.new(
        event,
        actor="user:alice",
        occurred_at=T0,
        expected_version=pre.get("expected_version"),
        expected_generation=pre.get("expected_generation"),
    )

"""The event catalogue: one frozen, typed record per control action.

Events are plain data. They know their type name, schema version, the
aggregate they belong to and the rules their fields must follow; they know
nothing about envelopes, encodings or brokers. `EVENT_TYPES` maps each type
name (the tag stored in the envelope) to its class.

One module per aggregate kind defines its events, a union of them and
`CLASSES`, the tuple this package assembles the registry from. A new kind is
a new module, one entry in `_KINDS` and one member of `Event` below.
"""

from __future__ import annotations

from types import ModuleType as _Module
from typing import get_args

from eventlog.events import (
    containment,
    cron,
    d1,
    hosts,
    hyperdrive,
    kv,
    leases,
    namespaces,
    policies,
    quarantine,
    queues,
    r2,
    secrets,
    tokens,
    workers,
)
from eventlog.events.base import (
    MAX_BINDINGS,
    MAX_MODULES,
    MAX_SECRET_CIPHERTEXT,
    MAX_VAR_BYTES,
    MAX_VARS,
    BaseEvent,
)
from eventlog.events.containment import (
    ContainmentEvent,
    NamespaceQuarantineLifted,
    NamespaceStruck,
    StrikeKind,
)
from eventlog.events.cron import CronEvent, CronRunCompleted, CronSlotClaimed, CronStatus
from eventlog.events.d1 import (
    D1BackupCreated,
    D1DatabaseCreated,
    D1DatabaseDeleted,
    D1DatabaseRestored,
    D1Event,
    D1MigrationsApplied,
)
from eventlog.events.hosts import (
    HostClaimed,
    HostEvent,
    HostMatch,
    HostReleased,
    HostVerified,
)
from eventlog.events.hyperdrive import (
    HyperdriveCreated,
    HyperdriveDeleted,
    HyperdriveEvent,
    HyperdriveUpdated,
)
from eventlog.events.kv import KvEvent, KvNamespaceCreated, KvNamespaceDeleted
from eventlog.events.leases import (
    LeaseAcquired,
    LeaseEvent,
    LeaseReleased,
    LeaseRenewed,
    LeaseTakenOver,
)
from eventlog.events.namespaces import NamespaceCreated, NamespaceEvent
from eventlog.events.policies import (
    ALL_GRANTS,
    SHARE_FIELDS,
    EgressMode,
    EgressPolicySet,
    EgressRule,
    NamespaceLimitsSet,
    PolicyEvent,
    ServiceGranted,
    ServiceRevoked,
)
from eventlog.events.quarantine import (
    IncidentKind,
    QuarantineEvent,
    QuarantineLifted,
    VersionQuarantined,
)
from eventlog.events.queues import (
    QueueConsumerRemoved,
    QueueConsumerSet,
    QueueCreated,
    QueueDeleted,
    QueueEvent,
)
from eventlog.events.r2 import R2BucketCreated, R2BucketDeleted, R2Event
from eventlog.events.resources import ResourceDeletion, ResourceEvent
from eventlog.events.secrets import SealedSecret, SecretDeleted, SecretEvent, SecretPut
from eventlog.events.tokens import Role, TokenEvent, TokenIssued, TokenRevoked
from eventlog.events.workers import (
    Binding,
    ModuleRef,
    ModuleType,
    VersionDeleted,
    VersionPromoted,
    WorkerDeleted,
    WorkerEvent,
    WorkerPurged,
    WorkerRolledBack,
    WorkerTagsSet,
    WorkerVersionUploaded,
)

Event = (NamespaceEvent | WorkerEvent | SecretEvent | HostEvent | LeaseEvent | TokenEvent
         | CronEvent | KvEvent | R2Event | D1Event | PolicyEvent | QuarantineEvent | QueueEvent
         | ContainmentEvent | HyperdriveEvent)

# The registry, in catalogue order: each module contributes its `CLASSES`.
_KINDS: tuple[_Module, ...] = (namespaces, workers, secrets, hosts, leases, tokens, cron, kv, r2,
                               d1, policies, quarantine, queues, containment,
                               hyperdrive)

EVENT_CLASSES: tuple[type[Event], ...] = tuple(cls for kind in _KINDS for cls in kind.CLASSES)

if set(EVENT_CLASSES) != set(get_args(Event)) or len(EVENT_CLASSES) != len(get_args(Event)):
    raise RuntimeError("eventlog.events: Event and the modules' CLASSES name different events")

EVENT_TYPES: dict[str, type[Event]] = {cls.TYPE: cls for cls in EVENT_CLASSES}
CURRENT_VERSIONS: dict[str, int] = {cls.TYPE: cls.SCHEMA_VERSION for cls in EVENT_CLASSES}

__all__ = [
    "ALL_GRANTS",
    "CURRENT_VERSIONS",
    "EVENT_CLASSES",
    "EVENT_TYPES",
    "MAX_BINDINGS",
    "MAX_MODULES",
    "MAX_SECRET_CIPHERTEXT",
    "MAX_VARS",
    "MAX_VAR_BYTES",
    "SHARE_FIELDS",
    "BaseEvent",
    "Binding",
    "ContainmentEvent",
    "CronEvent",
    "CronRunCompleted",
    "CronSlotClaimed",
    "CronStatus",
    "D1BackupCreated",
    "D1DatabaseCreated",
    "D1DatabaseDeleted",
    "D1DatabaseRestored",
    "D1Event",
    "D1MigrationsApplied",
    "EgressMode",
    "EgressPolicySet",
    "EgressRule",
    "Event",
    "HostClaimed",
    "HostEvent",
    "HostMatch",
    "HostReleased",
    "HostVerified",
    "HyperdriveCreated",
    "HyperdriveDeleted",
    "HyperdriveEvent",
    "HyperdriveUpdated",
    "IncidentKind",
    "KvEvent",
    "KvNamespaceCreated",
    "KvNamespaceDeleted",
    "LeaseAcquired",
    "LeaseEvent",
    "LeaseReleased",
    "LeaseRenewed",
    "LeaseTakenOver",
    "ModuleRef",
    "ModuleType",
    "NamespaceCreated",
    "NamespaceEvent",
    "NamespaceLimitsSet",
    "NamespaceQuarantineLifted",
    "NamespaceStruck",
    "PolicyEvent",
    "QuarantineEvent",
    "QuarantineLifted",
    "QueueConsumerRemoved",
    "QueueConsumerSet",
    "QueueCreated",
    "QueueDeleted",
    "QueueEvent",
    "R2BucketCreated",
    "R2BucketDeleted",
    "R2Event",
    "ResourceDeletion",
    "ResourceEvent",
    "Role",
    "SealedSecret",
    "SecretDeleted",
    "SecretEvent",
    "SecretPut",
    "ServiceGranted",
    "ServiceRevoked",
    "StrikeKind",
    "TokenEvent",
    "TokenIssued",
    "TokenRevoked",
    "VersionDeleted",
    "VersionPromoted",
    "VersionQuarantined",
    "WorkerDeleted",
    "WorkerEvent",
    "WorkerPurged",
    "WorkerRolledBack",
    "WorkerTagsSet",
    "WorkerVersionUploaded",
]

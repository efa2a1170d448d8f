"""The event catalogue: one frozen, typed record per control action.

Events are plain data. They know their type name, schema version, the
aggregate they belong to and the rules their fields must follow; they know
nothing about envelopes, encodings or brokers. `EVENT_TYPES` maps each type
name (the tag stored in the envelope) to its class.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, ClassVar, Literal

import msgspec

from eventlog import validation as v
from eventlog.aggregates import AggregateKind, worker_aggregate_id
from eventlog.errors import InvalidEvent

if TYPE_CHECKING:
    from eventlog.envelope import Precondition

ModuleType = Literal["esm", "commonjs", "text", "data", "wasm", "json", "python"]
BindingKind = Literal["service", "json", "text", "secret"]
Role = Literal["admin", "deployer", "observer"]
HostMatch = Literal["exact", "prefix"]

_ENTRY_MODULE_TYPES = frozenset({"esm", "commonjs", "python"})
MAX_MODULES = 1000
MAX_VARS = 256
MAX_BINDINGS = 256
MAX_VAR_BYTES = 5 * 1024
MAX_SECRET_CIPHERTEXT = 64 * 1024


class BaseEvent(msgspec.Struct, frozen=True, kw_only=True):
    TYPE: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int] = 1

    def aggregate(self) -> tuple[AggregateKind, str]:
        raise NotImplementedError

    def validate(self) -> None:
        """Raise InvalidEvent if a field breaks the catalogue's rules."""

    def check_precondition(self, precondition: Precondition) -> None:
        """Raise InvalidEvent if the precondition cannot make sense for this event."""


def _no_generation(event: BaseEvent, precondition: Precondition) -> None:
    if precondition.expected_generation is not None:
        raise InvalidEvent(
            "precondition.expected_generation", f"{event.TYPE} does not carry a lease generation"
        )


# --- namespace ------------------------------------------------------------


class NamespaceCreated(BaseEvent, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "namespace.created"

    namespace: str
    description: str = ""

    def aggregate(self) -> tuple[AggregateKind, str]:
        return AggregateKind.NAMESPACE, self.namespace

    def validate(self) -> None:
        v.name("namespace", self.namespace)
        v.text("description", self.description, max_len=1024, allow_empty=True)

    def check_precondition(self, precondition: Precondition) -> None:
        _no_generation(self, precondition)


# --- worker versions ------------------------------------------------------


class ModuleRef(msgspec.Struct, frozen=True, kw_only=True):
    """One module of an uploaded bundle, by digest; the bytes live in object storage."""

    name: str
    type: ModuleType
    sha256: str
    size: int


class Binding(msgspec.Struct, frozen=True, kw_only=True):
    """A binding in the worker's env.

    `service`: `target` is another worker of the same namespace.
    `secret`: `target` is a secret name, resolved at load time.
    `json`: `value` is JSON text. `text`: `value` is the string itself.
    """

    name: str
    kind: BindingKind
    target: str = ""
    value: str = ""


class _WorkerEvent(BaseEvent, frozen=True, kw_only=True):
    namespace: str
    worker: str

    def aggregate(self) -> tuple[AggregateKind, str]:
        return AggregateKind.WORKER, worker_aggregate_id(self.namespace, self.worker)

    def validate(self) -> None:
        v.name("namespace", self.namespace)
        v.name("worker", self.worker)

    def check_precondition(self, precondition: Precondition) -> None:
        _no_generation(self, precondition)


class WorkerVersionUploaded(_WorkerEvent, frozen=True, kw_only=True):
    """A new immutable version; it does not serve traffic until promoted."""

    TYPE: ClassVar[str] = "worker.version_uploaded"
    SCHEMA_VERSION: ClassVar[int] = 2

    version_id: str
    bundle_sha256: str
    bundle_size: int
    modules: tuple[ModuleRef, ...]
    main_module: str
    compatibility_date: str
    compatibility_flags: tuple[str, ...] = ()
    vars: dict[str, str] = msgspec.field(default_factory=dict)
    bindings: tuple[Binding, ...] = ()
    cron_triggers: tuple[str, ...] = ()

    def validate(self) -> None:
        super().validate()
        v.identifier("version_id", self.version_id)
        v.sha256_hex("bundle_sha256", self.bundle_sha256)
        v.positive("bundle_size", self.bundle_size)
        if not self.modules:
            raise InvalidEvent("modules", "a version needs at least one module")
        if len(self.modules) > MAX_MODULES:
            raise InvalidEvent("modules", f"more than {MAX_MODULES} modules")
        names: set[str] = set()
        for i, module in enumerate(self.modules):
            # Fast path first; the precise message is only worked out on failure.
            if not (
                type(module) is ModuleRef
                and type(module.name) is str
                and 0 < len(module.name) <= v.MODULE_NAME_MAX
                and module.name not in names
                and type(module.sha256) is str
                and v.SHA256_HEX_RE.fullmatch(module.sha256) is not None
                and type(module.size) is int
                and module.size >= 0
            ):
                _refuse_module(i, module, names)
            names.add(module.name)
        main = next((m for m in self.modules if m.name == self.main_module), None)
        if main is None:
            raise InvalidEvent("main_module", f"{self.main_module!r} is not one of the modules")
        if main.type not in _ENTRY_MODULE_TYPES:
            raise InvalidEvent("main_module", f"a {main.type} module cannot be the entry point")
        v.compatibility_date("compatibility_date", self.compatibility_date)
        v.compatibility_flags("compatibility_flags", self.compatibility_flags)
        if len(self.vars) > MAX_VARS:
            raise InvalidEvent("vars", f"more than {MAX_VARS} vars")
        v.string_map("vars", self.vars, v.VAR_NAME_RE, max_value=MAX_VAR_BYTES)
        self._validate_bindings()
        v.crons("cron_triggers", self.cron_triggers)

    def _validate_bindings(self) -> None:
        if len(self.bindings) > MAX_BINDINGS:
            raise InvalidEvent("bindings", f"more than {MAX_BINDINGS} bindings")
        seen = set(self.vars)
        for i, binding in enumerate(self.bindings):
            field = f"bindings[{i}]"
            if not isinstance(binding, Binding):
                raise InvalidEvent(field, "must be a Binding")
            if v.BINDING_NAME_RE.fullmatch(binding.name) is None:
                raise InvalidEvent(f"{field}.name", f"{binding.name!r} is not an identifier")
            if binding.name in seen:
                raise InvalidEvent(f"{field}.name", f"{binding.name!r} is bound twice")
            seen.add(binding.name)
            if binding.kind == "service":
                v.name(f"{field}.target", binding.target)
            elif binding.kind == "secret":
                v.secret_name(f"{field}.target", binding.target)
            elif binding.kind == "json":
                try:
                    json.loads(binding.value)
                except ValueError as exc:
                    raise InvalidEvent(f"{field}.value", "is not JSON text") from exc
            elif binding.kind != "text":
                raise InvalidEvent(f"{field}.kind", f"unknown binding kind {binding.kind!r}")
            if len(binding.value) > MAX_VAR_BYTES:
                raise InvalidEvent(f"{field}.value", f"longer than {MAX_VAR_BYTES} characters")


def _refuse_module(i: int, module: object, names: set[str]) -> None:
    field = f"modules[{i}]"
    if not isinstance(module, ModuleRef):
        raise InvalidEvent(field, "must be a ModuleRef")
    v.text(f"{field}.name", module.name, max_len=v.MODULE_NAME_MAX)
    if module.name in names:
        raise InvalidEvent(f"{field}.name", f"{module.name!r} appears twice")
    v.sha256_hex(f"{field}.sha256", module.sha256)
    v.non_negative(f"{field}.size", module.size)
    raise InvalidEvent(field, "is not a valid module")


class VersionPromoted(_WorkerEvent, frozen=True, kw_only=True):
    """Make an uploaded version the one that serves traffic."""

    TYPE: ClassVar[str] = "worker.version_promoted"

    version_id: str

    def validate(self) -> None:
        super().validate()
        v.identifier("version_id", self.version_id)


class WorkerRolledBack(_WorkerEvent, frozen=True, kw_only=True):
    """A promote of an earlier version, kept distinct for the audit trail."""

    TYPE: ClassVar[str] = "worker.rolled_back"

    version_id: str
    reason: str

    def validate(self) -> None:
        super().validate()
        v.identifier("version_id", self.version_id)
        v.text("reason", self.reason, max_len=v.REASON_MAX)


class VersionDeleted(_WorkerEvent, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "worker.version_deleted"

    version_id: str

    def validate(self) -> None:
        super().validate()
        v.identifier("version_id", self.version_id)


class WorkerDeleted(_WorkerEvent, frozen=True, kw_only=True):
    """Soft delete: stops routing and crons; versions and metadata are kept."""

    TYPE: ClassVar[str] = "worker.deleted"


class WorkerPurged(_WorkerEvent, frozen=True, kw_only=True):
    """Hard delete of a soft-deleted worker; its metadata goes, the name is free."""

    TYPE: ClassVar[str] = "worker.purged"


# --- secrets --------------------------------------------------------------


class SealedSecret(msgspec.Struct, frozen=True, kw_only=True):
    """Envelope encryption output: the plaintext never reaches the log."""

    key_id: str
    wrapped_key: bytes
    nonce: bytes
    ciphertext: bytes
    algorithm: str = "AES-256-GCM"


class _SecretEvent(BaseEvent, frozen=True, kw_only=True):
    namespace: str
    worker: str | None = None
    name: str

    def aggregate(self) -> tuple[AggregateKind, str]:
        if self.worker is None:
            return AggregateKind.NAMESPACE, self.namespace
        return AggregateKind.WORKER, worker_aggregate_id(self.namespace, self.worker)

    def validate(self) -> None:
        v.name("namespace", self.namespace)
        if self.worker is not None:
            v.name("worker", self.worker)
        v.secret_name("name", self.name)

    def check_precondition(self, precondition: Precondition) -> None:
        _no_generation(self, precondition)


class SecretPut(_SecretEvent, frozen=True, kw_only=True):
    """Create or replace a secret at namespace scope (worker=None) or worker scope."""

    TYPE: ClassVar[str] = "secret.put"

    sealed: SealedSecret

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.sealed, SealedSecret):
            raise InvalidEvent("sealed", "must be a SealedSecret")
        v.identifier("sealed.key_id", self.sealed.key_id)
        v.non_empty_bytes("sealed.wrapped_key", self.sealed.wrapped_key, max_len=1024)
        v.non_empty_bytes("sealed.nonce", self.sealed.nonce, max_len=64)
        v.non_empty_bytes(
            "sealed.ciphertext", self.sealed.ciphertext, max_len=MAX_SECRET_CIPHERTEXT
        )
        v.text("sealed.algorithm", self.sealed.algorithm, max_len=64)


class SecretDeleted(_SecretEvent, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "secret.deleted"


# --- hosts ----------------------------------------------------------------


class _HostEvent(BaseEvent, frozen=True, kw_only=True):
    pattern: str
    namespace: str

    def aggregate(self) -> tuple[AggregateKind, str]:
        return AggregateKind.HOST, self.pattern

    def validate(self) -> None:
        v.host_pattern("pattern", self.pattern)
        v.name("namespace", self.namespace)

    def check_precondition(self, precondition: Precondition) -> None:
        _no_generation(self, precondition)


class HostClaimed(_HostEvent, frozen=True, kw_only=True):
    """Route `pattern` (host with optional path) to a namespace.

    `exact` matches the host (and path, if given) exactly; `prefix` matches
    requests whose host+path starts with the pattern.
    """

    TYPE: ClassVar[str] = "host.claimed"

    match: HostMatch = "exact"
    worker: str | None = None
    """The worker that serves the pattern; None routes like the namespace host
    (the first path segment names the worker)."""

    def validate(self) -> None:
        super().validate()
        if self.worker is not None:
            v.name("worker", self.worker)
        if self.match not in ("exact", "prefix"):
            raise InvalidEvent("match", f"{self.match!r} is not 'exact' or 'prefix'")


class HostReleased(_HostEvent, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "host.released"


# --- owner leases ---------------------------------------------------------


class _LeaseEvent(BaseEvent, frozen=True, kw_only=True):
    scope: str
    holder: str
    generation: int

    def aggregate(self) -> tuple[AggregateKind, str]:
        return AggregateKind.LEASE, self.scope

    def validate(self) -> None:
        v.lease_scope("scope", self.scope)
        v.identifier("holder", self.holder)
        v.positive("generation", self.generation)

    def _expected_generation(self, precondition: Precondition) -> int:
        got = precondition.expected_generation
        if got is None:
            raise InvalidEvent("precondition.expected_generation", f"{self.TYPE} requires it")
        v.non_negative("precondition.expected_generation", got)
        return got

    def _require_generation(self, precondition: Precondition) -> None:
        """The lease keeps its generation: renew and release act on the current one."""
        expected = self._expected_generation(precondition)
        if self.generation != expected:
            raise InvalidEvent(
                "generation", f"{self.TYPE} must carry the expected generation {expected}"
            )

    def _require_next_generation(self, precondition: Precondition) -> None:
        """A new holder fences the previous one off by bumping the generation."""
        expected = self._expected_generation(precondition)
        if self.generation != expected + 1:
            raise InvalidEvent(
                "generation", f"{self.TYPE} must carry generation {expected + 1} (expected + 1)"
            )


class _TimedLeaseEvent(_LeaseEvent, frozen=True, kw_only=True):
    ttl_ms: int
    expires_at: int

    def validate(self) -> None:
        super().validate()
        v.positive("ttl_ms", self.ttl_ms)
        v.positive("expires_at", self.expires_at)


class LeaseAcquired(_TimedLeaseEvent, frozen=True, kw_only=True):
    """Take a free or expired lease; the generation moves to expected + 1."""

    TYPE: ClassVar[str] = "lease.acquired"
    SCHEMA_VERSION: ClassVar[int] = 2

    def check_precondition(self, precondition: Precondition) -> None:
        self._require_next_generation(precondition)


class LeaseRenewed(_TimedLeaseEvent, frozen=True, kw_only=True):
    """Extend a lease the holder still owns; the generation stays."""

    TYPE: ClassVar[str] = "lease.renewed"

    def check_precondition(self, precondition: Precondition) -> None:
        self._require_generation(precondition)


class LeaseReleased(_LeaseEvent, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "lease.released"

    def check_precondition(self, precondition: Precondition) -> None:
        self._require_generation(precondition)


class LeaseTakenOver(_TimedLeaseEvent, frozen=True, kw_only=True):
    """Forcibly take a lease that is still held; the old holder is fenced off."""

    TYPE: ClassVar[str] = "lease.taken_over"

    previous_holder: str

    def validate(self) -> None:
        super().validate()
        v.identifier("previous_holder", self.previous_holder)

    def check_precondition(self, precondition: Precondition) -> None:
        self._require_next_generation(precondition)


# --- cron runs (fenced by the scheduler's lease) ---------------------------


class _CronEvent(_LeaseEvent, frozen=True, kw_only=True):
    """A scheduler action on one slot of one trigger.

    Its aggregate is the scheduler's lease, so it lands on the lease's
    partition and the fold can check the holder's generation: a replica that
    lost its lease cannot claim or report anything (it fails closed).
    """

    namespace: str
    worker: str
    version_id: str
    cron: str
    slot_ms: int

    def validate(self) -> None:
        super().validate()
        v.name("namespace", self.namespace)
        v.name("worker", self.worker)
        v.identifier("version_id", self.version_id)
        v.cron("cron", self.cron)
        v.positive("slot_ms", self.slot_ms)

    def check_precondition(self, precondition: Precondition) -> None:
        self._require_generation(precondition)


class CronSlotClaimed(_CronEvent, frozen=True, kw_only=True):
    """The lease holder takes a slot before dispatching it: at most one claim per slot."""

    TYPE: ClassVar[str] = "cron.slot_claimed"


CronStatus = Literal["ok", "error", "timeout"]


class CronRunCompleted(_CronEvent, frozen=True, kw_only=True):
    """Outcome of a dispatched slot."""

    TYPE: ClassVar[str] = "cron.run_completed"

    status: CronStatus
    duration_ms: int
    error: str = ""

    def validate(self) -> None:
        super().validate()
        if self.status not in ("ok", "error", "timeout"):
            raise InvalidEvent("status", f"{self.status!r} is not ok, error or timeout")
        v.non_negative("duration_ms", self.duration_ms)
        v.text("error", self.error, max_len=2048, allow_empty=True)


# --- API tokens -----------------------------------------------------------


class _TokenEvent(BaseEvent, frozen=True, kw_only=True):
    token_id: str

    def aggregate(self) -> tuple[AggregateKind, str]:
        return AggregateKind.TOKEN, self.token_id

    def validate(self) -> None:
        v.identifier("token_id", self.token_id)

    def check_precondition(self, precondition: Precondition) -> None:
        _no_generation(self, precondition)


class TokenIssued(_TokenEvent, frozen=True, kw_only=True):
    """Only the sha256 of the secret token is recorded.

    An empty `namespaces` means every namespace and is allowed for admins only.
    """

    TYPE: ClassVar[str] = "token.issued"
    SCHEMA_VERSION: ClassVar[int] = 2

    token_sha256: bytes
    role: Role
    namespaces: tuple[str, ...] = ()
    label: str = ""
    expires_at: int | None = None

    def validate(self) -> None:
        super().validate()
        v.sha256_bytes("token_sha256", self.token_sha256)
        if self.role not in ("admin", "deployer", "observer"):
            raise InvalidEvent("role", f"{self.role!r} is not admin, deployer or observer")
        if not self.namespaces and self.role != "admin":
            raise InvalidEvent("namespaces", f"a {self.role} token needs at least one namespace")
        if len(set(self.namespaces)) != len(self.namespaces):
            raise InvalidEvent("namespaces", "namespaces must be unique")
        for i, ns in enumerate(self.namespaces):
            v.name(f"namespaces[{i}]", ns)
        v.text("label", self.label, max_len=256, allow_empty=True)
        if self.expires_at is not None:
            v.positive("expires_at", self.expires_at)


class TokenRevoked(_TokenEvent, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "token.revoked"

    reason: str = ""

    def validate(self) -> None:
        super().validate()
        v.text("reason", self.reason, max_len=v.REASON_MAX, allow_empty=True)


Event = (
    NamespaceCreated
    | WorkerVersionUploaded
    | VersionPromoted
    | WorkerRolledBack
    | VersionDeleted
    | WorkerDeleted
    | WorkerPurged
    | SecretPut
    | SecretDeleted
    | HostClaimed
    | HostReleased
    | LeaseAcquired
    | LeaseRenewed
    | LeaseReleased
    | LeaseTakenOver
    | TokenIssued
    | TokenRevoked
    | CronSlotClaimed
    | CronRunCompleted
)

EVENT_CLASSES: tuple[type[Event], ...] = (
    NamespaceCreated,
    WorkerVersionUploaded,
    VersionPromoted,
    WorkerRolledBack,
    VersionDeleted,
    WorkerDeleted,
    WorkerPurged,
    SecretPut,
    SecretDeleted,
    HostClaimed,
    HostReleased,
    LeaseAcquired,
    LeaseRenewed,
    LeaseReleased,
    LeaseTakenOver,
    TokenIssued,
    TokenRevoked,
    CronSlotClaimed,
    CronRunCompleted,
)

EVENT_TYPES: dict[str, type[Event]] = {cls.TYPE: cls for cls in EVENT_CLASSES}
CURRENT_VERSIONS: dict[str, int] = {cls.TYPE: cls.SCHEMA_VERSION for cls in EVENT_CLASSES}

"""Worker events (aggregate kind `worker`): versions, promotion, deletion."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar, Literal

import msgspec

from eventlog import bindings
from eventlog import validation as v
from eventlog.aggregates import AggregateKind, worker_aggregate_id
from eventlog.bindings import assets as assets_binding
from eventlog.errors import InvalidEvent
from eventlog.events.assets import VersionAssets
from eventlog.events.base import (
    MAX_BINDINGS,
    MAX_MODULES,
    MAX_VAR_BYTES,
    MAX_VARS,
    BaseEvent,
    _no_generation,
)
from eventlog.events.version_meta import MESSAGE_MAX, TAG_MAX, printable
from eventlog.precondition import Precondition

ModuleType = Literal["esm", "commonjs", "text", "data", "wasm", "json", "python"]

# Tail consumers one version may name (Cloudflare documents no limit; every one costs a
# delivery per invocation).
MAX_TAIL_CONSUMERS = 8

_ENTRY_MODULE_TYPES = frozenset({"esm", "commonjs", "python"})


class ModuleRef(msgspec.Struct, frozen=True, kw_only=True):
    """One module of an uploaded bundle, by digest; the bytes live in object storage."""

    name: str
    type: ModuleType
    sha256: str
    size: int


class Binding(msgspec.Struct, frozen=True, kw_only=True):
    """A binding in the worker's env. What `target`, `value`, `namespace` and
    `entrypoint` mean, and which a kind uses, is its spec's (eventlog/bindings/)."""

    name: str
    kind: str
    """One of eventlog.bindings.KINDS (validate() checks it)."""
    target: str = ""
    value: str = ""
    namespace: str = ""
    entrypoint: str = ""


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
    workers_dev: bool = True
    """wrangler's `workers_dev`: false takes the worker off the namespace URL while this
    version serves (it is reached at its host claims only). Added with its default: older
    events read as true, today's behaviour."""
    # Tail Workers (wrangler `tail_consumers`): workers of this same namespace whose
    # tail() gets each invocation of this version (docs/tail-workers.md). Added
    # 2026-12-07 with a default: older events decode as "none".
    tail_consumers: tuple[str, ...] = ()
    # `wdl deploy --tag/--message` (wrangler versions upload's); "" when not given.
    tag: str = ""
    message: str = ""
    # Static Assets (eventlog/events/assets.py); None for a version without (and for
    # every event written before assets existed).
    assets: VersionAssets | None = None

    def validate(self) -> None:
        super().validate()
        v.identifier("version_id", self.version_id)
        printable("tag", self.tag, TAG_MAX)
        printable("message", self.message, MESSAGE_MAX)
        v.sha256_hex("bundle_sha256", self.bundle_sha256)
        v.positive("bundle_size", self.bundle_size)
        if self.assets is not None:
            if not isinstance(self.assets, VersionAssets):
                raise InvalidEvent("assets", "must be a VersionAssets")
            self.assets.validate(has_worker=bool(self.modules))
            if not self.modules:
                # An assets-only project: no worker, nothing else to check of one.
                if self.main_module or self.bindings or self.vars or self.cron_triggers:
                    raise InvalidEvent("modules", "an assets-only version has no main "
                                       "module, bindings, vars or crons")
                v.compatibility_date("compatibility_date", self.compatibility_date)
                return
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
            if v.reserved_prefix(module.name) is not None:
                v.not_reserved(f"modules[{i}].name", module.name, "module names")
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
        assets_binding.check_version(self.bindings, self.assets.config.binding
                                     if self.assets is not None else "")
        v.crons("cron_triggers", self.cron_triggers)
        if len(self.tail_consumers) > MAX_TAIL_CONSUMERS:
            raise InvalidEvent("tail_consumers", f"more than {MAX_TAIL_CONSUMERS} tail consumers")
        for i, consumer in enumerate(self.tail_consumers):
            # A worker name, so always one of this namespace: no `ns/worker` form exists.
            v.name(f"tail_consumers[{i}]", consumer)
        if len(set(self.tail_consumers)) != len(self.tail_consumers):
            raise InvalidEvent("tail_consumers", "a tail consumer is named twice")

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
            v.not_reserved(f"{field}.name", binding.name)
            seen.add(binding.name)
            kind = bindings.spec(binding.kind)
            if kind is None:
                raise InvalidEvent(f"{field}.kind", f"unknown binding kind {binding.kind!r}")
            kind.validate(field, binding)
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


# Workers for Platforms' script tags (docs/platforms.md): Cloudflare's limit per script.
MAX_SCRIPT_TAGS = 8
SCRIPT_TAG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:=-]{0,63}")


def script_tags(field: str, tags: Sequence[object]) -> None:
    if len(tags) > MAX_SCRIPT_TAGS:
        raise InvalidEvent(field, f"at most {MAX_SCRIPT_TAGS} tags per worker")
    for i, tag in enumerate(tags):
        if not isinstance(tag, str) or SCRIPT_TAG_RE.fullmatch(tag) is None:
            raise InvalidEvent(f"{field}[{i}]", f"{tag!r} is not a tag (1-64 of A-Za-z0-9 and "
                                                "_.:=-, starting with a letter or digit)")
    if len(set(tags)) != len(tags):
        raise InvalidEvent(field, "a tag is named twice")


class WorkerTagsSet(_WorkerEvent, frozen=True, kw_only=True):
    """Replace a worker's tags (a user worker of a dispatch namespace; listed and deleted
    by tag: each delete is its own `worker.deleted`)."""

    TYPE: ClassVar[str] = "worker.tags_set"

    tags: tuple[str, ...] = ()

    def validate(self) -> None:
        super().validate()
        script_tags("tags", self.tags)


WorkerEvent = (
    WorkerVersionUploaded
    | VersionPromoted
    | WorkerRolledBack
    | VersionDeleted
    | WorkerDeleted
    | WorkerPurged
    | WorkerTagsSet
)

CLASSES: tuple[type[WorkerEvent], ...] = (
    WorkerVersionUploaded,
    VersionPromoted,
    WorkerRolledBack,
    VersionDeleted,
    WorkerDeleted,
    WorkerPurged,
    WorkerTagsSet,
)

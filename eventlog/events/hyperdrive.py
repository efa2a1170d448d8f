"""Hyperdrive configs (aggregate kind `hyperdrive`): a tenant's PostgreSQL origin behind
the platform's pooler (docs/hyperdrive.md).

What reaches the log: the config's platform-made id, the origin's host, port and
database (shown by `wdl hyperdrive get`, as on Cloudflare), and two sealed values.
The origin's connection string (its user and password) and the config's own pooler
password are envelope-encrypted before the event exists (services/crypto), bound to
`hyperdrive-origin/<id>` and `hyperdrive/<id>` of the namespace: neither a plaintext
credential nor a ciphertext that opens elsewhere is ever on the log.
"""

from __future__ import annotations

import re
from typing import ClassVar

from eventlog import validation as v
from eventlog.aggregates import AggregateKind
from eventlog.errors import InvalidEvent
from eventlog.events.resources import ResourceDeletion, ResourceEvent
from eventlog.events.secrets import SealedSecret

# Cloudflare's config ids are 32 lowercase hex digits; ours are made the same way.
CONFIG_ID_RE = re.compile(r"[0-9a-f]{32}")
# The origin's host as the pooler's config will hold it: a DNS name or an IP literal,
# nothing that could break out of a pgbouncer.ini value (no spaces, '=', quotes).
ORIGIN_HOST_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[?[0-9A-Fa-f:.]{2,45}\]?")
ORIGIN_DATABASE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")
MAX_POOL_SIZE = 100


def hyperdrive_name(field: str, value: object) -> str:
    """Config names: Cloudflare's rule for them (lowercase, digits, '-', '_')."""
    if not isinstance(value, str) or v.D1_NAME_RE.fullmatch(value) is None:
        raise InvalidEvent(field, f"{value!r} is not a Hyperdrive config name (a-z, 0-9, '_', "
                                  "'-', 1-63, starting with a letter or digit)")
    return value


def config_id(field: str, value: object) -> str:
    if not isinstance(value, str) or CONFIG_ID_RE.fullmatch(value) is None:
        raise InvalidEvent(field, f"{value!r} is not a Hyperdrive config id (32 hex digits)")
    return value


def _sealed(field: str, sealed: object) -> None:
    if not isinstance(sealed, SealedSecret):
        raise InvalidEvent(field, "must be a SealedSecret")
    v.identifier(f"{field}.key_id", sealed.key_id)
    v.non_empty_bytes(f"{field}.wrapped_key", sealed.wrapped_key, max_len=1024)
    v.non_empty_bytes(f"{field}.nonce", sealed.nonce, max_len=64)
    v.non_empty_bytes(f"{field}.ciphertext", sealed.ciphertext, max_len=4096)


class _HyperdriveEvent(ResourceEvent, frozen=True, kw_only=True):
    KIND: ClassVar[AggregateKind] = AggregateKind.HYPERDRIVE

    def validate_name(self) -> None:
        hyperdrive_name("name", self.name)


class _OriginEvent(_HyperdriveEvent, frozen=True, kw_only=True):
    config_id: str
    origin_host: str
    origin_port: int = 5432
    origin_database: str
    sealed_origin: SealedSecret
    """The origin's connection string, sealed for `hyperdrive-origin/<config_id>`."""
    pool_size: int = 0
    """Server connections of this config's pool; 0: the namespace's default."""

    def validate(self) -> None:
        super().validate()
        config_id("config_id", self.config_id)
        if not isinstance(self.origin_host, str) or \
                ORIGIN_HOST_RE.fullmatch(self.origin_host) is None:
            raise InvalidEvent("origin_host", "is not a host name or IP address")
        if not isinstance(self.origin_port, int) or isinstance(self.origin_port, bool) or \
                not 1 <= self.origin_port <= 65535:
            raise InvalidEvent("origin_port", "is not a port (1-65535)")
        if not isinstance(self.origin_database, str) or \
                ORIGIN_DATABASE_RE.fullmatch(self.origin_database) is None:
            raise InvalidEvent("origin_database", "is not a database name "
                                                  "([A-Za-z0-9_.-], 1-63)")
        if not isinstance(self.pool_size, int) or isinstance(self.pool_size, bool) or \
                not 0 <= self.pool_size <= MAX_POOL_SIZE:
            raise InvalidEvent("pool_size", f"is not an integer in [0, {MAX_POOL_SIZE}]")
        _sealed("sealed_origin", self.sealed_origin)


class HyperdriveCreated(_OriginEvent, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "hyperdrive.created"

    sealed_password: SealedSecret
    """The config's own pooler password (platform-made), sealed for `hyperdrive/<id>`."""

    def validate(self) -> None:
        super().validate()
        _sealed("sealed_password", self.sealed_password)


class HyperdriveUpdated(_OriginEvent, frozen=True, kw_only=True):
    """A new origin (and pool size) for an existing config; its id and pooler
    credentials stay, so bound workers keep working without a deploy."""

    TYPE: ClassVar[str] = "hyperdrive.updated"


class HyperdriveDeleted(ResourceDeletion, _HyperdriveEvent, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "hyperdrive.deleted"


HyperdriveEvent = HyperdriveCreated | HyperdriveUpdated | HyperdriveDeleted

CLASSES: tuple[type[HyperdriveEvent], ...] = (HyperdriveCreated, HyperdriveUpdated,
                                              HyperdriveDeleted)

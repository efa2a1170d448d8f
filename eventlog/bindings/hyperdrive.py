"""`hyperdrive`: a Hyperdrive config of the worker's namespace (docs/hyperdrive.md).

A plain value in env, as on Cloudflare: `connectionString`, `host`, `port`, `user`,
`password`, `database`. They name the platform's pooler (PgBouncer) with the config's
own credentials, never the origin's: `host` is `<config id>.hyperdrive.wdl`, which
the tenant's `connect()` egress routes to the pooler (`pooler_address`), for the
config's own namespace only. workerd's native Hyperdrive binding cannot be handed
to a loaded worker (it is not serialisable), hence a plain object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from eventlog.bindings.spec import (
    NO_VALUE,
    BindingConfigError,
    BindingLike,
    BindingSpec,
    Scope,
    string,
    table_list,
)
from eventlog.events.hyperdrive import CONFIG_ID_RE, config_id

HOST_SUFFIX = ".hyperdrive.wdl"
PORT = 5432


def pooler_user(cid: str) -> str:
    """The config's user and database at the pooler (PgBouncer's alias)."""
    return f"hd_{cid}"


def binding_host(cid: str) -> str:
    return f"{cid}{HOST_SUFFIX}"


def config_of_host(authority: str) -> str | None:
    """The config id a tenant's `connect()` authority names (`<id>.hyperdrive.wdl:5432`,
    any case), or None. The egress's hook: it routes such an authority to the pooler
    (`pooler_address`) when the id is one of the calling namespace's configs, and
    refuses it otherwise; docs/hyperdrive.md. Mirrored in workerd/gateway/pooler.js.
    """
    host, sep, port = authority.lower().rpartition(":")
    if not sep or port != str(PORT) or not host.endswith(HOST_SUFFIX):
        return None
    cid = host[: -len(HOST_SUFFIX)]
    return cid if CONFIG_ID_RE.fullmatch(cid) else None


def pooler_address(authority: str, owned: frozenset[str] | set[str],
                   pooler: str) -> str | None:
    """Where the egress dials for `authority`: the pooler's `host:port` if it names one of
    `owned` (the calling namespace's config ids), else None (not Hyperdrive, or not yours)."""
    cid = config_of_host(authority)
    return pooler if cid is not None and cid in owned else None


def binding_value(cid: str, password: str) -> dict[str, Any]:
    user = pooler_user(cid)
    host = binding_host(cid)
    return {
        # sslmode=disable: the hop to the pooler is the platform's own (loopback via the
        # egress); workerd's connect() handler path does not carry TLS (docs/hyperdrive.md).
        "connectionString": f"postgresql://{user}:{quote(password, safe='')}@{host}:{PORT}/"
                            f"{user}?sslmode=disable",
        "host": host, "port": PORT, "user": user, "password": password, "database": user,
    }


def _parse(doc: Mapping[str, Any], config: str) -> list[dict[str, str]]:
    out = []
    for i, hd in enumerate(table_list(doc, "hyperdrive", config)):
        where = f"{config}: hyperdrive[{i}]"
        binding = string(hd, "binding", where)
        cid = string(hd, "id", where).lower()
        if CONFIG_ID_RE.fullmatch(cid) is None:
            raise BindingConfigError(f"{where}: `id` must be a Hyperdrive config id (32 hex "
                                     "digits, as `wdl hyperdrive create` prints)")
        # localConnectionString is wrangler's `dev` against a local database; WDL's
        # `wdl dev` runs the real pooler, so it is refused rather than ignored.
        if "localConnectionString" in hd:
            raise BindingConfigError(f"{where}: `localConnectionString` is not supported: "
                                     "`wdl dev` serves the config itself (docs/hyperdrive.md)")
        unknown = set(hd) - {"binding", "id"}
        if unknown:
            raise BindingConfigError(f"{where}: unknown keys {sorted(unknown)}")
        out.append({"name": binding, "kind": "hyperdrive", "target": cid})
    return out


def _check(field: str, b: BindingLike) -> None:
    config_id(f"{field}.target", b.target)


def _value(_scope: Scope, b: Mapping[str, Any], _secrets: Mapping[str, str]) -> Any:
    # services/state/bundles.py hands a resource binding its record and opened value.
    record, password = b.get("resource"), b.get("opened")
    if not isinstance(record, Mapping) or not isinstance(password, str):
        return NO_VALUE  # deleted since (forced): absent from env, like a deleted secret
    return binding_value(str(record["config_id"]), password)


SPEC = BindingSpec(
    kind="hyperdrive", label="Hyperdrive config", check=_check, uses=frozenset({"target"}),
    doc="target: the Hyperdrive config's id", wrangler_keys=("hyperdrive",), parse=_parse,
    resource=True, value=_value)

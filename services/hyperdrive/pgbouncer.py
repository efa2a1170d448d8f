"""PgBouncer's files, rendered from the projected Hyperdrive configs (pure functions).

- `[databases]`: one alias `hd_<id>` per config, pointing at its origin with the
  origin's credentials (they live in pgbouncer.ini only, mode 0600);
- `auth_file`: each config's own user `hd_<id>` and its platform-made password;
- `auth_hba_file`: `auth_type = hba` pins each config user to its own alias (md5:
  `CLIENT_AUTH`), so
  config A's credentials are `login rejected` for config B's database, and the
  origin's credentials are rejected at the pooler;
- pool sizes: a config's `pool_size` (else the per-config default), bounded by its
  share of the namespace's `hyperdrive_connections` (`max_db_connections`): the
  namespace's configs together never hold more origin connections than that.

Session mode: PgBouncer 1.18 (Debian bookworm) has no `max_prepared_statements`, and
in transaction mode `pg`'s named statements break across tenant requests
(docs/hyperdrive.md). Every value written was allow-listed when the config was made
(eventlog/events/hyperdrive.py, services/hyperdrive/origin.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from eventlog.bindings.hyperdrive import pooler_user
from services.hyperdrive.origin import Origin

ADMIN_USER = "wdl_pooler_admin"
# How a tenant's connection logs in as its config's user: md5, not scram-sha-256. The
# password is 192 random bits made by the platform and the hop is the platform's own
# (loopback, through the egress), so SCRAM's iterated hashing protects nothing more,
# while the tenant's isolate and PgBouncer pay its 4096 PBKDF2 rounds on every
# connection - and a Worker connects once per request: about half of a request's
# connection setup (docs/hyperdrive.md "Measured"). A SCRAM verifier with fewer rounds
# in auth_file is what PgBouncer 1.18 cannot do here: it then logs in to the origin
# with the client's SCRAM keys (pass-through) instead of the origin's password.
CLIENT_AUTH = "md5"


@dataclass(frozen=True, repr=False)
class PoolConfig:
    """One config as the pooler needs it: opened credentials, never logged."""

    config_id: str
    namespace: str
    origin: Origin
    password: str
    pool_size: int = 0

    def __repr__(self) -> str:
        return f"PoolConfig({self.namespace}/{self.config_id})"


@dataclass(frozen=True)
class PoolerSettings:
    listen_host: str
    listen_port: int
    workdir: str
    admin_password: str
    clients: str = "127.0.0.1/32"
    """Where tenants' connections come from (the egress): hba's address column."""
    default_pool_size: int = 5
    namespace_connections: int = 20
    """A namespace's configs' origin connections together, unless its limits say."""
    max_client_conn: int = 1000


@dataclass(frozen=True)
class Rendered:
    ini: str
    users: str
    hba: str


def _q(value: str) -> str:
    # Values were allow-listed (no quote, backslash or space); quoted all the same.
    return "'" + value + "'"


def pool_sizes(configs: Sequence[PoolConfig], limits: Mapping[str, int],
               settings: PoolerSettings) -> dict[str, tuple[int, int]]:
    """config id -> (pool_size, max_db_connections)."""
    per_ns: dict[str, int] = {}
    for c in configs:
        per_ns[c.namespace] = per_ns.get(c.namespace, 0) + 1
    out = {}
    for c in configs:
        cap = limits.get(c.namespace) or settings.namespace_connections
        share = max(1, cap // per_ns[c.namespace])
        size = min(c.pool_size or settings.default_pool_size, share)
        out[c.config_id] = (size, share)
    return out


def listen_addresses(listen_host: str) -> str:
    """`listen_addr`: the configured host, plus loopback when it is one non-loopback
    address: the component reads the admin console (metrics) from 127.0.0.1, the only
    address hba admits its admin user from."""
    if listen_host in ("0.0.0.0", "*", "127.0.0.1", "localhost"):
        return listen_host
    return f"{listen_host},127.0.0.1"


def render(configs: Sequence[PoolConfig], limits: Mapping[str, int],
           settings: PoolerSettings) -> Rendered:
    configs = sorted(configs, key=lambda c: c.config_id)
    sizes = pool_sizes(configs, limits, settings)
    w = settings.workdir
    lines = ["; written by the Hyperdrive service (services/hyperdrive): do not edit",
             "[databases]"]
    for c in configs:
        o = c.origin
        size, share = sizes[c.config_id]
        lines.append(f"{pooler_user(c.config_id)} = host={o.host} port={o.port} "
                     f"dbname={o.database} user={o.user} password={_q(o.password)} "
                     f"pool_size={size} max_db_connections={share}")
    lines += [
        "", "[pgbouncer]",
        f"listen_addr = {listen_addresses(settings.listen_host)}",
        f"listen_port = {settings.listen_port}",
        "unix_socket_dir =",
        "auth_type = hba",
        f"auth_hba_file = {w}/hba.conf",
        f"auth_file = {w}/userlist.txt",
        "pool_mode = session",
        f"max_client_conn = {settings.max_client_conn}",
        f"default_pool_size = {settings.default_pool_size}",
        # postgres.js and pg send these at startup; PgBouncer refuses unknown ones.
        "ignore_startup_parameters = extra_float_digits,options",
        f"admin_users = {ADMIN_USER}",
        f"stats_users = {ADMIN_USER}",
        # A tenant connection lives for one request; one left open (waitUntil) must not
        # hold a server connection for ever, nor a queued client wait for ever.
        "client_idle_timeout = 60",
        "query_wait_timeout = 30",
        "server_idle_timeout = 60",
        f"logfile = {w}/pgbouncer.log",
        f"pidfile = {w}/pgbouncer.pid",
        "",
    ]
    users = [f'"{ADMIN_USER}" "{settings.admin_password}"']
    hba = ["# TYPE DATABASE USER ADDRESS METHOD: each config user reaches its own alias only",
           f"host pgbouncer {ADMIN_USER} 127.0.0.1/32 scram-sha-256"]
    for c in configs:
        user = pooler_user(c.config_id)
        users.append(f'"{user}" "{c.password}"')
        hba.append(f"host {user} {user} {settings.clients} {CLIENT_AUTH}")
    return Rendered(ini="\n".join(lines), users="\n".join(users) + "\n",
                    hba="\n".join(hba) + "\n")

"""Hyperdrive's pure parts: events, the fold, the wrangler key, the origin parser, the
pooler's rendered files and the egress's host mapping (docs/hyperdrive.md)."""

from __future__ import annotations

import json

import msgspec
import pytest

from eventlog import events as ev
from eventlog.bindings import BindingConfigError, read_wrangler
from eventlog.bindings.hyperdrive import (
    binding_value,
    config_of_host,
    pooler_address,
)
from eventlog.codec import decode, encode
from eventlog.envelope import Envelope
from eventlog.errors import InvalidEvent
from projections import keys
from services.hyperdrive.origin import OriginError, parse_origin
from services.hyperdrive.pgbouncer import PoolConfig, PoolerSettings, render
from tests.eventlog_samples import sealed
from tests.factories import upload
from tests.unit.test_fold import Harness, accepted

pytestmark = pytest.mark.unit

A = "a" * 32
B = "b" * 32


def created(ns: str = "acme", name: str = "main", cid: str = A) -> ev.HyperdriveCreated:
    return ev.HyperdriveCreated(namespace=ns, name=name, config_id=cid, origin_host="db.internal",
                                origin_port=5432, origin_database="app",
                                sealed_origin=sealed(), sealed_password=sealed())


def bound(version: str, cid: str) -> ev.WorkerVersionUploaded:
    return msgspec.structs.replace(upload("acme", "api", version), bindings=(
        ev.Binding(name="HYPERDRIVE", kind="hyperdrive", target=cid),))


def harness() -> Harness:
    h = Harness()
    assert accepted(h.send(ev.NamespaceCreated(namespace="acme")))
    assert accepted(h.send(ev.NamespaceCreated(namespace="other")))
    return h


# --- events -----------------------------------------------------------------------

def test_events_round_trip_and_old_limits_decode() -> None:
    for event in (created(), ev.HyperdriveUpdated(
            namespace="acme", name="main", config_id=A, origin_host="10.0.0.5",
            origin_database="app", pool_size=4, sealed_origin=sealed()),
                  ev.HyperdriveDeleted(namespace="acme", name="main", force=True)):
        env = Envelope.new(event, actor="user:alice", occurred_at=1)
        assert decode(encode(env)).payload == event
    # A limits event written before `hyperdrive_connections` existed decodes as 0.
    old = msgspec.json.decode(b'{"namespace":"acme","wall_ms":5}', type=ev.NamespaceLimitsSet)
    assert old.hyperdrive_connections == 0


@pytest.mark.parametrize("field,value", [
    ("name", "Main"), ("name", "../x"), ("config_id", "A" * 32), ("config_id", "a" * 31),
    ("origin_host", "db internal"), ("origin_host", "db'host"), ("origin_host", "h\nx=1"),
    ("origin_port", 0), ("origin_port", 70000), ("origin_database", "a b"),
    ("origin_database", "x=1"), ("pool_size", 101), ("pool_size", -1),
])
def test_events_refuse_values_that_could_break_the_pooler_config(field: str,
                                                                  value: object) -> None:
    event = msgspec.structs.replace(created(), **{field: value})
    with pytest.raises(InvalidEvent):
        event.validate()


# --- fold -------------------------------------------------------------------------

def test_fold_renders_by_id_without_plaintext_and_binds_by_id() -> None:
    h = harness()
    assert accepted(h.send(created()))
    doc = h.get(keys.resources("hyperdrive", "acme"), A)
    assert isinstance(doc, dict) and doc["name"] == "main" and doc["origin_host"] == "db.internal"
    assert h.get(keys.HYPERDRIVE, A) == doc
    assert accepted(h.send(bound("v1", A)))
    assert h.send(bound("v2", B)).code == "binding_target_missing"
    # The name is not the binding's target: wrangler binds the id.
    named = msgspec.structs.replace(upload("acme", "api", "v3"), bindings=(
        ev.Binding(name="H", kind="hyperdrive", target="main"),))
    with pytest.raises(InvalidEvent):
        named.validate()


def test_fold_names_unique_ids_unique_and_namespaces_apart() -> None:
    h = harness()
    assert accepted(h.send(created()))
    assert h.send(created(cid=B)).code == "resource_exists"
    assert h.send(created(name="second")).code == "config_id_in_use"
    # Another namespace's config id is not this namespace's resource.
    assert accepted(h.send(created(ns="other", name="theirs", cid=B)))
    assert h.send(bound("v1", B)).code == "binding_target_missing"


def test_fold_update_keeps_id_and_password_delete_checks_use() -> None:
    h = harness()
    assert accepted(h.send(created()))
    before = h.get(keys.HYPERDRIVE, A)
    assert isinstance(before, dict)
    upd = ev.HyperdriveUpdated(namespace="acme", name="main", config_id=A,
                               origin_host="10.1.2.3", origin_port=6543,
                               origin_database="other", pool_size=2, sealed_origin=sealed())
    assert accepted(h.send(upd))
    after = h.get(keys.HYPERDRIVE, A)
    assert isinstance(after, dict)
    assert after["origin_port"] == 6543 and after["pool_size"] == 2
    assert after["sealed_password"] == before["sealed_password"]
    wrong = msgspec.structs.replace(upd, config_id=B)
    assert h.send(wrong).code == "config_id_mismatch"
    assert accepted(h.send(bound("v1", A)))
    assert accepted(h.send(ev.VersionPromoted(namespace="acme", worker="api", version_id="v1")))
    gone = ev.HyperdriveDeleted(namespace="acme", name="main")
    assert h.send(gone).code == "resource_in_use"
    assert accepted(h.send(msgspec.structs.replace(gone, force=True)))
    assert h.get(keys.HYPERDRIVE, A) is None
    assert h.get(keys.resources("hyperdrive", "acme"), A) is None
    assert h.send(gone).code == "resource_not_found"


def test_fold_needs_the_namespace() -> None:
    h = Harness()
    assert h.send(created()).code == "namespace_missing"


# --- wrangler ---------------------------------------------------------------------

def test_wrangler_hyperdrive_is_read_and_checked() -> None:
    doc = {"hyperdrive": [{"binding": "HYPERDRIVE", "id": A.upper()}]}
    assert read_wrangler(doc, "wrangler.toml") == [
        {"name": "HYPERDRIVE", "kind": "hyperdrive", "target": A}]
    for bad in ({"binding": "H", "id": "main"}, {"binding": "H"},
                {"binding": "H", "id": A, "localConnectionString": "postgres://x"},
                {"binding": "H", "id": A, "caching": {}}):
        with pytest.raises(BindingConfigError):
            read_wrangler({"hyperdrive": [bad]}, "wrangler.toml")


def test_wrangler_key_is_served() -> None:
    from cli.wrangler import UNSUPPORTED_KEYS

    assert "hyperdrive" not in UNSUPPORTED_KEYS


# --- origin -----------------------------------------------------------------------

def test_origin_parsed_and_never_echoed() -> None:
    o = parse_origin("postgres://app_user:s3cr%21t@db.internal:6543/app")
    assert (o.user, o.password, o.host, o.port, o.database) == (
        "app_user", "s3cr!t", "db.internal", 6543, "app")
    assert "s3cr" not in repr(o)
    secret = "pa ss'word"
    with pytest.raises(OriginError) as info:
        parse_origin(f"postgres://u:{secret}@h/d")
    assert secret not in str(info.value)


@pytest.mark.parametrize("text", [
    "mysql://u:p@h/d", "postgres://u:p@h/d?sslmode=require", "postgres://u:p@/d",
    "postgres://u:p@h:99999/d", "postgres://:p@h/d", "postgres://u:p@h/",
    "postgres://u:p@h/d%20x", "postgres://u:p'x@h/d", "postgres://u:p%5Cx@h/d",
    "postgres://u%20x:p@h/d", "x" * 3000,
])
def test_origin_refusals(text: str) -> None:
    with pytest.raises(OriginError):
        parse_origin(text)


# --- the pooler's files -----------------------------------------------------------

def _cfg(cid: str, ns: str, pool: int = 0) -> PoolConfig:
    return PoolConfig(config_id=cid, namespace=ns, origin=parse_origin(
        f"postgres://origin_{ns}:pw{ns}@127.0.0.1:5432/db{ns}"), password=f"client-{cid[:4]}",
        pool_size=pool)


def test_render_one_alias_per_config_hba_pins_users_and_pools_bounded() -> None:
    settings = PoolerSettings("127.0.0.1", 6432, "/run/x", "adminpw", default_pool_size=5,
                              namespace_connections=6)
    c = "c" * 32
    r = render([_cfg(A, "acme", pool=10), _cfg(B, "acme"), _cfg(c, "other")],
               {"other": 2}, settings)
    assert f"hd_{A} = host=127.0.0.1 port=5432 dbname=dbacme user=origin_acme " \
           f"password='pwacme' pool_size=3 max_db_connections=3" in r.ini
    assert f"hd_{c} = " in r.ini and "pool_size=2 max_db_connections=2" in r.ini
    assert "pool_mode = session" in r.ini and "auth_type = hba" in r.ini
    assert f'"hd_{A}" "client-aaaa"' in r.users
    assert "origin_acme" not in r.users and "pwacme" not in r.users
    assert f"host hd_{A} hd_{A} 127.0.0.1/32 md5" in r.hba.splitlines()
    assert all(line.split()[1] == line.split()[2] for line in r.hba.splitlines()
               if line.startswith("host hd_"))


def test_binding_value_and_host_mapping() -> None:
    value = binding_value(A, "pw-x/y")
    assert value["host"] == f"{A}.hyperdrive.wdl" and value["port"] == 5432
    assert value["user"] == value["database"] == f"hd_{A}"
    assert value["connectionString"] == (f"postgresql://hd_{A}:pw-x%2Fy@{A}.hyperdrive.wdl:5432/"
                                         f"hd_{A}?sslmode=disable")
    assert config_of_host(f"{A}.hyperdrive.wdl:5432") == A
    assert config_of_host(f"{A.upper()}.HYPERDRIVE.WDL:5432") == A
    for other in (f"{A}.hyperdrive.wdl:5433", f"{A}.hyperdrive.wdl", f"x{A}.hyperdrive.wdl:5432",
                  f"{A}.hyperdrive.wdl.evil.com:5432", "127.0.0.1:5432", f"{A[:31]}.hyperdrive"
                  ".wdl:5432"):
        assert config_of_host(other) is None
    assert pooler_address(f"{A}.hyperdrive.wdl:5432", {A}, "127.0.0.1:26432") == \
        "127.0.0.1:26432"
    assert pooler_address(f"{A}.hyperdrive.wdl:5432", {B}, "127.0.0.1:26432") is None


def test_audit_rows_keep_only_which_key_sealed() -> None:
    from projections.fold.audit import _audit_payload
    from tests.eventlog_samples import every_event

    for event, _ in every_event():
        text = _audit_payload(event)
        assert "ciphertext" not in text and "wrapped_key" not in text, event.TYPE
    row = json.loads(_audit_payload(created()))
    assert row["sealed_origin"] == row["sealed_password"] == {
        "key_id": "root-2026-01", "algorithm": "AES-256-GCM"}
    assert row["origin_host"] == "db.internal"


def test_the_gateways_mapping_agrees_with_pythons() -> None:
    """workerd/gateway/pooler.js (what the egress imports) decides as config_of_host."""
    import subprocess
    from pathlib import Path

    module = Path(__file__).resolve().parents[2] / "workerd" / "gateway" / "pooler.js"
    cases = [f"{A}.hyperdrive.wdl:5432", f"{A.upper()}.Hyperdrive.WDL:5432",
             f"{A}.hyperdrive.wdl:5433", f"{A}.hyperdrive.wdl", f"x{A}.hyperdrive.wdl:5432",
             f"{A}.hyperdrive.wdl.evil.com:5432", "127.0.0.1:5432", f"{A[:31]}.hyperdrive.wdl:5432",
             f"{B}.hyperdrive.wdl:5432", f"[{A}.hyperdrive.wdl]:5432", ""]
    script = (f"import {{ hyperdriveConfigOf, poolerAddress }} from {json.dumps(str(module))};"
              f"const cases = {json.dumps(cases)};"
              "console.log(JSON.stringify(cases.map(c => [hyperdriveConfigOf(c), "
              f"poolerAddress(c, new Set([{json.dumps(A)}]), '127.0.0.1:26432')])));")
    out = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True,
                         text=True, check=True, timeout=30)
    assert json.loads(out.stdout) == [
        [config_of_host(c), pooler_address(c, {A}, "127.0.0.1:26432")] for c in cases]

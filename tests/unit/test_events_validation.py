"""Bad input is refused when the envelope is built, before anything is written."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from eventlog import (
    Binding,
    Envelope,
    HostClaimed,
    InvalidEvent,
    LeaseAcquired,
    LeaseRenewed,
    LeaseTakenOver,
    ModuleRef,
    NamespaceCreated,
    SecretPut,
    TokenIssued,
    VersionPromoted,
)
from tests.eventlog_samples import T0, digest, envelope, sealed, upload

pytestmark = pytest.mark.unit


def refused(build: Callable[[], Any], field: str) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        env = build()
        if not isinstance(env, Envelope):
            Envelope.new(env, actor="t")
    assert info.value.field.startswith(field), info.value
    assert info.value.code == "invalid_event"
    return info.value


@pytest.mark.parametrize(
    "name",
    ["", "Acme", "-acme", "acme-", "a_b", "a" * 64, "acme.corp", "ümlaut", "a/b", " acme"],
)
def test_bad_namespace_names(name: str) -> None:
    refused(lambda: NamespaceCreated(namespace=name), "namespace")


@pytest.mark.parametrize("name", ["a", "acme", "a-b-c", "x1", "a" * 63, "0day"])
def test_good_namespace_names(name: str) -> None:
    Envelope.new(NamespaceCreated(namespace=name), actor="t")


def test_bad_worker_name() -> None:
    refused(lambda: VersionPromoted(namespace="acme", worker="API", version_id="v1"), "worker")


@pytest.mark.parametrize("expr", ["", "* * *", "61 * * * *", "*/5 * * * * * * *", "every day",
                                  "* * * * * *", "* * * * * * *", "0 0 * * 0", "@daily"])
def test_bad_cron(expr: str) -> None:
    refused(lambda: msgspec.structs.replace(upload(), cron_triggers=(expr,)), "cron_triggers")


def test_duplicate_cron() -> None:
    event = msgspec.structs.replace(upload(), cron_triggers=("* * * * *", "* * * * *"))
    refused(lambda: event, "cron_triggers")


@pytest.mark.parametrize("date", ["2025-13-01", "2025-02-30", "25-01-01", "2025/01/01", ""])
def test_bad_compatibility_date(date: str) -> None:
    refused(
        lambda: msgspec.structs.replace(upload(), compatibility_date=date), "compatibility_date"
    )


def test_main_module_must_be_an_uploaded_entry_module() -> None:
    refused(lambda: msgspec.structs.replace(upload(), main_module="missing.js"), "main_module")
    refused(lambda: msgspec.structs.replace(upload(), main_module="data.bin"), "main_module")


def test_modules_are_digests_not_bytes() -> None:
    bad = ModuleRef(name="index.js", type="esm", sha256="sha256:abc", size=1)
    refused(lambda: msgspec.structs.replace(upload(), modules=(bad,)), "modules[0].sha256")
    refused(lambda: msgspec.structs.replace(upload(), bundle_sha256=digest("x").upper()), "bundle")
    refused(lambda: msgspec.structs.replace(upload(), modules=()), "modules")


def test_bindings_are_checked() -> None:
    clash = Binding(name="GREETING", kind="text", value="x")
    refused(lambda: msgspec.structs.replace(upload(), bindings=(clash,)), "bindings[0].name")
    bad_json = Binding(name="CFG", kind="json", value="{nope")
    refused(lambda: msgspec.structs.replace(upload(), bindings=(bad_json,)), "bindings[0].value")
    bad_service = Binding(name="SVC", kind="service", target="Not_A_Worker")
    refused(lambda: msgspec.structs.replace(upload(), bindings=(bad_service,)), "bindings[0]")


def test_secret_needs_ciphertext_envelope() -> None:
    empty = msgspec.structs.replace(sealed(), ciphertext=b"")
    refused(lambda: SecretPut(namespace="acme", name="K", sealed=empty), "sealed.ciphertext")
    refused(lambda: SecretPut(namespace="acme", name="1BAD", sealed=sealed()), "name")


@pytest.mark.parametrize(
    "pattern", ["", "Acme.example", "acme..example", "-a.example", "a.example/ sp", "*.example"]
)
def test_bad_host_patterns(pattern: str) -> None:
    refused(lambda: HostClaimed(pattern=pattern, namespace="acme"), "pattern")


@pytest.mark.parametrize("pattern", [
    "127.0.0.1", "0.0.0.0", "127.1", "2130706433", "0x7f000001", "0x7f.0.0.1", "0177.0.0.1",
    "127.0.0.1/admin", "10.0.0.1", "1.2.3.0x", "localhost", "localhost/x", "gateway.localhost",
    "localhost.localdomain", "printer.local", "workers.local", "acme.workers.local",
    "metadata.google.internal", "router.home.arpa", "1.0.0.127.in-addr.arpa", "gateway",
    "x.onion", "nas.lan", "a.invalid", "a.corp", "a.home", "a.intranet", "a.private", "a.alt",
])
def test_platform_and_local_names_are_no_tenants_hosts(pattern: str) -> None:
    with pytest.raises(InvalidEvent, match="belongs to no tenant") as caught:
        HostClaimed(pattern=pattern, namespace="acme").validate()
    assert caught.value.field == "pattern"


@pytest.mark.parametrize("pattern", [
    "www.example.test", "vault.victim.test/login", "api.acme.example", "example.com",
    "xn--bcher-kva.example", "1.2.3.example.com", "127-0-0-1.example.com", "local.example.com",
    "localhost.example.com", "a.testing",
])
def test_dns_names_are_claimable(pattern: str) -> None:
    HostClaimed(pattern=pattern, namespace="acme").validate()


def test_token_rules() -> None:
    def token(**changes: Any) -> TokenIssued:
        base = TokenIssued(
            token_id="t1", token_sha256=bytes(32), role="observer", namespaces=("a",)
        )
        return msgspec.structs.replace(base, **changes)

    refused(lambda: token(token_sha256=b"short"), "token_sha256")
    refused(lambda: token(role="root"), "role")
    refused(lambda: token(namespaces=()), "namespaces")
    Envelope.new(token(role="admin", namespaces=()), actor="t")


def lease(cls: type[Any], generation: int, **extra: Any) -> Any:
    return cls(
        scope="cron/acme",
        holder="h1",
        generation=generation,
        ttl_ms=1000,
        expires_at=T0 + 1000,
        **extra,
    )


def test_lease_generations_must_follow_the_precondition() -> None:
    envelope(lease(LeaseAcquired, 1), {"expected_generation": 0})
    refused(lambda: envelope(lease(LeaseAcquired, 1)), "precondition.expected_generation")
    refused(lambda: envelope(lease(LeaseAcquired, 5), {"expected_generation": 0}), "generation")
    envelope(lease(LeaseRenewed, 4), {"expected_generation": 4})
    refused(lambda: envelope(lease(LeaseRenewed, 5), {"expected_generation": 4}), "generation")
    taken = lease(LeaseTakenOver, 3, previous_holder="h0")
    envelope(taken, {"expected_generation": 2})
    refused(lambda: envelope(taken, {"expected_generation": 3}), "generation")


def test_generation_precondition_only_on_leases() -> None:
    refused(
        lambda: envelope(NamespaceCreated(namespace="a"), {"expected_generation": 1}),
        "precondition.expected_generation",
    )


def test_envelope_rules() -> None:
    ns = NamespaceCreated(namespace="acme")
    refused(lambda: Envelope.new(ns, actor=""), "actor")
    refused(lambda: Envelope.new(ns, actor="t", expected_version=-1), "precondition")
    refused(lambda: Envelope.new(ns, actor="t", occurred_at=0), "occurred_at")
    good = Envelope.new(ns, actor="t")
    refused(lambda: msgspec.structs.replace(good, type="worker.deleted").validate(), "type")
    refused(lambda: msgspec.structs.replace(good, aggregate_id="x").validate(), "aggregate_id")
    refused(lambda: msgspec.structs.replace(good, schema_version=0).validate(), "schema_version")


def test_invalid_event_is_machine_readable() -> None:
    error = refused(lambda: NamespaceCreated(namespace="BAD"), "namespace")
    assert error.as_dict() == {
        "code": "invalid_event",
        "message": error.message,
        "field": "namespace",
        "reason": error.reason,
    }


def test_appends_skip_revalidation_only_for_envelopes_built_by_new() -> None:
    from eventlog import envelope as envelope_module
    from eventlog.codec import DEFAULT_CODEC

    checked: list[Envelope] = []

    class Counting(Envelope, frozen=True, kw_only=True):
        def validate(self) -> None:
            checked.append(self)
            super().validate()

    good = Counting.new(NamespaceCreated(namespace="acme"), actor="t")
    checked.clear()
    good.validated()
    assert checked == []  # `new` validated this very object a moment ago
    # Anything else is checked again: direct construction, replace, the wire.
    forged = msgspec.structs.replace(good, actor="")
    with pytest.raises(InvalidEvent):
        forged.validated()
    assert checked == [forged]
    decoded = DEFAULT_CODEC.decode(DEFAULT_CODEC.encode(good))
    assert id(decoded) not in envelope_module._validated


RESERVED = ["__WDL_BINDINGS", "__WDL_DO", "__wdl_x", "__Wdl", "_wdl_meta", "_WDL_X", "_cf_KV",
            "_CF_X"]


def reserved(build: Callable[[], Any], field: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        Envelope.new(build(), actor="t")
    assert info.value.field.startswith(field), info.value
    assert info.value.code == "reserved_name"
    assert "reserved for the platform" in info.value.message


@pytest.mark.parametrize("name", RESERVED)
def test_reserved_prefixes_are_refused_in_every_tenant_name(name: str) -> None:
    base = upload()
    reserved(lambda: SecretPut(namespace="acme", name=name, sealed=sealed()), "name")
    reserved(lambda: SecretPut(namespace="acme", worker="api", name=name, sealed=sealed()),
             "name")
    reserved(lambda: msgspec.structs.replace(base, vars={name: "x"}), f"vars.{name}")
    for kind, target in (("text", ""), ("json", ""), ("kv", "cache"), ("r2", "files"),
                         ("d1", "db"), ("worker_loader", ""), ("service", "auth")):
        binding = Binding(name=name, kind=kind, target=target,
                          value="1" if kind == "json" else "")
        with_binding = msgspec.structs.replace(base, bindings=(binding,))
        reserved(functools.partial(lambda event: event, with_binding), "bindings[0].name")
    secret_ref = Binding(name="S", kind="secret", target=name)
    reserved(lambda: msgspec.structs.replace(base, bindings=(secret_ref,)), "bindings[0].target")
    entry = Binding(name="SVC", kind="service", target="auth", entrypoint=name)
    reserved(lambda: msgspec.structs.replace(base, bindings=(entry,)), "bindings[0].entrypoint")
    obj = Binding(name="OBJ", kind="durable_object", target=name)
    reserved(lambda: msgspec.structs.replace(base, bindings=(obj,)), "bindings[0].target")
    module = ModuleRef(name=f"{name}/x.js", type="esm", sha256=digest("x"), size=1)
    reserved(lambda: msgspec.structs.replace(base, modules=(*base.modules, module)),
             "modules[2].name")


@pytest.mark.parametrize("name", ["WDL", "CF_TOKEN", "_WDL", "__CF_X", "MY__WDL", "_cfx",
                                  "_wdlx"])
def test_names_near_the_reserved_prefixes_are_fine(name: str) -> None:
    Envelope.new(SecretPut(namespace="acme", name=name, sealed=sealed()), actor="t")
    Envelope.new(msgspec.structs.replace(upload(), vars={name: "x"}), actor="t")


def test_resource_names_cannot_take_a_reserved_prefix() -> None:
    # KV, R2, D1 and queue names start with a letter or digit: no reserved prefix fits.
    from eventlog.validation import bucket_name, d1_name, kv_name, queue_name
    for check in (kv_name, bucket_name, d1_name, queue_name):
        for name in ("__wdl", "_wdl_x", "_cf_x"):
            with pytest.raises(InvalidEvent):
                check("name", name)

"""Tenant resources, binding targets and namespace policies in the fold."""

from __future__ import annotations

import msgspec

from eventlog import events as ev
from projections import keys
from tests.factories import upload
from tests.unit.test_fold import Harness, accepted


def bound(version: str, *bindings: ev.Binding) -> ev.WorkerVersionUploaded:
    return msgspec.structs.replace(upload("acme", "api", version), bindings=bindings)


KV = ev.Binding(name="CACHE", kind="kv", target="cache")
R2 = ev.Binding(name="ASSETS", kind="r2", target="assets")


def with_namespace() -> Harness:
    h = Harness()
    assert accepted(h.send(ev.NamespaceCreated(namespace="acme")))
    return h


def test_resource_created_once_and_rendered() -> None:
    h = with_namespace()
    assert accepted(h.send(ev.KvNamespaceCreated(namespace="acme", name="cache")))
    again = h.send(ev.KvNamespaceCreated(namespace="acme", name="cache"))
    assert (again.accepted, again.code) == (False, "resource_exists")
    doc = h.get(keys.resources("kv", "acme"), "cache")
    assert isinstance(doc, dict) and doc["version"] == 1 and doc["created_by"] == "tester"
    # Same name, another kind: a different resource.
    assert accepted(h.send(ev.R2BucketCreated(namespace="acme", name="cache")))


def test_resource_needs_its_namespace() -> None:
    h = Harness()
    verdict = h.send(ev.KvNamespaceCreated(namespace="acme", name="cache"))
    assert verdict.code == "namespace_missing"


def test_upload_refuses_a_binding_to_a_missing_resource() -> None:
    h = with_namespace()
    verdict = h.send(bound("v1", KV))
    assert (verdict.accepted, verdict.code) == (False, "binding_target_missing")
    assert "cache" in verdict.message
    assert h.get(keys.versions("acme", "api"), "v1") is None
    h.send(ev.KvNamespaceCreated(namespace="acme", name="cache"))
    assert h.send(bound("v1", KV, R2)).code == "binding_target_missing"
    h.send(ev.R2BucketCreated(namespace="acme", name="assets"))
    assert accepted(h.send(bound("v1", KV, R2)))


def test_resources_of_another_namespace_do_not_count() -> None:
    h = with_namespace()
    h.send(ev.NamespaceCreated(namespace="other"))
    h.send(ev.KvNamespaceCreated(namespace="other", name="cache"))
    assert h.send(bound("v1", KV)).code == "binding_target_missing"


def test_delete_in_use_is_refused_unless_forced() -> None:
    h = with_namespace()
    h.send(ev.KvNamespaceCreated(namespace="acme", name="cache"))
    assert accepted(h.send(bound("v1", KV)))
    # Uploaded but not active: not in use.
    in_use = h.send(ev.KvNamespaceDeleted(namespace="acme", name="cache"))
    assert accepted(in_use)
    h.send(ev.KvNamespaceCreated(namespace="acme", name="cache"))
    assert accepted(h.send(ev.VersionPromoted(namespace="acme", worker="api", version_id="v1")))
    refused = h.send(ev.KvNamespaceDeleted(namespace="acme", name="cache"))
    assert (refused.accepted, refused.code) == (False, "resource_in_use")
    assert "api" in refused.message
    assert h.get(keys.resources("kv", "acme"), "cache") is not None
    assert accepted(h.send(ev.KvNamespaceDeleted(namespace="acme", name="cache", force=True)))
    assert h.get(keys.resources("kv", "acme"), "cache") is None
    missing = h.send(ev.KvNamespaceDeleted(namespace="acme", name="cache"))
    assert missing.code == "resource_not_found"


def test_promote_refuses_a_version_whose_resource_was_deleted() -> None:
    h = with_namespace()
    h.send(ev.R2BucketCreated(namespace="acme", name="assets"))
    h.send(bound("v1", R2))
    h.send(ev.R2BucketDeleted(namespace="acme", name="assets"))
    verdict = h.send(ev.VersionPromoted(namespace="acme", worker="api", version_id="v1"))
    assert verdict.code == "binding_target_missing"


def test_resource_versions_are_preconditions() -> None:
    h = with_namespace()
    h.send(ev.KvNamespaceCreated(namespace="acme", name="cache"), expected_version=0)
    stale = h.send(ev.KvNamespaceDeleted(namespace="acme", name="cache"), expected_version=0)
    assert stale.code == "stale_version"
    assert accepted(h.send(ev.KvNamespaceDeleted(namespace="acme", name="cache"),
                           expected_version=1))


def test_egress_policy_and_grants_render_into_the_namespace_record() -> None:
    h = with_namespace()
    plain = h.get(keys.NAMESPACES, "acme")
    assert isinstance(plain, dict) and "egress" not in plain and "grants" not in plain
    rule = ev.EgressRule(host="api.example.com", ports=(443,))
    assert accepted(h.send(ev.EgressPolicySet(namespace="acme", mode="allow", allow=(rule,))))
    assert accepted(h.send(ev.ServiceGranted(namespace="acme", grantee="partner")))
    assert h.send(ev.ServiceGranted(namespace="acme", grantee="partner")).code == "grant_exists"
    doc = h.get(keys.NAMESPACES, "acme")
    assert isinstance(doc, dict)
    assert doc["egress"] == {"mode": "allow",
                             "allow": [{"host": "api.example.com", "ports": [443]}]}
    assert doc["grants"] == [{"namespace": "partner", "worker": "*"}]
    assert doc["version"] == 3
    assert accepted(h.send(ev.ServiceRevoked(namespace="acme", grantee="partner")))
    assert h.send(ev.ServiceRevoked(namespace="acme", grantee="partner")).code == "grant_missing"
    doc = h.get(keys.NAMESPACES, "acme")
    assert isinstance(doc, dict) and "grants" not in doc


def test_revoking_every_grant_leaves_none_behind() -> None:
    h = with_namespace()
    for worker in ("api", "*", "web"):
        assert accepted(h.send(ev.ServiceGranted(namespace="acme", grantee="partner",
                                                 worker=worker)))
    assert accepted(h.send(ev.ServiceGranted(namespace="acme", grantee="other", worker="api")))
    # `*` revokes the grant of every worker only, not the per-worker grants.
    assert accepted(h.send(ev.ServiceRevoked(namespace="acme", grantee="partner")))
    doc = h.get(keys.NAMESPACES, "acme")
    assert isinstance(doc, dict)
    grants = doc["grants"]
    assert isinstance(grants, list)
    assert [g for g in grants if g["namespace"] == "partner"] == [
        {"namespace": "partner", "worker": "api"}, {"namespace": "partner", "worker": "web"}]
    assert accepted(h.send(ev.ServiceRevoked(namespace="acme", grantee="partner",
                                             worker=ev.ALL_GRANTS)))
    doc = h.get(keys.NAMESPACES, "acme")
    assert isinstance(doc, dict)
    assert doc["grants"] == [{"namespace": "other", "worker": "api"}]
    again = h.send(ev.ServiceRevoked(namespace="acme", grantee="partner", worker=ev.ALL_GRANTS))
    assert again.code == "grant_missing"


def test_policies_need_the_namespace() -> None:
    h = Harness()
    verdict = h.send(ev.EgressPolicySet(namespace="acme", mode="deny"))
    assert verdict.code == "namespace_missing"

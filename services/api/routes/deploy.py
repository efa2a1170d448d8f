"""Deploy: upload an immutable version (JSON, modules as base64), optionally promote it.

Order: decode and check every limit and rule, build and encode the event;
then store each module and the manifest in the blob store under their
sha256; then append and await the verdict; then (with `promote=true`)
append the promote. A refused request writes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Query

from eventlog import validation as v
from eventlog.bindings import spec as binding_spec
from eventlog.errors import InvalidEvent
from eventlog.events import Binding, VersionDeleted, VersionPromoted, WorkerVersionUploaded
from services.api.auth import Auth, Principal
from services.api.commands import build, first_outcome, idempotency_key, submit
from services.api.context import ApiContext
from services.api.errors import ApiError
from services.api.models import DeployRequest
from services.api.routes.assets import build_assets
from services.api.routes.common import WRITE_ERRORS, Ctx, IdemKey, Namespace, WorkerName
from services.api.routes.common import namespace_doc as _namespace_doc
from services.api.routes.deploy_routes import claim_routes, plan_routes
from services.api.tail_consumers import check_names as _tail_consumers
from services.api.tail_consumers import warnings as _tail_warnings
from services.api.versions import new_version_id
from services.bundles import (
    BundleError,
    BundleLimits,
    Module,
    build_bundle,
    guess_module_type,
    render_manifest,
)
from services.runtime_compat import CompatibilityError, check_compatibility

router = APIRouter(prefix="/v1/namespaces/{ns}/workers", tags=["workers"])


def _decode(index: int, text: str, limits: BundleLimits) -> bytes:
    field = f"modules[{index}].content_b64"
    if len(text) > (limits.max_module_bytes + 2) * 4 // 3 + 4:
        raise BundleError(field, f"over the {limits.max_module_bytes} byte module limit",
                          too_large=True)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BundleError(field, "is not valid base64") from None


async def _check_targets(ctx: Ctx, ns: str, payload: WorkerVersionUploaded) -> None:
    """Refuse before anything is written: a bound resource that does not exist, or
    another namespace's worker that namespace did not grant.

    The fold decides resources again (the log is the arbiter: a delete racing
    this deploy is caught there). Grants live on the other namespace's partition,
    so only this check and the gateway (on every call) look at them.
    """
    for b in payload.bindings:
        spec = binding_spec(b.kind)
        if spec is not None and spec.resource:
            if await ctx.reader.resource(b.kind, ns, b.target) is None:
                raise ApiError(409, "binding_target_missing",
                               f"binding {b.name}: {spec.label} {b.target!r} "
                               f"does not exist in namespace {ns}",
                               field=f"bindings.{b.name}")
            continue
        if spec is None or not spec.cross_namespace or not b.namespace:
            continue
        if b.namespace == ns:
            continue
        # A binding of a whole namespace (a dispatch namespace) needs its `*` grant.
        worker = "*" if spec.whole_namespace else b.target
        doc = await ctx.reader.namespace(b.namespace)
        grants = (doc or {}).get("grants") or []
        if doc is None or not any(g.get("namespace") == ns and g.get("worker") in ("*", worker)
                                  for g in grants):
            what = "every worker" if worker == "*" else f"worker {worker!r}"
            hint = "" if worker == "*" else f" --worker {worker}"
            raise ApiError(409, "service_not_granted",
                           f"binding {b.name}: namespace {b.namespace!r} has not granted "
                           f"{ns!r} access to {what} (ask its owners to run "
                           f"`wdl ns grant {ns} --ns {b.namespace}{hint}`)",
                           field=f"bindings.{b.name}")


def _own_namespace(kind: str, namespace: str, ns: str) -> str:
    """A binding's namespace as stored: "" for this one, except where the binding names a
    whole namespace (a dispatcher binding its own namespace must still name it)."""
    spec = binding_spec(kind)
    if namespace == ns and not (spec is not None and spec.whole_namespace):
        return ""
    return namespace


# Cron triggers a namespace's workers may hold together: Cloudflare's account limit on
# the Paid plan (250 per account, 5 on Free; developers.cloudflare.com/workers/platform/
# limits). The dispatcher's fair share bounds what they cost others either way; this
# bounds the claims and records one namespace makes the scheduler write each minute.
NAMESPACE_MAX_CRONS = 250


async def _check_crons(ctx: Ctx, ns: str, worker: str, crons: list[str]) -> None:
    try:
        v.distinct_schedules("cron_triggers", crons)
    except InvalidEvent as exc:
        raise ApiError(400, "duplicate_cron", exc.reason, field="cron_triggers") from None
    if not crons:
        return
    others = sum(len(doc.get("crons") or ()) for owner, doc in
                 (await ctx.reader.cron_schedule()).items()
                 if owner.partition("/")[0] == ns and owner != f"{ns}/{worker}")
    if others + len(crons) > NAMESPACE_MAX_CRONS:
        raise ApiError(400, "too_many_crons",
                       f"namespace {ns} would have {others + len(crons)} cron triggers "
                       f"(at most {NAMESPACE_MAX_CRONS} across its workers, as a Cloudflare "
                       "account)", field="cron_triggers")


async def _make_room(ctx: ApiContext, principal: Principal, ns: str,
                     worker: str) -> str | None:
    """Check the namespace's worker quota; keep the worker's newest versions only.

    Cloudflare never refuses a deploy for its history: a worker keeps its newest
    versions and the oldest fall out. So past the version quota the deploy deletes the
    oldest version that neither serves nor is the rollback target (a
    `worker.version_deleted` by the deployer, in the audit) and returns its id; only a
    worker whose every version is one of those is refused."""
    versions = await ctx.reader.versions(ns, worker)
    doc = await ctx.reader.worker(ns, worker)
    if not versions and doc is None:
        ctx.quotas.check("workers", len(await ctx.reader.workers(ns)), f"namespace {ns}",
                         way_out="delete a worker first (`wdl delete worker`)")
        return None
    retained = {vid: d for vid, d in versions.items() if not d.get("deleted")}
    if len(retained) < ctx.quotas.versions or doc is None:
        return None
    keep = {doc.get("active_version"), doc.get("previous_version")}
    oldest = sorted((int(d.get("uploaded_at") or 0), vid) for vid, d in retained.items()
                    if vid not in keep)
    if len(retained) - len(oldest) >= ctx.quotas.versions or not oldest:
        ctx.quotas.check("versions", len(retained), f"worker {ns}/{worker}",
                         way_out="delete old versions first (`wdl delete version`)")
    version_id = oldest[0][1]
    env = build(ctx, principal, VersionDeleted(namespace=ns, worker=worker,
                                               version_id=version_id),
                expected_version=doc["version"])
    # A concurrent deploy may have pruned it (or moved the worker on): the upload goes
    # on regardless; the next deploy prunes again.
    await submit(ctx, env)
    return version_id


@router.post("/{worker}/versions", status_code=201, responses=WRITE_ERRORS)
async def deploy(ns: Namespace, worker: WorkerName, body: DeployRequest, ctx: Ctx,
                 principal: Auth, idem: IdemKey = None,
                 promote: Annotated[bool, Query(description="promote once uploaded")] = False,
                 ) -> dict[str, Any]:
    """Upload a version. Returns its server-generated `version_id` and the verdicts."""
    await _namespace_doc(ctx, principal, ns, write=True)
    await _check_crons(ctx, ns, worker, body.cron_triggers)
    routes = await plan_routes(ctx, ns, worker, body.routes)
    tail_consumers = _tail_consumers(ns, body.tail_consumers)
    modules = [Module(m.name, m.type or guess_module_type(m.name), _decode(i, m.content_b64,
                                                                          ctx.limits))
               for i, m in enumerate(body.modules)]
    if body.assets is not None and not modules and not body.main_module:
        # An assets-only project: no worker code; the bundle manifest lists no module.
        bundle = None
        bundle_manifest = render_manifest("", [])
    else:
        bundle = build_bundle(body.main_module, modules, ctx.limits)
        bundle_manifest = bundle.manifest
    assets, assets_manifest, warnings = (None, b"", []) if body.assets is None else \
        await build_assets(ctx, ns, body.assets, has_worker=bundle is not None)
    payload = WorkerVersionUploaded(
        namespace=ns, worker=worker, version_id=new_version_id(),
        bundle_sha256=hashlib.sha256(bundle_manifest).hexdigest(),
        bundle_size=len(bundle_manifest),
        modules=bundle.module_refs() if bundle is not None else (),
        main_module=bundle.main_module if bundle is not None else "",
        compatibility_date=body.compatibility_date,
        compatibility_flags=tuple(body.compatibility_flags), vars=dict(body.vars),
        bindings=tuple(Binding(name=b.name, kind=b.kind, target=b.target, value=b.value,
                               namespace=_own_namespace(b.kind, b.namespace, ns),
                               entrypoint=b.entrypoint)
                       for b in body.bindings),
        cron_triggers=tuple(body.cron_triggers), workers_dev=body.workers_dev,
        tail_consumers=tail_consumers, tag=body.tag, message=body.message,
        assets=assets,
    )
    env = build(ctx, principal, payload, idempotency=idempotency_key(principal, idem))
    try:
        # What the pinned workerd would refuse at load time is refused now, unwritten.
        check_compatibility(payload.compatibility_date, payload.compatibility_flags)
    except CompatibilityError as exc:
        raise ApiError(400, exc.code, exc.message, field=exc.field) from None
    await _check_targets(ctx, ns, payload)
    # Counted and written in turn (a namespace's deploys take turns in this process).
    async with ctx.quota_locks.hold("workers", ns):
        outcome = await first_outcome(ctx, env) if env.idempotency_key is not None else None
        pruned = None
        if outcome is None:
            pruned = await _make_room(ctx, principal, ns, worker)
            for module in bundle.modules if bundle is not None else ():
                await ctx.blobs.put(module.content, expected_sha256=module.sha256)
            await ctx.blobs.put(bundle_manifest, expected_sha256=payload.bundle_sha256)
            if assets is not None:
                await ctx.blobs.put(assets_manifest, expected_sha256=assets.manifest_sha256)
            outcome = await submit(ctx, env)
    uploaded = outcome.envelope.payload
    assert isinstance(uploaded, WorkerVersionUploaded)
    outcome.require_accepted(version_id=uploaded.version_id)
    result: dict[str, Any] = {**outcome.as_dict(), "version_id": uploaded.version_id,
                              "bundle_sha256": uploaded.bundle_sha256,
                              "bundle_size": uploaded.bundle_size, "promote": None,
                              "pruned_version": pruned,
                              "warnings": await _tail_warnings(ctx, ns, worker, tail_consumers)}
    if assets is not None:
        result["assets"] = {"files": assets.files, "manifest_sha256": assets.manifest_sha256,
                            "warnings": warnings}
    if promote:
        promote_env = build(
            ctx, principal, VersionPromoted(namespace=ns, worker=worker,
                                            version_id=uploaded.version_id),
            idempotency=idempotency_key(principal, idem, ":promote"),
            expected_version=outcome.aggregate_version)
        promoted = await submit(ctx, promote_env)
        promoted.require_accepted(version_id=uploaded.version_id, upload=outcome.as_dict())
        result["promote"] = promoted.as_dict()
        # Routes follow the promoted version (an upload alone routes nothing, as
        # `wrangler versions upload`).
        result["routes"] = await claim_routes(ctx, principal, ns, worker, routes, idem)
    return result

"""Static Assets for the gateway: a version's manifest, and an asset's bytes.

Both are behind the internal token like every endpoint of the state service. The
manifest comes from the version's accepted event (its digest), never from a
request; an asset's bytes come from the blob store by digest and are served only
if the blob is *this namespace's* asset (services/assets/manifest.py): a manifest
naming another namespace's digest gets a 404, never the other tenant's bytes.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from projections.reader import ProjectionReader
from projections.store import ProjectionStore
from services.assets import scoped_content
from services.blobstore import BlobNotFound, BlobStore

# Small assets are kept decoded in memory (immutable by digest): a hot asset costs
# no blob read. Bounded in bytes and entries.
_CACHE_BYTES = 64 * 1024 * 1024
_CACHE_ITEM = 1024 * 1024
_MANIFESTS = 256


class AssetMissing(Exception):
    def __init__(self, code: str, message: str, status: int = 404) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def version_assets(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the route answer says of a version's assets (None: it has none)."""
    if not meta or meta.get("deleted") or not meta.get("assets"):
        return None
    assets = meta["assets"]
    return {"manifest": assets["manifest_sha256"], "config": assets.get("config") or {},
            "worker": bool(meta.get("modules")), "navigation": _navigation(meta)}


def _navigation(meta: dict[str, Any]) -> bool:
    """Whether a browser navigation (`Sec-Fetch-Mode: navigate`) that matches no asset
    gets `not_found_handling` instead of the worker: Cloudflare's compatibility flag
    `assets_navigation_prefers_asset_serving`, on by default from 2025-04-01."""
    flags = meta.get("compatibility_flags") or ()
    if "assets_navigation_has_no_effect" in flags:
        return False
    return ("assets_navigation_prefers_asset_serving" in flags
            or str(meta.get("compatibility_date") or "") >= "2025-04-01")


class AssetSource:
    def __init__(self, store: ProjectionStore, blobs: BlobStore | None) -> None:
        self.store = store
        self.blobs = blobs
        self._bytes: OrderedDict[str, bytes] = OrderedDict()
        self._held = 0
        self._manifests: OrderedDict[str, dict[str, Any]] = OrderedDict()

    async def manifest(self, ns: str, worker: str, version: str) -> dict[str, Any]:
        meta = await ProjectionReader(self.store).version(ns, worker, version)
        found = version_assets(meta)
        if found is None:
            raise AssetMissing("assets_not_found",
                               f"version {version} of {ns}/{worker} has no assets")
        digest = found["manifest"]
        doc = self._manifests.get(digest)
        if self.blobs is None:
            raise AssetMissing("assets_unavailable", "this state service has no blob store",
                               503)
        if doc is None:
            try:
                doc = json.loads(await self.blobs.get(digest))
            except BlobNotFound:
                raise AssetMissing("assets_unavailable", f"the assets manifest of {ns}/{worker} "
                                   f"{version} is missing from the blob store", 502) from None
            self._manifests[digest] = doc
            while len(self._manifests) > _MANIFESTS:
                self._manifests.popitem(last=False)
        else:
            self._manifests.move_to_end(digest)
        return {**doc, "config": found["config"], "worker": found["worker"],
                "navigation": found["navigation"]}

    async def content(self, ns: str, digest: str) -> bytes:
        key = f"{ns}\x00{digest}"
        hit = self._bytes.get(key)
        if hit is not None:
            self._bytes.move_to_end(key)
            return hit
        if self.blobs is None:
            raise AssetMissing("assets_unavailable", "this state service has no blob store",
                               503)
        try:
            blob = await self.blobs.get(digest)
        except BlobNotFound:
            raise AssetMissing("asset_not_found", f"asset {digest} is missing") from None
        content = scoped_content(ns, blob)
        if content is None:
            # Another namespace's blob, or not an asset at all.
            raise AssetMissing("asset_not_found", f"asset {digest} is not an asset of "
                               f"namespace {ns}")
        if len(content) <= _CACHE_ITEM:
            self._bytes[key] = content
            self._held += len(content)
            while self._held > _CACHE_BYTES:
                _, old = self._bytes.popitem(last=False)
                self._held -= len(old)
        return content

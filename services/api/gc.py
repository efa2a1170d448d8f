"""Blob garbage collection after an accepted purge.

Only digests that no remaining version of any worker references are
deleted; the scan reads the projection *after* the purge verdict, so the
purged worker's versions are gone from it and everything still listed
(including soft-deleted versions, which a rebuild could need) is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from projections.reader import ProjectionReader
from services.blobstore.port import BlobStore


def version_digests(meta: dict[str, Any]) -> set[str]:
    out = {str(meta["bundle_sha256"])}
    out.update(str(m["sha256"]) for m in meta.get("modules") or ())
    return out


async def referenced_digests(reader: ProjectionReader) -> set[str]:
    referenced: set[str] = set()
    for namespace in await reader.namespaces():
        for worker in await reader.workers(namespace):
            for meta in (await reader.versions(namespace, worker)).values():
                referenced |= version_digests(meta)
    return referenced


async def collect_after_purge(reader: ProjectionReader, blobs: BlobStore,
                              candidates: Iterable[str]) -> list[str]:
    """Delete the candidates nothing references any more; returns what was deleted."""
    doomed = sorted(set(candidates) - await referenced_digests(reader))
    for digest in doomed:
        await blobs.delete(digest)
    return doomed

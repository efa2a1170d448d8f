"""Static Assets: manifests, namespace-scoped blobs, `_headers` / `_redirects` rules.

Pure logic shared by the control API (which builds a version's manifest) and the
state service (which serves a manifest and an asset's bytes to the gateway).
"""

from services.assets.manifest import (
    AssetError,
    AssetFile,
    check_files,
    check_path,
    content_type,
    owner_digest,
    owner_marker,
    render_manifest,
    scoped_bytes,
    scoped_content,
    scoped_digest,
)
from services.assets.rules import parse_headers, parse_redirects

__all__ = ["AssetError", "AssetFile", "check_files", "check_path", "content_type",
           "owner_digest", "owner_marker",
           "parse_headers", "parse_redirects", "render_manifest", "scoped_bytes",
           "scoped_content", "scoped_digest"]

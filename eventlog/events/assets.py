"""Static Assets of a worker version: the manifest's digest and how it is served.

The version event (`worker.version_uploaded`) carries this as its optional `assets`
field; the manifest itself (path -> blob digest, size, content type, and the parsed
`_headers` / `_redirects` rules) is a blob under its sha256, never in the log.
docs/events.md and docs/compatibility.md ("Static Assets") describe the fields.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from eventlog import validation as v
from eventlog.errors import InvalidEvent

HtmlHandling = Literal["auto-trailing-slash", "force-trailing-slash", "drop-trailing-slash",
                       "none"]
NotFoundHandling = Literal["none", "404-page", "single-page-application"]

# Cloudflare's limits (developers.cloudflare.com/workers/static-assets/): files per
# version and bytes per file; `run_worker_first` rules (wrangler's MAX_ROUTES_RULES and
# MAX_ROUTES_RULE_LENGTH).
MAX_ASSET_FILES = 20_000
MAX_ASSET_BYTES = 25 * 1024 * 1024
MAX_WORKER_FIRST_RULES = 100
MAX_WORKER_FIRST_RULE_LENGTH = 100


class AssetsConfig(msgspec.Struct, frozen=True, kw_only=True):
    """wrangler's `assets` keys. `worker_first` holds `run_worker_first`'s patterns
    (`/api/*`, negated `!/api/docs/*`); `run_worker_first` is its boolean form."""

    binding: str = ""
    html_handling: HtmlHandling = "auto-trailing-slash"
    not_found_handling: NotFoundHandling = "none"
    run_worker_first: bool = False
    worker_first: tuple[str, ...] = ()


class VersionAssets(msgspec.Struct, frozen=True, kw_only=True):
    manifest_sha256: str
    manifest_size: int
    files: int
    config: AssetsConfig = AssetsConfig()

    def validate(self, has_worker: bool) -> None:
        v.sha256_hex("assets.manifest_sha256", self.manifest_sha256)
        v.positive("assets.manifest_size", self.manifest_size)
        if not 0 <= self.files <= MAX_ASSET_FILES:
            raise InvalidEvent("assets.files", f"at most {MAX_ASSET_FILES} files")
        check_config(self.config, has_worker)


def check_config(config: AssetsConfig, has_worker: bool) -> None:
    if config.binding:
        v.secret_name("assets.binding", config.binding)
        if not has_worker:
            raise InvalidEvent("assets.binding", "an assets-only project (no `main`) has no "
                               "worker to bind the assets to")
    if (config.run_worker_first or config.worker_first) and not has_worker:
        raise InvalidEvent("assets.run_worker_first",
                           "an assets-only project (no `main`) has no worker to run first")
    if config.run_worker_first and config.worker_first:
        raise InvalidEvent("assets.run_worker_first", "either true/false or a list of patterns")
    if len(config.worker_first) > MAX_WORKER_FIRST_RULES:
        raise InvalidEvent("assets.run_worker_first",
                           f"at most {MAX_WORKER_FIRST_RULES} patterns")
    for i, rule in enumerate(config.worker_first):
        field = f"assets.run_worker_first[{i}]"
        if not isinstance(rule, str) or not (rule.startswith("/") or rule.startswith("!/")):
            raise InvalidEvent(field, f"{rule!r}: a pattern starts with / (or !/ to negate)")
        if len(rule) > MAX_WORKER_FIRST_RULE_LENGTH:
            raise InvalidEvent(field, f"longer than {MAX_WORKER_FIRST_RULE_LENGTH} characters")
        if any(ord(c) < 32 or ord(c) == 127 for c in rule):
            raise InvalidEvent(field, "control characters are not allowed")

"""Bundle manifests: how an uploaded version's modules are described and addressed.

A version is a set of modules stored in the blob store under their own
sha256, plus one *manifest* blob that lists them. The manifest is canonical
JSON (sorted keys, no whitespace, modules in upload order)::

    {"main_module":"index.js","modules":[{"name":"index.js","sha256":"…","size":123,"type":"esm"}]}

Its own sha256 is the event's `bundle_sha256` and its byte length the
`bundle_size`, so the data plane fetches the manifest first, then each module.
Everything here is pure: limits are checked before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from typing import get_args

from eventlog.events import MAX_MODULES, ModuleRef, ModuleType
from eventlog.validation import MODULE_NAME_MAX
from services.assets.manifest import RESERVED_CONTENT

MODULE_TYPES: frozenset[str] = frozenset(get_args(ModuleType))
ENTRY_TYPES = frozenset({"esm", "commonjs", "python"})

_EXTENSION_TYPES = {
    ".js": "esm", ".mjs": "esm", ".cjs": "commonjs", ".wasm": "wasm", ".json": "json",
    ".txt": "text", ".html": "text", ".css": "text", ".md": "text", ".py": "python",
}


class BundleError(ValueError):
    """The bundle breaks a structural rule or a limit; nothing was written."""

    code = "invalid_bundle"

    def __init__(self, field: str, message: str, *, too_large: bool = False) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.too_large = too_large


@dataclass(frozen=True)
class BundleLimits:
    max_modules: int = MAX_MODULES
    max_module_bytes: int = 10 * 1024 * 1024
    max_bundle_bytes: int = 25 * 1024 * 1024

    @property
    def max_request_bytes(self) -> int:
        """Upper bound of a JSON deploy request: base64 (4/3) plus metadata room."""
        return self.max_bundle_bytes * 4 // 3 + 2 * 1024 * 1024


@dataclass(frozen=True)
class Module:
    name: str
    type: str
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class Bundle:
    main_module: str
    modules: tuple[Module, ...]
    manifest: bytes = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.manifest).hexdigest()

    @property
    def size(self) -> int:
        return len(self.manifest)

    @property
    def total_bytes(self) -> int:
        return sum(len(m.content) for m in self.modules)

    def module_refs(self) -> tuple[ModuleRef, ...]:
        return tuple(ModuleRef(name=m.name, type=m.type,  # type: ignore[arg-type]
                               sha256=m.sha256, size=len(m.content)) for m in self.modules)


def guess_module_type(name: str) -> str:
    """The module type a file extension suggests (`data` for anything unknown)."""
    return _EXTENSION_TYPES.get(posixpath.splitext(name)[1].lower(), "data")


def check_module_name(field_name: str, name: str) -> None:
    """Relative POSIX paths without `..`, empty segments, backslashes or control chars."""
    if not name or len(name) > MODULE_NAME_MAX:
        raise BundleError(field_name, f"must be 1-{MODULE_NAME_MAX} characters")
    if name.startswith("/") or "\\" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BundleError(field_name, "must be a relative path without backslashes or "
                          "control characters")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise BundleError(field_name, "must not contain empty, '.' or '..' segments")


def build_bundle(main_module: str, modules: list[Module], limits: BundleLimits) -> Bundle:
    """Check structure and limits, and render the canonical manifest."""
    if not modules:
        raise BundleError("modules", "a version needs at least one module")
    if len(modules) > limits.max_modules:
        raise BundleError("modules", f"more than {limits.max_modules} modules", too_large=True)
    seen: set[str] = set()
    total = 0
    for i, module in enumerate(modules):
        where = f"modules[{i}]"
        check_module_name(f"{where}.name", module.name)
        if module.name in seen:
            raise BundleError(f"{where}.name", f"{module.name!r} appears twice")
        seen.add(module.name)
        if module.type not in MODULE_TYPES:
            raise BundleError(f"{where}.type", f"must be one of {sorted(MODULE_TYPES)}")
        if module.content.startswith(RESERVED_CONTENT):
            # Static Assets' own blobs start so (services/assets/manifest.py): a module must
            # not pass for another namespace's upload.
            raise BundleError(f"{where}.content", "starts with bytes reserved for the "
                              "platform's asset blobs")
        size = len(module.content)
        if size > limits.max_module_bytes:
            raise BundleError(f"{where}.content",
                              f"{size} bytes, over the {limits.max_module_bytes} byte limit",
                              too_large=True)
        total += size
    if total > limits.max_bundle_bytes:
        raise BundleError("modules", f"{total} bytes in total, over the "
                          f"{limits.max_bundle_bytes} byte limit", too_large=True)
    main = next((m for m in modules if m.name == main_module), None)
    if main is None:
        raise BundleError("main_module", f"{main_module!r} is not one of the modules")
    if main.type not in ENTRY_TYPES:
        raise BundleError("main_module", f"a {main.type} module cannot be the entry point")
    return Bundle(main_module, tuple(modules), render_manifest(main_module, modules))


def render_manifest(main_module: str, modules: list[Module] | tuple[Module, ...]) -> bytes:
    doc = {
        "main_module": main_module,
        "modules": [{"name": m.name, "sha256": m.sha256, "size": len(m.content),
                     "type": m.type} for m in modules],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def parse_manifest(raw: bytes) -> tuple[str, list[ModuleRef]]:
    """Read a stored manifest back (the data plane's side of the format)."""
    doc = json.loads(raw)
    refs = [ModuleRef(name=m["name"], type=m["type"], sha256=m["sha256"], size=m["size"])
            for m in doc["modules"]]
    return str(doc["main_module"]), refs

"""Version bundles for the workerLoader: modules from the blob store, env with secrets.

This is the only place in the platform where a secret is decrypted: the
plaintext goes into the JSON answer to the gateway (over loopback), which
hands it to the tenant isolate as `env`, and nowhere else — not into logs,
errors or any other response.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import msgspec

from eventlog.events import SealedSecret
from projections.reader import ProjectionReader
from services.blobstore import BlobStore
from services.crypto import Keyring, SecretContext, SecretCryptoError
from services.state.assets import assets_binding
from services.state.view import RouteView, loader_id

# workerLoader module shapes, by the module type recorded at upload.
_TEXT_KINDS = {"esm": "js", "commonjs": "cjs", "text": "text", "python": "py"}
_BINARY_KINDS = {"data": "data", "wasm": "wasm"}
_decode = msgspec.json.Decoder()


class BundleError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class BundleSource:
    view: RouteView
    blobs: BlobStore
    keyring: Keyring

    async def bundle(self, ns: str, worker: str, version: str) -> dict[str, Any]:
        reader = ProjectionReader(self.view.store)
        meta = await reader.version(ns, worker, version)
        if meta is None or meta.get("deleted"):
            raise BundleError(404, "version_not_found",
                              f"version {version} of {ns}/{worker} does not exist")
        if not meta.get("modules"):
            raise BundleError(404, "no_worker_code", f"version {version} of {ns}/{worker} is "
                              "assets only: it has no worker code to run")
        shared, own = await self.view.secret_scopes(ns, worker)
        envelopes = {**shared, **own}
        modules: dict[str, Any] = {}
        for ref in meta["modules"]:
            modules[ref["name"]] = _module(ref["type"], await self.blobs.get(ref["sha256"]))
        plain = {name: self._open(ns, None, name, raw) for name, raw in shared.items()}
        plain.update({name: self._open(ns, worker, name, raw) for name, raw in own.items()})
        env, bindings = _env(ns, worker, version, meta, plain)
        return {
            "id": loader_id(ns, worker, version, envelopes),
            "compatibilityDate": meta["compatibility_date"],
            "compatibilityFlags": list(meta.get("compatibility_flags") or ()),
            "mainModule": meta["main_module"],
            "modules": modules,
            "env": env,
            "bindings": bindings,
        }

    def _open(self, ns: str, worker: str | None, name: str, raw: str) -> str:
        doc = _decode.decode(raw)
        doc.pop("updated_at", None)
        try:
            sealed = msgspec.convert(doc, SealedSecret)
            return self.keyring.open(SecretContext(ns, worker, name), sealed).decode("utf-8")
        except (SecretCryptoError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            where = ns if worker is None else f"{ns}/{worker}"
            code = getattr(exc, "code", type(exc).__name__)
            raise BundleError(500, "secret_unavailable",
                              f"secret {name!r} of {where} cannot be opened ({code})") from None


def _env(ns: str, worker: str, version: str, meta: dict[str, Any],
         secrets: dict[str, str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(plain env, platform bindings): vars, then every secret in scope, then the
    version's explicit bindings. Platform bindings become entrypoint stubs in the
    gateway; their props are set here, from the accepted version, and nowhere else."""
    env: dict[str, Any] = dict(meta.get("vars") or {})
    env.update(secrets)
    platform: list[dict[str, Any]] = []
    for binding in meta.get("bindings") or ():
        kind, name = binding["kind"], binding["name"]
        if kind == "text":
            env[name] = binding.get("value", "")
        elif kind == "json":
            env[name] = json.loads(binding.get("value") or "null")
        elif kind == "secret" and binding.get("target", "") in secrets:
            env[name] = secrets[binding["target"]]
        elif kind in ("kv", "r2", "d1"):
            platform.append({"name": name, "kind": kind, "props": {
                "namespace": ns, "resource": binding["target"], "worker": worker,
                "version": version}})
        elif kind == "queue":
            # A producer: sends go to this namespace's queue only; `delay` is the
            # binding's delivery_delay ("": the queue's own; docs/queues.md).
            platform.append({"name": name, "kind": kind, "props": {
                "namespace": ns, "queue": binding["target"], "worker": worker,
                "version": version, "delay": binding.get("value", "")}})
        elif kind == "worker_loader":
            # Children are scoped by these props (workerd/gateway/loader.js).
            platform.append({"name": name, "kind": kind, "props": {
                "namespace": ns, "worker": worker, "version": version}})
        elif kind == "workflow":
            # Instances are created on, and stay on, the version holding the binding.
            platform.append({"name": name, "kind": kind, "props": {
                "namespace": ns, "worker": worker, "version": version,
                "workflow": binding["target"], "class_name": binding.get("entrypoint") or ""}})
        elif kind == "durable_object":
            # Objects of `class_name` of `script` (a worker of this namespace, this one
            # by default); the namespace is the caller's, always (docs/durable-objects.md).
            platform.append({"name": name, "kind": kind, "props": {
                "namespace": ns, "worker": worker, "script": binding.get("value") or worker,
                "class_name": binding["target"]}})
        elif kind == "service":
            platform.append({"name": name, "kind": kind, "props": {
                "namespace": ns, "target_namespace": binding.get("namespace") or ns,
                "worker": binding["target"], "entrypoint": binding.get("entrypoint") or ""}})
    binding = assets_binding(ns, worker, version, meta)
    if binding is not None:
        platform.append(binding)
    return env, platform


def _module(kind: str, data: bytes) -> dict[str, Any]:
    if kind in _TEXT_KINDS:
        return {_TEXT_KINDS[kind]: data.decode("utf-8")}
    if kind in _BINARY_KINDS:
        # JSON cannot carry bytes: the gateway decodes `b64` into an ArrayBuffer.
        return {"b64": base64.b64encode(data).decode("ascii"), "kind": _BINARY_KINDS[kind]}
    if kind == "json":
        return {"json": json.loads(data)}
    raise BundleError(500, "unsupported_module", f"module type {kind!r} is not supported")

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

from eventlog.bindings import NO_VALUE, Scope
from eventlog.bindings import spec as binding_spec
from eventlog.events import SealedSecret
from projections.reader import ProjectionReader
from services.blobstore import BlobStore
from services.crypto import Keyring, SecretContext, SecretCryptoError
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
        shared, own = await self.view.secret_scopes(ns, worker)
        envelopes = {**shared, **own}
        modules: dict[str, Any] = {}
        for ref in meta["modules"]:
            modules[ref["name"]] = _module(ref["type"], await self.blobs.get(ref["sha256"]))
        plain = {name: self._open(ns, None, name, raw) for name, raw in shared.items()}
        plain.update({name: self._open(ns, worker, name, raw) for name, raw in own.items()})
        resources = await self._resources(reader, ns, meta)
        env, bindings = _env(ns, worker, version, meta, plain, resources)
        return {
            "id": loader_id(ns, worker, version, envelopes),
            "compatibilityDate": meta["compatibility_date"],
            "compatibilityFlags": list(meta.get("compatibility_flags") or ()),
            "mainModule": meta["main_module"],
            "modules": modules,
            "env": env,
            "bindings": bindings,
            # Tail Workers of this version (workerd/gateway/tail.js delivers to them).
            "tailConsumers": list(meta.get("tail_consumers") or ()),
        }

    async def _resources(self, reader: ProjectionReader, ns: str, meta: dict[str, Any],
                         ) -> dict[tuple[str, str], dict[str, Any]]:
        """The records of the resources the version's plain-value bindings name, each
        with its `sealed_password` opened (`opened`): a resource kind whose env value is
        made here (Hyperdrive's credentials). Sealed for `<kind>/<target>` of `ns`."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for binding in meta.get("bindings") or ():
            kind, target = binding["kind"], binding.get("target") or ""
            spec = binding_spec(kind)
            if spec is None or spec.value is None or not spec.resource or (kind, target) in out:
                continue
            record = await reader.resource(kind, ns, target)
            if record is None or "sealed_password" not in record:
                continue
            out[(kind, target)] = {"resource": record, "opened": self._open_sealed(
                SecretContext(ns, None, f"{kind}/{target}"), record["sealed_password"],
                f"{spec.label} {target} of {ns}")}
        return out

    def _open_sealed(self, context: SecretContext, doc: Any, what: str) -> str:
        try:
            sealed = msgspec.convert(doc, SealedSecret)
            return self.keyring.open(context, sealed).decode("utf-8")
        except (SecretCryptoError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            code = getattr(exc, "code", type(exc).__name__)
            raise BundleError(500, "secret_unavailable",
                              f"the credentials of {what} cannot be opened ({code})") from None

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
         secrets: dict[str, str],
         resources: dict[tuple[str, str], dict[str, Any]] | None = None,
         ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(plain env, platform bindings): vars, then every secret in scope, then the
    version's explicit bindings. Platform bindings become entrypoint stubs in the
    gateway; their props are set here, from the accepted version, and nowhere else."""
    env: dict[str, Any] = dict(meta.get("vars") or {})
    env.update(secrets)
    platform: list[dict[str, Any]] = []
    scope = Scope(ns, worker, version, tag=meta.get("tag") or "",
                  uploaded_at=int(meta.get("uploaded_at") or 0))
    for binding in meta.get("bindings") or ():
        kind, name = binding["kind"], binding["name"]
        spec = binding_spec(kind)
        if spec is None:
            # The log only holds kinds its validation knew; an unknown one is a newer
            # writer's: leave it out rather than hand the tenant a half-made binding.
            continue
        if spec.props is not None:
            platform.append({"name": name, "kind": kind, "props": spec.props(scope, binding)})
        elif spec.value is not None:
            opened = (resources or {}).get((kind, binding.get("target") or ""))
            value = spec.value(scope, {**binding, **opened} if opened else binding, secrets)
            if value is not NO_VALUE:
                env[name] = value
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

"""What a sealed value is bound to: namespace, worker (or namespace scope) and name.

The binding is the AES-GCM associated data, so a ciphertext copied to another
namespace, worker, scope or name fails to open. Encoding (version 1)::

    b"wdl-secret\\x00v1" || field(scope) || field(namespace) || field(worker) || field(name)
    field(s) = uint32_be(len(utf8(s))) || utf8(s)
    scope    = "namespace" (worker = "") or "worker"

Length prefixes make the encoding injective: no two contexts share bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from services.crypto.errors import InvalidSecretContext

AAD_MAGIC = b"wdl-secret\x00v1"
MAX_FIELD_BYTES = 1024


@dataclass(frozen=True, slots=True)
class SecretContext:
    namespace: str
    worker: str | None
    name: str

    def __post_init__(self) -> None:
        for label, value in (("namespace", self.namespace), ("name", self.name)):
            _check(label, value)
        if self.worker is not None:
            _check("worker", self.worker)

    @property
    def scope(self) -> str:
        return "namespace" if self.worker is None else "worker"

    def aad(self) -> bytes:
        fields = (self.scope, self.namespace, self.worker or "", self.name)
        return AAD_MAGIC + b"".join(_field(value) for value in fields)

    def __str__(self) -> str:
        where = self.namespace if self.worker is None else f"{self.namespace}/{self.worker}"
        return f"{where}:{self.name}"


def _field(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack(">I", len(raw)) + raw


def _check(label: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidSecretContext(f"{label} must be a non-empty string")
    if len(value.encode("utf-8")) > MAX_FIELD_BYTES:
        raise InvalidSecretContext(f"{label} is longer than {MAX_FIELD_BYTES} bytes")

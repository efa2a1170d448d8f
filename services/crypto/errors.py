"""Typed failures of secret encryption, each with a stable machine-readable code.

Messages may name key ids, secret names and field names; they never contain
plaintext, data keys or root-key material.
"""

from __future__ import annotations

from typing import ClassVar


class SecretCryptoError(Exception):
    """Base of every error the secret envelope raises on purpose."""

    code: ClassVar[str] = "secret_crypto_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}


class UnknownKeyId(SecretCryptoError, LookupError):
    """The sealed value names a root key this keyring does not hold."""

    code = "unknown_key_id"

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no root key with id {key_id[:128]!r} in the keyring")
        self.key_id = key_id

    def __str__(self) -> str:  # LookupError/KeyError would quote the message
        return self.message


class SecretTampered(SecretCryptoError):
    """Authentication failed: a field was altered, or the value belongs to another
    namespace / worker / name (the associated data does not match)."""

    code = "secret_tampered"


class UnsupportedAlgorithm(SecretCryptoError):
    code = "unsupported_algorithm"


class InvalidSecretContext(SecretCryptoError, ValueError):
    """The namespace / worker / name a value is bound to is malformed."""

    code = "invalid_secret_context"


class InvalidRootKey(SecretCryptoError, ValueError):
    """A configured root key is malformed (bad id, bad base64, wrong length, duplicate)."""

    code = "invalid_root_key"


class NoRootKey(SecretCryptoError):
    """No root key is configured, and no development key file was allowed."""

    code = "no_root_key"


class ActiveKeyRemoval(SecretCryptoError, ValueError):
    """The active root key cannot be removed; activate another one first."""

    code = "active_key_removal"


class InsecureKeyFile(SecretCryptoError):
    """The development key file is readable or writable by group or others."""

    code = "insecure_key_file"

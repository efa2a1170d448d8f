"""The envelope scheme (version 1), as pure functions over one or two root keys.

seal:   data key DK = 32 random bytes, nonce = 12 random bytes
        ciphertext  = AES-256-GCM(DK, nonce, plaintext, aad=context.aad())  (tag appended)
        wrapped_key = AES-KW(root key, DK)   (RFC 3394, 40 bytes, integrity-checked)
open:   unwrap DK with the root key named by key_id, then decrypt and verify the tag.
rewrap: unwrap DK with the old root key, wrap it with the new one; nonce and
        ciphertext are kept, so the plaintext is never produced.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from eventlog.events import SealedSecret
from services.crypto.context import SecretContext
from services.crypto.errors import SecretTampered, UnsupportedAlgorithm
from services.crypto.rootkey import RootKey

ALGORITHM = "AES-256-GCM"
DATA_KEY_BYTES = 32
NONCE_BYTES = 12


def seal(root: RootKey, context: SecretContext, plaintext: bytes) -> SealedSecret:
    data_key = AESGCM.generate_key(bit_length=DATA_KEY_BYTES * 8)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, context.aad())
    return SealedSecret(
        key_id=root.key_id,
        wrapped_key=aes_key_wrap(root.material(), data_key),
        nonce=nonce,
        ciphertext=ciphertext,
        algorithm=ALGORITHM,
    )


def open_sealed(root: RootKey, context: SecretContext, sealed: SealedSecret) -> bytes:
    _check_shape(sealed)
    data_key = _unwrap(root, sealed)
    try:
        return AESGCM(data_key).decrypt(sealed.nonce, sealed.ciphertext, context.aad())
    except InvalidTag:
        raise SecretTampered(
            f"secret {context} failed authentication: altered, or sealed for another "
            "namespace, worker or name"
        ) from None


def rewrap(old: RootKey, new: RootKey, sealed: SealedSecret) -> SealedSecret:
    _check_shape(sealed)
    data_key = _unwrap(old, sealed)
    return SealedSecret(
        key_id=new.key_id,
        wrapped_key=aes_key_wrap(new.material(), data_key),
        nonce=sealed.nonce,
        ciphertext=sealed.ciphertext,
        algorithm=sealed.algorithm,
    )


def _check_shape(sealed: SealedSecret) -> None:
    if sealed.algorithm != ALGORITHM:
        raise UnsupportedAlgorithm(
            f"sealed with algorithm {sealed.algorithm[:64]!r}; only {ALGORITHM!r} is supported"
        )
    if len(sealed.nonce) != NONCE_BYTES:
        raise SecretTampered(f"nonce must be {NONCE_BYTES} bytes, got {len(sealed.nonce)}")


def _unwrap(root: RootKey, sealed: SealedSecret) -> bytes:
    try:
        data_key = aes_key_unwrap(root.material(), sealed.wrapped_key)
    except (InvalidUnwrap, ValueError):
        raise SecretTampered(
            f"the wrapped data key does not unwrap under root key {root.key_id!r}"
        ) from None
    if len(data_key) != DATA_KEY_BYTES:
        raise SecretTampered(f"the wrapped data key is not {DATA_KEY_BYTES} bytes")
    return data_key

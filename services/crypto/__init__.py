"""Envelope encryption of secret values (AES-256-GCM, per-value data key, root-key ring).

keyring = load_keyring()                      # WDL_ROOT_KEYS, first key active
ctx = SecretContext(namespace="acme", worker="api", name="DB_PASSWORD")
sealed = keyring.seal(ctx, b"hunter2")        # eventlog.events.SealedSecret
keyring.open(ctx, sealed) == b"hunter2"
"""

from services.crypto.config import (
    ENV_ROOT_KEYS,
    generate_root_key,
    load_keyring,
    load_or_create_key_file,
    parse_root_keys,
)
from services.crypto.context import SecretContext
from services.crypto.envelope import ALGORITHM
from services.crypto.errors import (
    ActiveKeyRemoval,
    InsecureKeyFile,
    InvalidRootKey,
    InvalidSecretContext,
    NoRootKey,
    SecretCryptoError,
    SecretTampered,
    UnknownKeyId,
    UnsupportedAlgorithm,
)
from services.crypto.keyring import Keyring
from services.crypto.rootkey import RootKey

__all__ = [
    "ALGORITHM",
    "ENV_ROOT_KEYS",
    "ActiveKeyRemoval",
    "InsecureKeyFile",
    "InvalidRootKey",
    "InvalidSecretContext",
    "Keyring",
    "NoRootKey",
    "RootKey",
    "SecretContext",
    "SecretCryptoError",
    "SecretTampered",
    "UnknownKeyId",
    "UnsupportedAlgorithm",
    "generate_root_key",
    "load_keyring",
    "load_or_create_key_file",
    "parse_root_keys",
]

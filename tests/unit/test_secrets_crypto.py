"""Envelope encryption of secrets: roundtrip, binding, tamper detection, rotation, config."""

from __future__ import annotations

import base64
import os
import pickle
import stat
from pathlib import Path

import msgspec
import pytest

from eventlog import SecretPut
from eventlog.events import SealedSecret
from services.crypto import (
    ENV_ROOT_KEYS,
    ActiveKeyRemoval,
    InsecureKeyFile,
    InvalidRootKey,
    InvalidSecretContext,
    Keyring,
    NoRootKey,
    RootKey,
    SecretContext,
    SecretCryptoError,
    SecretTampered,
    UnknownKeyId,
    UnsupportedAlgorithm,
    generate_root_key,
    load_keyring,
    load_or_create_key_file,
    parse_root_keys,
)
from services.crypto.__main__ import main as crypto_main

pytestmark = pytest.mark.unit

PLAINTEXT = b"postgres://app:s3cr3t-P4ssw0rd@db.internal/app"
CTX = SecretContext(namespace="acme", worker="api", name="DATABASE_URL")


def _ring(*ids: str) -> Keyring:
    return Keyring([RootKey.generate(kid) for kid in ids])


def _key_forms(key: RootKey) -> list[bytes]:
    raw = key.material()
    return [
        raw,
        raw.hex().encode(),
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw),
        base64.b64encode(raw).rstrip(b"="),
    ]


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


# --- roundtrip ----------------------------------------------------------------


def test_roundtrip() -> None:
    ring = _ring("k1")
    sealed = ring.seal(CTX, PLAINTEXT)
    assert isinstance(sealed, SealedSecret)
    assert sealed.key_id == "k1"
    assert sealed.algorithm == "AES-256-GCM"
    assert len(sealed.nonce) == 12
    assert len(sealed.wrapped_key) == 40  # AES-KW of a 32-byte data key
    assert len(sealed.ciphertext) == len(PLAINTEXT) + 16  # GCM tag appended
    assert ring.open(CTX, sealed) == PLAINTEXT


@pytest.mark.parametrize("value", [b"", b"x", os.urandom(64 * 1024 - 16), "héllo ✓"])
def test_roundtrip_sizes_and_text(value: bytes | str) -> None:
    ring = _ring("k1")
    expected = value.encode() if isinstance(value, str) else value
    assert ring.open(CTX, ring.seal(CTX, value)) == expected


def test_namespace_scope_roundtrip() -> None:
    ring = _ring("k1")
    ctx = SecretContext(namespace="acme", worker=None, name="SHARED")
    assert ring.open(ctx, ring.seal(ctx, PLAINTEXT)) == PLAINTEXT


def test_sealed_secret_fits_the_event_catalogue() -> None:
    ring = _ring("root-2026-01")
    sealed = ring.seal(CTX, PLAINTEXT)
    event = SecretPut(namespace="acme", worker="api", name="DATABASE_URL", sealed=sealed)
    event.validate()
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(event), type=SecretPut)
    assert ring.open(CTX, decoded.sealed) == PLAINTEXT


# --- binding to namespace / worker / name ---------------------------------------


@pytest.mark.parametrize(
    "other",
    [
        SecretContext(namespace="other", worker="api", name="DATABASE_URL"),
        SecretContext(namespace="acme", worker="web", name="DATABASE_URL"),
        SecretContext(namespace="acme", worker="api", name="DATABASE_URL2"),
        SecretContext(namespace="acme", worker=None, name="DATABASE_URL"),
        # Field boundaries matter: the same concatenation must not collide.
        SecretContext(namespace="acmeapi", worker="DATABASE", name="URL"),
        SecretContext(namespace="acme", worker="apiDATABASE", name="_URL"),
    ],
    ids=str,
)
def test_ciphertext_is_bound_to_its_context(other: SecretContext) -> None:
    ring = _ring("k1")
    sealed = ring.seal(CTX, PLAINTEXT)
    with pytest.raises(SecretTampered) as err:
        ring.open(other, sealed)
    assert err.value.code == "secret_tampered"


def test_namespace_scope_does_not_open_as_worker_scope() -> None:
    ring = _ring("k1")
    ns_ctx = SecretContext(namespace="acme", worker=None, name="TOKEN")
    sealed = ring.seal(ns_ctx, PLAINTEXT)
    with pytest.raises(SecretTampered):
        ring.open(SecretContext(namespace="acme", worker="api", name="TOKEN"), sealed)


def test_aad_encoding_is_injective() -> None:
    contexts = [
        SecretContext(namespace="a", worker="bc", name="d"),
        SecretContext(namespace="ab", worker="c", name="d"),
        SecretContext(namespace="a", worker=None, name="bcd"),
        SecretContext(namespace="a", worker="b", name="cd"),
    ]
    assert len({c.aad() for c in contexts}) == len(contexts)


@pytest.mark.parametrize(
    ("namespace", "worker", "name"),
    [("", "w", "n"), ("ns", "", "n"), ("ns", "w", ""), ("ns", "w", "x" * 2000)],
)
def test_malformed_context_is_refused(namespace: str, worker: str, name: str) -> None:
    with pytest.raises(InvalidSecretContext):
        SecretContext(namespace=namespace, worker=worker, name=name)


# --- tamper detection -----------------------------------------------------------


@pytest.mark.parametrize("field", ["wrapped_key", "nonce", "ciphertext"])
def test_flipping_any_byte_of_a_binary_field_is_detected(field: str) -> None:
    ring = _ring("k1")
    sealed = ring.seal(CTX, PLAINTEXT)
    original: bytes = getattr(sealed, field)
    for index in range(len(original)):
        tampered = msgspec.structs.replace(sealed, **{field: _flip(original, index)})
        with pytest.raises(SecretTampered):
            ring.open(CTX, tampered)


@pytest.mark.parametrize("field", ["wrapped_key", "nonce", "ciphertext"])
def test_truncated_or_extended_fields_are_detected(field: str) -> None:
    ring = _ring("k1")
    sealed = ring.seal(CTX, PLAINTEXT)
    original: bytes = getattr(sealed, field)
    for changed in (original[:-1], original + b"\x00", b""):
        with pytest.raises(SecretTampered):
            ring.open(CTX, msgspec.structs.replace(sealed, **{field: changed}))


def test_tampered_key_id() -> None:
    ring = _ring("k1", "k2")
    sealed = ring.seal(CTX, PLAINTEXT)
    with pytest.raises(UnknownKeyId) as unknown:
        ring.open(CTX, msgspec.structs.replace(sealed, key_id="k0"))
    assert unknown.value.code == "unknown_key_id"
    assert unknown.value.key_id == "k0"
    # Pointing at another key of the ring does not unwrap either.
    with pytest.raises(SecretTampered):
        ring.open(CTX, msgspec.structs.replace(sealed, key_id="k2"))


def test_tampered_algorithm() -> None:
    ring = _ring("k1")
    sealed = ring.seal(CTX, PLAINTEXT)
    with pytest.raises(UnsupportedAlgorithm) as err:
        ring.open(CTX, msgspec.structs.replace(sealed, algorithm="AES-256-GCN"))
    assert err.value.code == "unsupported_algorithm"


def test_swapping_wrapped_keys_between_values_is_detected() -> None:
    ring = _ring("k1")
    one = ring.seal(CTX, PLAINTEXT)
    two = ring.seal(CTX, b"another value")
    with pytest.raises(SecretTampered):
        ring.open(CTX, msgspec.structs.replace(one, wrapped_key=two.wrapped_key))


# --- rotation -------------------------------------------------------------------


def test_rotation() -> None:
    k1, k2 = RootKey.generate("k1"), RootKey.generate("k2")
    ring = Keyring([k1])
    old = ring.seal(CTX, PLAINTEXT)

    ring = ring.with_key(k2)  # k2 active for sealing, k1 still opens
    assert ring.active_key_id == "k2"
    assert ring.key_ids == ("k1", "k2")
    assert ring.open(CTX, old) == PLAINTEXT
    assert ring.seal(CTX, PLAINTEXT).key_id == "k2"

    assert ring.needs_rewrap(old)
    moved = ring.rewrap(old)
    assert moved.key_id == "k2"
    assert moved.nonce == old.nonce and moved.ciphertext == old.ciphertext
    assert moved.wrapped_key != old.wrapped_key
    assert not ring.needs_rewrap(moved)
    assert ring.rewrap(moved) is moved

    with pytest.raises(ActiveKeyRemoval):
        ring.without_key("k2")
    ring = ring.without_key("k1")
    assert ring.key_ids == ("k2",)
    assert ring.open(CTX, moved) == PLAINTEXT
    with pytest.raises(UnknownKeyId):
        ring.open(CTX, old)
    with pytest.raises(UnknownKeyId):
        ring.rewrap(old)


def test_rewrap_keeps_the_context_binding() -> None:
    ring = _ring("k1")
    sealed = ring.seal(CTX, PLAINTEXT)
    ring = ring.with_key(RootKey.generate("k2"))
    moved = ring.rewrap(sealed)
    with pytest.raises(SecretTampered):
        ring.open(SecretContext(namespace="acme", worker="api", name="OTHER"), moved)
    assert ring.open(CTX, moved) == PLAINTEXT


def test_rewrap_of_a_tampered_value_fails() -> None:
    ring = _ring("k1")
    sealed = ring.seal(CTX, PLAINTEXT)
    ring = ring.with_key(RootKey.generate("k2"))
    bad = msgspec.structs.replace(sealed, wrapped_key=_flip(sealed.wrapped_key, 3))
    with pytest.raises(SecretTampered):
        ring.rewrap(bad)


def test_keyring_rules() -> None:
    with pytest.raises(NoRootKey):
        Keyring([])
    with pytest.raises(InvalidRootKey):
        Keyring([RootKey.generate("k1"), RootKey.generate("k1")])
    with pytest.raises(UnknownKeyId):
        Keyring([RootKey.generate("k1")], active="k9")
    ring = _ring("a", "b", "c")
    assert ring.active_key_id == "a"
    assert ring.activate("c").active_key_id == "c"
    assert "b" in ring and "z" not in ring
    assert ring.with_key(RootKey.generate("d"), activate=False).active_key_id == "a"
    with pytest.raises(UnknownKeyId):
        ring.without_key("z")


# --- fresh data key, no plaintext or key material anywhere ---------------------


def test_fresh_data_key_and_nonce_per_value() -> None:
    ring = _ring("k1")
    seals = [ring.seal(CTX, PLAINTEXT) for _ in range(20)]
    assert len({s.wrapped_key for s in seals}) == 20
    assert len({s.nonce for s in seals}) == 20
    assert len({s.ciphertext for s in seals}) == 20
    assert all(ring.open(CTX, s) == PLAINTEXT for s in seals)


def test_plaintext_is_in_no_field() -> None:
    ring = _ring("k1")
    sealed = ring.seal(CTX, PLAINTEXT)
    encoded = msgspec.msgpack.encode(sealed) + msgspec.json.encode(sealed)
    fields = [sealed.key_id.encode(), sealed.wrapped_key, sealed.nonce, sealed.ciphertext]
    for blob in [*fields, encoded]:
        assert PLAINTEXT not in blob
        for start in range(0, len(PLAINTEXT) - 8):
            assert PLAINTEXT[start : start + 8] not in blob
    for form in _key_forms(ring.key("k1")):
        assert form not in encoded


def test_reprs_and_errors_reveal_no_keys_or_plaintext() -> None:
    key = RootKey.generate("k1")
    ring = Keyring([key]).with_key(RootKey.generate("k2"), activate=False)
    sealed = ring.seal(CTX, PLAINTEXT)
    texts = [repr(key), str(key), repr(ring), str(ring), f"{ring}", f"{key!r}"]
    errors: list[SecretCryptoError] = []
    for attempt in (
        lambda: ring.open(SecretContext(namespace="x", worker="y", name="Z"), sealed),
        lambda: ring.open(CTX, msgspec.structs.replace(sealed, key_id="nope")),
        lambda: ring.open(CTX, msgspec.structs.replace(sealed, key_id="k2")),
        lambda: ring.open(CTX, msgspec.structs.replace(sealed, nonce=b"123")),
        lambda: ring.open(CTX, msgspec.structs.replace(sealed, algorithm="rot13")),
        lambda: parse_root_keys("k1:" + base64.b64encode(key.material()[:31]).decode()),
    ):
        with pytest.raises(SecretCryptoError) as err:
            attempt()
        errors.append(err.value)
        assert err.value.__cause__ is None
    texts += [str(e) for e in errors] + [repr(e) for e in errors]
    texts += [str(e.as_dict()) for e in errors]
    secrets_ = [*_key_forms(key), *_key_forms(ring.key("k2")), PLAINTEXT]
    for text in texts:
        for secret in secrets_:
            assert secret.decode("latin-1") not in text
    assert "k1" in repr(ring) and "k2" in repr(ring)
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(TypeError):
        pickle.dumps(ring)
    with pytest.raises(AttributeError):
        key.key_id = "k9"


# --- configuration ----------------------------------------------------------------


def test_parse_root_keys_first_is_active() -> None:
    a, b = RootKey.generate("new"), RootKey.generate("old")
    ring = parse_root_keys(f" {a.export()} , {b.export()},")
    assert ring.key_ids == ("new", "old")
    assert ring.active_key_id == "new"
    assert ring.key("old").material() == b.material()
    urlsafe = "k3:" + base64.urlsafe_b64encode(a.material()).decode()
    assert parse_root_keys(urlsafe).key("k3").material() == a.material()


@pytest.mark.parametrize(
    "spec",
    [
        "k1",  # no colon
        "bad id!:" + base64.b64encode(bytes(32)).decode(),
        "k1:not base64!!",
        "k1:" + base64.b64encode(bytes(16)).decode(),  # AES-128 is not enough
        "k1:{0},k1:{0}".format(base64.b64encode(bytes(32)).decode()),
    ],
)
def test_parse_root_keys_refuses_bad_entries_without_echoing_them(spec: str) -> None:
    with pytest.raises(InvalidRootKey) as err:
        parse_root_keys(spec)
    assert err.value.code == "invalid_root_key"
    for part in spec.split(","):
        encoded = part.partition(":")[2]
        if encoded:
            assert encoded not in str(err.value)


def test_load_keyring_from_env() -> None:
    key = generate_root_key("prod-1")
    ring = load_keyring({ENV_ROOT_KEYS: key.export()})
    assert ring.active_key_id == "prod-1"
    with pytest.raises(NoRootKey) as err:
        load_keyring({})
    assert ENV_ROOT_KEYS in str(err.value)
    with pytest.raises(NoRootKey):
        parse_root_keys(" , ")


def test_dev_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "root.key"
    first = load_keyring({}, dev_key_file=path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sealed = first.seal(CTX, PLAINTEXT)
    again = load_or_create_key_file(path)
    assert again.key_ids == first.key_ids
    assert again.open(CTX, sealed) == PLAINTEXT
    assert [p.name for p in path.parent.iterdir()] == ["root.key"]  # no temp files left
    # The environment wins over the dev key file.
    env_key = generate_root_key("from-env")
    assert load_keyring({ENV_ROOT_KEYS: env_key.export()}, dev_key_file=path).key_ids == (
        "from-env",
    )


def test_dev_key_file_with_loose_permissions_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    load_or_create_key_file(path)
    path.chmod(0o644)
    with pytest.raises(InsecureKeyFile) as err:
        load_or_create_key_file(path)
    assert "chmod 600" in str(err.value)
    assert path.read_text().strip().partition(":")[2] not in str(err.value)


def test_genkey_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert crypto_main(["genkey", "--id", "k-2026"]) == 0
    line = capsys.readouterr().out.strip()
    ring = parse_root_keys(line)
    assert ring.active_key_id == "k-2026"
    assert crypto_main(["genkey"]) == 0
    assert parse_root_keys(capsys.readouterr().out).active_key_id.startswith("k-")

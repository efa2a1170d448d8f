"""Token format, hashing and role scoping (no I/O)."""

from __future__ import annotations

import hashlib

import pytest

from services.api.auth import (
    Principal,
    new_token,
    require_admin,
    require_read,
    require_write,
    token_sha256,
)
from services.api.commands import idempotency_key
from services.api.errors import ApiError


def test_tokens_carry_their_id_and_only_a_hash_is_derived() -> None:
    token_id, token = new_token()
    assert token.startswith(f"wdl_{token_id}_")
    assert len(token) > 50
    assert token_sha256(token) == hashlib.sha256(token.encode()).digest()
    assert new_token()[1] != token


@pytest.mark.parametrize(("principal", "ns", "read", "write"), [
    (Principal("a", "admin", frozenset()), "any", True, True),
    (Principal("d", "deployer", frozenset({"alpha"})), "alpha", True, True),
    (Principal("d", "deployer", frozenset({"alpha"})), "beta", False, False),
    (Principal("o", "observer", frozenset({"alpha"})), "alpha", True, False),
    (Principal("o", "observer", frozenset({"alpha"})), "beta", False, False),
])
def test_scopes(principal: Principal, ns: str, read: bool, write: bool) -> None:
    assert principal.can_read(ns) is read
    assert principal.can_write(ns) is write


def test_outside_the_scope_looks_like_absence_and_read_only_is_forbidden() -> None:
    deployer = Principal("d", "deployer", frozenset({"alpha"}))
    observer = Principal("o", "observer", frozenset({"alpha"}))
    with pytest.raises(ApiError) as info:
        require_write(deployer, "beta")
    assert (info.value.status, info.value.code) == (404, "namespace_not_found")
    with pytest.raises(ApiError) as info:
        require_write(observer, "alpha")
    assert (info.value.status, info.value.code) == (403, "forbidden")
    require_read(observer, "alpha")
    with pytest.raises(ApiError) as info:
        require_admin(deployer)
    assert info.value.status == 403
    assert deployer.actor == "token:d"


def test_idempotency_keys_are_scoped_to_the_token_and_checked() -> None:
    p = Principal("t1", "deployer", frozenset({"a"}))
    assert idempotency_key(p, None) is None
    assert idempotency_key(p, "retry-1") == "t1:retry-1"
    assert idempotency_key(p, "retry-1", ":promote") == "t1:retry-1:promote"
    for bad in ("", "has space", "x" * 201, "tab\t"):
        with pytest.raises(ApiError) as info:
            idempotency_key(p, bad)
        assert info.value.code == "invalid_idempotency_key"

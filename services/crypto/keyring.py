"""A keyring: several root keys by id, one active for sealing, all usable for opening.

Keyrings are immutable; `with_key`, `activate` and `without_key` return new
ones. `repr`/`str` list key ids only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NoReturn

from eventlog.events import SealedSecret
from services.crypto import envelope
from services.crypto.context import SecretContext
from services.crypto.errors import ActiveKeyRemoval, InvalidRootKey, NoRootKey, UnknownKeyId
from services.crypto.rootkey import RootKey


class Keyring:
    __slots__ = ("_active", "_keys")

    _keys: dict[str, RootKey]
    _active: str

    def __init__(self, keys: Iterable[RootKey], *, active: str | None = None) -> None:
        """`active` defaults to the first key."""
        by_id: dict[str, RootKey] = {}
        for key in keys:
            if not isinstance(key, RootKey):
                raise InvalidRootKey("a keyring holds RootKey objects only")
            if key.key_id in by_id:
                raise InvalidRootKey(f"root key id {key.key_id!r} appears twice")
            by_id[key.key_id] = key
        if not by_id:
            raise NoRootKey("a keyring needs at least one root key")
        chosen = next(iter(by_id)) if active is None else active
        if chosen not in by_id:
            raise UnknownKeyId(chosen)
        object.__setattr__(self, "_keys", by_id)
        object.__setattr__(self, "_active", chosen)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Keyring is immutable")

    def __repr__(self) -> str:
        return f"Keyring(active={self._active!r}, key_ids={list(self._keys)!r})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("keyrings are not picklable")

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    # --- keys -----------------------------------------------------------------

    @property
    def active_key_id(self) -> str:
        return self._active

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def key(self, key_id: str) -> RootKey:
        try:
            return self._keys[key_id]
        except KeyError:
            raise UnknownKeyId(key_id) from None

    def with_key(self, key: RootKey, *, activate: bool = True) -> Keyring:
        """Add a root key (and by default make it the active one)."""
        return Keyring([*self._keys.values(), key], active=key.key_id if activate else self._active)

    def activate(self, key_id: str) -> Keyring:
        return Keyring(self._keys.values(), active=self.key(key_id).key_id)

    def without_key(self, key_id: str) -> Keyring:
        """Drop a retired key. Rewrap every value sealed under it first."""
        self.key(key_id)
        if key_id == self._active:
            raise ActiveKeyRemoval(f"root key {key_id!r} is active; activate another key first")
        return Keyring([k for k in self._keys.values() if k.key_id != key_id], active=self._active)

    # --- values ---------------------------------------------------------------

    def seal(self, context: SecretContext, plaintext: bytes | str) -> SealedSecret:
        """Encrypt under a fresh data key, wrapped by the active root key."""
        raw = plaintext.encode("utf-8") if isinstance(plaintext, str) else plaintext
        return envelope.seal(self._keys[self._active], context, raw)

    def open(self, context: SecretContext, sealed: SealedSecret) -> bytes:
        """Decrypt a value sealed for exactly this context under any key of the ring."""
        return envelope.open_sealed(self.key(sealed.key_id), context, sealed)

    def needs_rewrap(self, sealed: SealedSecret) -> bool:
        return sealed.key_id != self._active

    def rewrap(self, sealed: SealedSecret) -> SealedSecret:
        """The same value with its data key wrapped by the active root key.

        The plaintext is never produced; a value already under the active key
        is returned unchanged.
        """
        if not self.needs_rewrap(sealed):
            return sealed
        return envelope.rewrap(self.key(sealed.key_id), self._keys[self._active], sealed)

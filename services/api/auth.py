"""Bearer tokens and roles.

A token reads ``wdl_<token_id>_<secret>``; only its sha256 is recorded (in a
`TokenIssued` event, projected to `token_hashes`). Roles:

- ``admin``: everything, every namespace (tokens, leases, namespaces).
- ``deployer``: reads and writes within its namespaces.
- ``observer``: reads within its namespaces.

The bootstrap admin token comes from configuration (`WDL_ADMIN_TOKEN`) and is
compared in constant time. A namespace outside a token's scope answers
exactly like a namespace that does not exist (404), so a token cannot learn
which other namespaces exist; a known namespace the token may read but not
write answers 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from eventlog.ids import now_ms
from services.api.context import ApiContext, get_ctx
from services.api.errors import ApiError

TOKEN_PREFIX = "wdl_"
BOOTSTRAP_ID = "bootstrap"
_WRITERS = frozenset({"admin", "deployer"})


@dataclass(frozen=True)
class Principal:
    token_id: str
    role: str
    namespaces: frozenset[str]
    """Empty for admins: every namespace."""

    @property
    def actor(self) -> str:
        return f"token:{self.token_id}"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def can_read(self, namespace: str) -> bool:
        return self.is_admin or namespace in self.namespaces

    def can_write(self, namespace: str) -> bool:
        return self.can_read(namespace) and self.role in _WRITERS


def new_token() -> tuple[str, str]:
    """(token_id, token): the id is public, the token is shown once."""
    token_id = "t" + secrets.token_hex(8)
    return token_id, f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


def token_sha256(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _unauthenticated(message: str = "a valid bearer token is required") -> ApiError:
    return ApiError(401, "unauthenticated", message)


async def resolve(ctx: ApiContext, header: str | None) -> Principal:
    if not header:
        raise _unauthenticated()
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthenticated()
    admin = ctx.settings.admin_token
    if admin and hmac.compare_digest(token.encode(), admin.encode()):
        return Principal(BOOTSTRAP_ID, "admin", frozenset())
    if not token.startswith(TOKEN_PREFIX) or len(token) > 512:
        raise _unauthenticated()
    claimed_id = token[len(TOKEN_PREFIX):].partition("_")[0]
    token_id = await ctx.reader.token_id_for_hash(token_sha256(token).hex())
    if token_id is None or not hmac.compare_digest(token_id, claimed_id):
        raise _unauthenticated()
    record = await ctx.reader.token(token_id)
    if record is None or record.get("revoked_at") is not None:
        raise _unauthenticated()
    expires = record.get("expires_at")
    if expires is not None and int(expires) <= now_ms():
        raise _unauthenticated("the token has expired")
    return Principal(token_id, str(record["role"]), frozenset(record.get("namespaces") or ()))


async def authenticate(request: Request,
                       ctx: Annotated[ApiContext, Depends(get_ctx)]) -> Principal:
    return await resolve(ctx, request.headers.get("authorization"))


Auth = Annotated[Principal, Depends(authenticate)]


def require_read(principal: Principal, namespace: str) -> None:
    if not principal.can_read(namespace):
        raise ApiError(404, "namespace_not_found", f"namespace {namespace!r} not found")


def require_write(principal: Principal, namespace: str) -> None:
    require_read(principal, namespace)
    if not principal.can_write(namespace):
        raise ApiError(403, "forbidden", f"a {principal.role} token cannot change "
                       f"namespace {namespace!r}")


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise ApiError(403, "forbidden", "this needs an admin token")

"""API tokens (admin): issue, list, revoke. The secret is shown once, at issue."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from eventlog.events import TokenIssued, TokenRevoked
from eventlog.ids import now_ms
from services.api.auth import Auth, new_token, require_admin, token_sha256
from services.api.commands import build, idempotency_key, submit
from services.api.errors import ApiError
from services.api.models import ID_PATTERN, CommandResult, TokenIssueRequest, TokenRevokeRequest
from services.api.routes.common import READ_ERRORS, WRITE_ERRORS, Ctx, IdemKey

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])
TokenId = Annotated[str, Path(pattern=ID_PATTERN)]


def _view(token_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {"token_id": token_id, "role": doc.get("role"), "namespaces": doc.get("namespaces"),
            "label": doc.get("label"), "expires_at": doc.get("expires_at"),
            "issued_at": doc.get("issued_at"), "issued_by": doc.get("issued_by"),
            "revoked_at": doc.get("revoked_at")}


@router.post("", status_code=201, responses=WRITE_ERRORS)
async def issue_token(body: TokenIssueRequest, ctx: Ctx, principal: Auth,
                      idem: IdemKey = None) -> dict[str, Any]:
    """Issue a token; the response holds the only copy of its secret."""
    require_admin(principal)
    if idem is not None:
        # A replay could not return the secret again (only its hash is stored).
        raise ApiError(400, "idempotency_unsupported",
                       "token issue does not take an Idempotency-Key", field="Idempotency-Key")
    token_id, token = new_token()
    expires = now_ms() + body.ttl_seconds * 1000 if body.ttl_seconds is not None else None
    env = build(ctx, principal, TokenIssued(
        token_id=token_id, token_sha256=token_sha256(token), role=body.role,
        namespaces=tuple(body.namespaces), label=body.label, expires_at=expires),
        expected_version=0)
    outcome = (await submit(ctx, env)).require_accepted()
    return {**outcome.as_dict(), "token": token, "token_id": token_id, "role": body.role,
            "namespaces": body.namespaces, "expires_at": expires}


@router.get("", responses=READ_ERRORS)
async def list_tokens(ctx: Ctx, principal: Auth) -> list[dict[str, Any]]:
    require_admin(principal)
    return [_view(tid, doc) for tid, doc in sorted((await ctx.reader.tokens()).items())]


@router.delete("/{token_id}", response_model=CommandResult, responses=WRITE_ERRORS)
async def revoke_token(token_id: TokenId, ctx: Ctx, principal: Auth,
                       body: TokenRevokeRequest | None = None,
                       idem: IdemKey = None) -> dict[str, Any]:
    require_admin(principal)
    if await ctx.reader.token(token_id) is None:
        raise ApiError(404, "token_not_found", f"token {token_id!r} not found")
    env = build(ctx, principal, TokenRevoked(token_id=token_id,
                                             reason=body.reason if body else ""),
                idempotency=idempotency_key(principal, idem))
    return (await submit(ctx, env)).require_accepted().as_dict()

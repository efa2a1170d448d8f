"""The internal-token wall (defined in `projections.internal_http`)."""

from projections.internal_http import (
    CODE,
    HEADER,
    MESSAGE,
    InternalTokenGuard,
    bearer_headers,
    internal_headers,
    token_matches,
)

__all__ = ["CODE", "HEADER", "MESSAGE", "InternalTokenGuard", "bearer_headers",
           "internal_headers", "token_matches"]

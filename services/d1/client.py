"""The control API's client of the D1 service (any replica: it forwards to the owner)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


class D1Unavailable(Exception):
    pass


@dataclass(frozen=True)
class D1Client:
    url: str
    token: str
    timeout_s: float = 60.0

    async def call(self, ns: str, db: str, op: str, *, json_body: Any = None,
                   content: bytes | None = None, params: dict[str, str] | None = None,
                   ) -> httpx.Response:
        # One client per call: these are operator actions, not the tenant hot path.
        async with httpx.AsyncClient(timeout=self.timeout_s) as http:
            try:
                return await http.post(f"{self.url}/d1/{ns}/{db}/{op}", json=json_body,
                                       content=content, params=params,
                                       headers={"x-wdl-internal-token": self.token})
            except httpx.HTTPError as exc:
                raise D1Unavailable(f"the D1 service is unreachable: {exc}") from None

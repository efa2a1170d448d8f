"""The control API's client of the data service's tail stream (`GET /tail/stream`).

The API authorizes (`wdl tail` reads a namespace) and proxies; the data service
holds the subscriber queues and applies the filters. One connection per open
tail; nothing is buffered here beyond what the proxy is writing.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from services.api.errors import ApiError

TOKEN_HEADER = "x-wdl-internal-token"


class TailUpstream:
    """`start()` opens the HTTP client, `stop()` closes it (and every open stream)."""

    def __init__(self, data_url: str, internal_token: str, *,
                 read_timeout_s: float = 30.0) -> None:
        self.data_url = data_url.rstrip("/")
        self.internal_token = internal_token
        # Longer than the data service's heartbeat interval (10 s): a stream with no
        # line for this long is dead, and the proxied client gets an `end` line.
        self.read_timeout_s = read_timeout_s
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        # One connection per open tail, as many as the data service admits (it bounds
        # them, per namespace too): httpx's default pool of 100 let 100 tails of one
        # namespace make every other tail wait for a connection, then answer 503.
        self._client = httpx.AsyncClient(
            base_url=self.data_url, headers={TOKEN_HEADER: self.internal_token},
            timeout=httpx.Timeout(10.0, read=self.read_timeout_s),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=20))

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def open(self, namespace: str, worker: str,
                   filters: Mapping[str, str]) -> httpx.Response:
        """The upstream response, streaming; the caller must `aclose()` it."""
        if self._client is None:
            raise ApiError(503, "tail_unavailable", "the tail client is not started")
        request = self._client.build_request(
            "GET", "/tail/stream", params={"namespace": namespace, "worker": worker, **filters})
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError:
            raise ApiError(503, "tail_unavailable",
                           "the data service (live tail) is unreachable") from None
        if response.status_code == 200:
            return response
        await response.aread()
        await response.aclose()
        try:
            message = str(response.json().get("message", ""))
        except ValueError:
            message = ""
        if response.status_code == 429:
            raise ApiError(429, "too_many_tails", message or "too many open tails")
        raise ApiError(503, "tail_unavailable",
                       f"the data service answered {response.status_code}")

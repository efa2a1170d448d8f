"""The CLI's side of the control API: configuration, one HTTP client, error mapping.

Configuration, first found wins: command-line flags, then the environment
(`WDL_CONTROL_URL`, `WDL_TOKEN`, `WDL_NAMESPACE`), then a profile of
`~/.config/wdl/config.toml` (or `$WDL_CONFIG`)::

    default_profile = "local"
    [profiles.local]
    url = "http://127.0.0.1:8787"
    token = "wdl_…"
    namespace = "acme"

Exit codes: 0 ok, 2 usage or validation (400/413/422), 3 refused (409),
1 anything else (auth, not found, server, network).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8787"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3


class ConfigError(Exception):
    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class ClientConfig:
    url: str
    token: str | None
    namespace: str | None
    timeout_s: float = 60.0


def config_path(env: Mapping[str, str]) -> Path:
    if env.get("WDL_CONFIG"):
        return Path(env["WDL_CONFIG"])
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "wdl" / "config.toml"


def _profile(env: Mapping[str, str], name: str | None) -> dict[str, Any]:
    path = config_path(env)
    if not path.exists():
        if name is not None:
            raise ConfigError(f"profile {name!r} requested but {path} does not exist")
        return {}
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    chosen = name or env.get("WDL_PROFILE") or doc.get("default_profile")
    profiles = doc.get("profiles") or {}
    if chosen is None:
        return {k: v for k, v in doc.items() if k in ("url", "token", "namespace")}
    if chosen not in profiles:
        raise ConfigError(f"profile {chosen!r} is not in {path}")
    return dict(profiles[chosen])


def resolve_config(url: str | None = None, token: str | None = None,
                   namespace: str | None = None, profile: str | None = None,
                   env: Mapping[str, str] | None = None) -> ClientConfig:
    e = os.environ if env is None else env
    prof = _profile(e, profile)
    return ClientConfig(
        url=(url or e.get("WDL_CONTROL_URL") or prof.get("url") or DEFAULT_URL).rstrip("/"),
        token=token or e.get("WDL_TOKEN") or prof.get("token"),
        namespace=namespace or e.get("WDL_NAMESPACE") or prof.get("namespace"),
    )


class ApiFailure(Exception):
    """The API answered with an error (or could not be reached: status 0)."""

    def __init__(self, status: int, code: str, message: str,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body or {}

    @property
    def exit_code(self) -> int:
        if self.status == 409:
            return EXIT_REFUSED
        if self.status in (400, 413, 422):
            return EXIT_USAGE
        return EXIT_FAILURE


class ControlClient:
    """A thin synchronous client; every method returns the decoded JSON body."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        headers = {"User-Agent": "wdl-cli"}
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        self._http = httpx.Client(base_url=config.url, headers=headers,
                                  timeout=config.timeout_s)

    def close(self) -> None:
        self._http.close()

    @property
    def http(self) -> httpx.Client:
        """The underlying client, for raw or streamed bodies (`raise_for` maps errors)."""
        return self._http

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, json_body: Any = None,
                params: Mapping[str, Any] | None = None,
                content: Iterator[bytes] | bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Any:
        hdrs = dict(headers or {})
        kwargs: dict[str, Any] = {}
        if content is not None:
            hdrs.setdefault("Content-Type", "application/json")
            kwargs["content"] = content
        elif json_body is not None:
            kwargs["json"] = json_body
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(method, path, params=clean, headers=hdrs, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiFailure(0, "unreachable",
                             f"cannot reach {self.config.url}: {type(exc).__name__}") from None
        try:
            body = response.json() if response.content else None
        except json.JSONDecodeError:
            body = None
        if response.is_success:
            return body
        error = (body or {}).get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            raise ApiFailure(response.status_code, str(error.get("code", "error")),
                             str(error.get("message", "")), error)
        raise ApiFailure(response.status_code, "http_error",
                         f"HTTP {response.status_code}")

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, *, idempotency_key: str | None = None,
             **params: Any) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.request("POST", path, json_body=body if body is not None else {},
                            params=params, headers=headers)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json_body=body)

    def delete(self, path: str, body: Any = None) -> Any:
        return self.request("DELETE", path, json_body=body)


def raise_for(response: httpx.Response) -> None:
    """ApiFailure for a failed raw response (a streamed one is read first)."""
    if response.is_success:
        return
    response.read()
    try:
        error = response.json().get("error") or {}
    except (json.JSONDecodeError, AttributeError):
        error = {}
    raise ApiFailure(response.status_code, str(error.get("code", "http_error")),
                     str(error.get("message", f"HTTP {response.status_code}")), error)

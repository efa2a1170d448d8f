"""Request and response bodies (pydantic), which the OpenAPI schema is built from."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from eventlog.bindings import KINDS, SPECS

NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
SECRET_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
LEASE_SCOPE_PATTERN = r"^[a-z0-9][a-z0-9_.:/-]{0,199}$"
MAX_SECRET_BYTES = 64 * 1024 - 16
MAX_INT = 2**53  # integers beyond this are refused, not passed to encoders


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Position(BaseModel):
    partition: int
    offset: int


class VerdictBody(BaseModel):
    accepted: bool
    code: str | None
    message: str


class CommandResult(BaseModel):
    """The outcome of one event: where it landed and what the fold decided."""

    event_id: str
    type: str
    position: Position
    verdict: VerdictBody
    aggregate_version: int
    replayed: bool = Field(description="true when an Idempotency-Key returned the first "
                           "outcome instead of appending a new event")


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class NamespaceCreate(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field("", max_length=1024)


class ModuleUpload(_Strict):
    name: str = Field(min_length=1, max_length=512)
    type: Literal["esm", "commonjs", "text", "data", "wasm", "json", "python"] | None = Field(
        None, description="default: guessed from the extension (.js/.mjs esm, .cjs commonjs, "
        ".wasm, .json, .py python, .txt/.html/.css/.md text, else data)")
    content_b64: str = Field(description="the module's bytes, standard base64")


def _known_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown binding kind {kind!r}; one of {', '.join(KINDS)}")
    return kind


class BindingIn(_Strict):
    name: str = Field(pattern=SECRET_NAME_PATTERN)
    kind: Annotated[str, AfterValidator(_known_kind)] = Field(
        json_schema_extra={"enum": list(KINDS)},
        description="; ".join(f"{k}: {SPECS[k].doc}" for k in KINDS))
    target: str = Field("", max_length=128, description="what the kind binds (see kind)")
    value: str = Field("", max_length=5 * 1024)
    namespace: str = Field("", max_length=64, description="service: the target's namespace "
                           "when it is another one (it must have granted this namespace)")
    entrypoint: str = Field("", max_length=128, description="see kind")


class ResourceCreate(_Strict):
    name: str = Field(min_length=1, max_length=64)


class EgressRule(_Strict):
    host: str = Field(min_length=1, max_length=253,
                      description="exact host, or `*.example.com` for any subdomain")
    ports: list[int] = Field(default_factory=list, max_length=32)


class EgressPolicyIn(_Strict):
    mode: Literal["deny", "public", "allow"]
    allow: list[EgressRule] = Field(default_factory=list, max_length=256)


class LimitsIn(_Strict):
    wall_ms: int = Field(0, ge=0, le=15 * 60 * 1000,
                         description="wall-time budget of one request; 0: none")
    subrequests: int = Field(0, ge=0, le=100_000,
                             description="outbound fetches per request; 0: platform default")
    workflow_slots: int = Field(0, ge=0, le=4096, description="workflow invocations in "
                                "flight at once; 0: the engine's default share")
    queue_batches: int = Field(0, ge=0, le=4096, description="queue batches in delivery at "
                               "once; 0: the consumer's default share")
    cron_runs: int = Field(0, ge=0, le=4096, description="cron runs in flight at once; 0: "
                           "the dispatcher's default share")
    tails: int = Field(0, ge=0, le=4096, description="open tail sessions; 0: the platform "
                       "default")
    hyperdrive_connections: int = Field(0, ge=0, le=4096, description="server connections "
                                        "the namespace's Hyperdrive configs hold at their "
                                        "origins, together; 0: the pooler's default")


class ServiceGrantIn(_Strict):
    to: str = Field(pattern=NAME_PATTERN, description="the namespace that may call")
    worker: str = Field("*", max_length=64, description="a worker of this namespace, or *")


class AssetFileIn(_Strict):
    path: str = Field(min_length=1, max_length=1024, description="/dir/file.ext")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="the namespace-scoped digest "
                        "(docs/compatibility.md, Static Assets)")
    size: int = Field(ge=0, le=MAX_INT)


class AssetsIn(_Strict):
    """wrangler's `assets` (the directory read by the CLI) and its files by digest."""

    binding: str = Field("", max_length=128)
    html_handling: Literal["auto-trailing-slash", "force-trailing-slash",
                           "drop-trailing-slash", "none"] = "auto-trailing-slash"
    not_found_handling: Literal["none", "404-page", "single-page-application"] = "none"
    run_worker_first: bool | list[str] = False
    files: list[AssetFileIn] = Field(default_factory=list)
    headers: str = Field("", description="the text of `_headers`")
    redirects: str = Field("", description="the text of `_redirects`")


class AssetDigests(_Strict):
    digests: list[str] = Field(max_length=20_000)


class DeployRequest(_Strict):
    main_module: str = Field("", max_length=512, description="empty for an assets-only "
                             "project")
    modules: list[ModuleUpload] = Field(default_factory=list)
    compatibility_date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    compatibility_flags: list[str] = Field(default_factory=list, max_length=128)
    vars: dict[str, str] = Field(default_factory=dict)
    bindings: list[BindingIn] = Field(default_factory=list, max_length=256)
    cron_triggers: list[str] = Field(default_factory=list, max_length=32)
    routes: list[str | dict[str, str | bool]] = Field(
        default_factory=list, max_length=100,
        description="wrangler `routes`: host claims of the namespace for this worker, made "
        "when the version is promoted (docs/hosts.md)")
    workers_dev: bool = Field(True, description="false: the worker is served on its routes "
                              "only, not on the namespace URL")
    tail_consumers: list[str] = Field(
        default_factory=list, max_length=8,
        description="Tail Workers: names of workers of this namespace whose tail() gets "
        "each invocation of this version")
    tag: str = Field("", max_length=25, description="a tag for the version (wrangler "
                     "versions upload --tag); the version_metadata binding's `tag`")
    message: str = Field("", max_length=100, description="a message for the version "
                         "(wrangler versions upload --message)")
    assets: AssetsIn | None = None


class PromoteRequest(_Strict):
    version_id: str = Field(pattern=ID_PATTERN)
    expected_version: int | None = Field(
        None, ge=0, le=MAX_INT, description="the worker aggregate version the caller saw; "
        "default: the projection's current one")


# Script tags of a user worker (eventlog.events.workers.SCRIPT_TAG_RE, MAX_SCRIPT_TAGS).
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:=-]{0,63}$"


class TagsRequest(_Strict):
    tags: list[Annotated[str, Field(pattern=TAG_PATTERN)]] = Field(max_length=8)


class RollbackRequest(_Strict):
    to: str | None = Field(None, pattern=ID_PATTERN,
                           description="default: the worker's previous active version")
    reason: str = Field("rollback", min_length=1, max_length=1024)
    expected_version: int | None = Field(None, ge=0, le=MAX_INT)


class SecretValue(_Strict):
    value: str = Field(min_length=1, max_length=MAX_SECRET_BYTES)


class HostClaimRequest(_Strict):
    pattern: str = Field(min_length=1, max_length=512)
    match: Literal["exact", "prefix"] = "exact"
    worker: str | None = Field(None, pattern=NAME_PATTERN)


class LeaseTakeoverRequest(_Strict):
    holder: str = Field(pattern=ID_PATTERN)
    ttl_ms: int = Field(30_000, gt=0, le=7 * 24 * 3600 * 1000)
    expected_generation: int | None = Field(None, ge=0, le=MAX_INT)


class TokenIssueRequest(_Strict):
    role: Literal["admin", "deployer", "observer"]
    namespaces: list[str] = Field(default_factory=list, max_length=256)
    label: str = Field("", max_length=256)
    ttl_seconds: int | None = Field(None, gt=0, le=10 * 365 * 24 * 3600)


class TokenRevokeRequest(_Strict):
    reason: str = Field("", max_length=1024)


JsonDict = dict[str, Any]

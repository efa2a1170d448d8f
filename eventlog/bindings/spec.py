"""What the platform knows about one binding kind, in one place.

A `BindingSpec` is read by every layer: wrangler parsing (cli), the control API's
request model and target checks (services/api), event validation and the fold
(eventlog, projections), the bundle the gateway loads (services/state) and the
generated JavaScript indexes (services/dataplane, services/objects). A new kind
is one module here, `workerd/gateway/<module>.js` (its entrypoint),
`workerd/tenant/<module>.js` (its `wrap`) and its backend: docs/adding-a-binding.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from eventlog.errors import InvalidEvent

# The fields of a binding besides its name and kind (eventlog.events.workers.Binding).
FIELDS = ("target", "value", "namespace", "entrypoint")


class BindingLike(Protocol):
    """A binding as the event carries it (eventlog.events.workers.Binding)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def value(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def entrypoint(self) -> str: ...


class BindingConfigError(ValueError):
    """A wrangler config entry of this kind is wrong (the CLI reports it as is)."""


@dataclass(frozen=True)
class Scope:
    """Whose binding it is: the version the gateway loads (props are set from these)."""

    namespace: str
    worker: str
    version: str
    tag: str = ""
    uploaded_at: int = 0
    """ms since the epoch."""


# (binding as the projection holds it) -> the props of the gateway entrypoint's stub
Props = Callable[[Scope, Mapping[str, Any]], dict[str, Any]]
# (version, binding, the secrets in scope) -> the plain env value, or NO_VALUE
PlainValue = Callable[[Scope, Mapping[str, Any], Mapping[str, str]], Any]
# (wrangler config, its file name) -> the control API's bindings of this kind
Parse = Callable[[Mapping[str, Any], str], list[dict[str, str]]]
Check = Callable[[str, BindingLike], None]

NO_VALUE = object()


@dataclass(frozen=True)
class BindingSpec:
    kind: str
    label: str
    """What users call what it binds, in messages ("KV namespace")."""
    check: Check
    """Validates the kind's fields of one binding (`field` prefixes messages)."""
    uses: frozenset[str] = frozenset()
    """The fields of FIELDS it uses; the others must be empty."""
    doc: str = ""
    """What `target`/`value` mean for it (the API's schema shows this)."""
    wrangler_keys: tuple[str, ...] = ()
    """The wrangler config keys `parse` reads."""
    parse: Parse | None = None
    resource: bool = False
    cross_namespace: bool = False
    """`namespace` may name another namespace, which must have granted this one (the API
    checks the grant at deploy, the gateway on every call)."""
    whole_namespace: bool = False
    """With `cross_namespace`: the binding reaches every worker of `namespace`, whose grant
    must then be for every worker (`*`), not for `target`."""
    """`target` names a resource of the namespace that must exist (API and fold check)."""
    props: Props | None = None
    """A platform binding: the props of its gateway entrypoint's stub. Set here, from the
    accepted version and nowhere else (a tenant never chooses them)."""
    value: PlainValue | None = None
    """A plain value in env (json, text, secret)."""
    entrypoint: str = ""
    """The gateway's entrypoint class (`ctx.exports`) serving a platform binding."""
    module: str = ""
    """`workerd/gateway/<module>.js` exports `entrypoint`; `workerd/tenant/<module>.js`
    exports `wrap(stub, name, info)`, which makes the API object tenant code sees."""
    gateway_module: str = ""
    """Where the entrypoint is when not in `gateway/<module>.js` ("gateway": the gateway's
    main module, which exports it itself)."""
    info: bool = False
    """`gateway/<module>.js` exports `info(props)`: public facts the tenant wrapper gets as
    its third argument (never a secret: tenant code can read them)."""
    main_export: str = ""
    """A version with this kind gets `export const <main_export> = mainExport(tenant)`
    (of `tenant/<module>.js`) in its main module: how the platform reaches into the
    tenant's own exports (the workflow engine runs its classes through one)."""
    in_objects: bool = False
    """Durable Object hosts serve it too (objects' env; services/objects/config.py)."""

    def __post_init__(self) -> None:
        unknown = self.uses - set(FIELDS)
        if unknown:
            raise ValueError(f"{self.kind}: unknown fields {sorted(unknown)}")
        if (self.props is None) == (self.value is None):
            raise ValueError(f"{self.kind}: a kind is either a platform binding (props) "
                             "or a plain value (value)")
        if (self.props is not None) != bool(self.entrypoint and self.module):
            raise ValueError(f"{self.kind}: a platform binding names its entrypoint and module")

    def validate(self, field: str, binding: BindingLike) -> None:
        for name in FIELDS:
            if name not in self.uses and getattr(binding, name):
                raise InvalidEvent(f"{field}.{name}",
                                   f"a {self.kind} binding has no {name}")
        self.check(field, binding)


# --- helpers for the specs' wrangler parsing ------------------------------------------

def table_list(doc: Mapping[str, Any], key: str, config: str) -> list[dict[str, Any]]:
    value = doc.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise BindingConfigError(f"{config}: `{key}` must be a list of tables")
    return value


def string(entry: Mapping[str, Any], field_name: str, where: str, *,
           required: bool = True) -> str:
    value = entry.get(field_name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value:
        raise BindingConfigError(f"{where}: `{field_name}` is required and must be a string")
    return value


def integer(entry: Mapping[str, Any], key: str, where: str, low: int, high: int) -> int | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BindingConfigError(f"{where}: `{key}` must be an integer from {low} to {high}")
    return value


def no_check(field: str, binding: BindingLike) -> None:
    """For kinds whose only fields are checked by `uses` (none used)."""

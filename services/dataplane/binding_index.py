"""The JavaScript indexes of the binding kinds, generated from the registry
(eventlog/bindings/) when a workerd config is rendered, so they cannot go stale.

- `binding_entrypoints.js` (gateway and objects): re-exports each kind's entrypoint
  class from `gateway/<module>.js`, which the main module re-exports (`ctx.exports`).
- `binding_kinds.js`: kind -> entrypoint name, and kind -> `info(props)`.
- `tenant/bindings.js` (in the tenant's bundle as `__wdl/bindings.js`): kind -> the
  `wrap` of `tenant/<module>.js`, which the shim applies to each raw stub.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from eventlog.bindings import SPECS, BindingSpec

GENERATED = "// Generated from eventlog/bindings/ (services/dataplane/binding_index.py).\n"


def _platform(objects: bool) -> list[BindingSpec]:
    return [s for s in SPECS.values()
            if s.props is not None and (s.in_objects or not objects)]


def _own_module(spec: BindingSpec) -> str | None:
    module = spec.gateway_module or spec.module
    return None if module == "gateway" else module


def entrypoints_module(*, objects: bool = False) -> str:
    lines = [f"export {{ {s.entrypoint} }} from {json.dumps(f'./{module}.js')};"
             for s in _platform(objects) if (module := _own_module(s)) is not None]
    return GENERATED + "\n".join(lines) + "\n"


def kinds_module(*, objects: bool = False) -> str:
    specs = _platform(objects)
    imports = [f"import {{ info as info{i} }} from {json.dumps(f'./{_own_module(s)}.js')};"
               for i, s in enumerate(specs) if s.info]
    entry = ", ".join(f"{json.dumps(s.kind)}: {json.dumps(s.entrypoint)}" for s in specs)
    info = ", ".join(f"{json.dumps(s.kind)}: info{i}" for i, s in enumerate(specs) if s.info)
    main = ", ".join(f"{json.dumps(s.kind)}: {json.dumps([s.main_export, s.module + '.js'])}"
                     for s in specs if s.main_export)
    return (GENERATED + "".join(f"{line}\n" for line in imports) +
            f"// Binding kind -> the entrypoint (ctx.exports) that serves it.\n"
            f"export const ENTRYPOINTS = {{ {entry} }};\n"
            f"// Binding kind -> info(props): public facts its tenant wrapper gets.\n"
            f"export const INFO = {{ {info} }};\n"
            f"// Binding kind -> [name, tenant module] of the export it adds to the tenant's\n"
            f"// main module (mainExport of that module).\n"
            f"export const MAIN_EXPORTS = {{ {main} }};\n")


def tenant_module() -> str:
    specs = [s for s in SPECS.values() if s.props is not None]
    imports = [f"import {{ wrap as wrap{i} }} from {json.dumps(f'./{s.module}.js')};"
               for i, s in enumerate(specs)]
    wraps = ", ".join(f"{json.dumps(s.kind)}: wrap{i}" for i, s in enumerate(specs))
    return (GENERATED + "\n".join(imports) +
            f"\n// Binding kind -> wrap(stub, name, info): the API object tenant code sees.\n"
            f"export const WRAPPERS = {{ {wraps} }};\n")


def shim_sources_module(tenant_files: Iterable[str]) -> str:
    """A module whose default export maps `__wdl/<file>` to the text module
    `tenant/<file>` (plus the generated index), which every tenant bundle gets."""
    names = [*sorted(tenant_files), "bindings.js"]
    lines = [f"import m{i} from {json.dumps('./tenant/' + n)};" for i, n in enumerate(names)]
    entries = ", ".join(f"{json.dumps('__wdl/' + n)}: m{i}" for i, n in enumerate(names))
    return GENERATED + "\n".join(lines) + f"\nexport default {{ {entries} }};\n"


def gateway_files(objects: bool = False) -> list[str]:
    """The `gateway/<module>.js` files the entrypoints come from."""
    return sorted({f"{m}.js" for s in _platform(objects) if (m := _own_module(s))})

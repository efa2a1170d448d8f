"""Every top-level key of a wrangler config, what `wdl deploy` does with it, and how
`[env.NAME]` inherits it: the one table (docs/compatibility.md, "Wrangler environments,
routes").

A key is
* `served`: WDL gives the worker what Cloudflare would;
* `bundler`: a build setting the pinned wrangler's bundling (`wrangler deploy --dry-run`)
  applies; warned when the modules are uploaded as they are (`no_bundle`, no wrangler);
* `refused`: deploy stops, naming it (a binding WDL lacks: the worker's env would miss it);
* `warned`: deployed without it, and the warning names it with what WDL does instead;
* `tooling`: read by editors and the local CLI only; it changes no deployed worker.

Inheritance follows the pinned wrangler's `normalizeAndValidateEnvironment`: an
`inheritable` key of `[env.NAME]` falls back to the top level, a `not_inheritable` one
(the bindings, `vars`, `define`) must be repeated in each environment (wrangler warns when
the top level has it and the environment does not), and a `top_only` key is read from the
top level whatever the environment. `name` is `<name>-<env>` unless the environment sets
its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

Treatment = Literal["served", "bundler", "refused", "warned", "tooling"]
Inheritance = Literal["inheritable", "not_inheritable", "top_only"]


@dataclass(frozen=True)
class Key:
    treatment: Treatment
    inheritance: Inheritance
    note: str = ""
    """Refused/warned: why, and what to do instead (printed with the key)."""


_S: Final = "served"
_B: Final = "bundler"
_R: Final = "refused"
_W: Final = "warned"
_T: Final = "tooling"
_I: Final = "inheritable"
_N: Final = "not_inheritable"
_TOP: Final = "top_only"
_BINDING = "a binding WDL does not serve yet: the worker's env would lack it"

KEYS: dict[str, Key] = {
    # served
    "name": Key(_S, _I, "`<name>-<env>` in an environment that does not set it"),
    "main": Key(_S, _I),
    "compatibility_date": Key(_S, _I),
    "compatibility_flags": Key(_S, _I),
    "no_bundle": Key(_S, _I),
    "triggers": Key(_S, _I),
    "migrations": Key(_S, _I),
    "route": Key(_S, _I, "a host claim of the namespace (docs/hosts.md)"),
    "routes": Key(_S, _I, "host claims of the namespace (docs/hosts.md)"),
    "workers_dev": Key(_S, _I, "false: served on its routes only, not on the namespace URL"),
    "vars": Key(_S, _N),
    "kv_namespaces": Key(_S, _N),
    "r2_buckets": Key(_S, _N),
    "d1_databases": Key(_S, _N),
    "durable_objects": Key(_S, _N),
    "services": Key(_S, _N),
    "queues": Key(_S, _N),
    "workflows": Key(_S, _N),
    "worker_loaders": Key(_S, _N),
    # served by the helpers of issue 24 (Static Assets, rate limits, version metadata,
    # Tail Workers); refused by cli/wrangler.py UNSUPPORTED_KEYS until their branches land
    "assets": Key(_S, _I),
    "ratelimits": Key(_S, _N),
    "version_metadata": Key(_S, _N),
    "tail_consumers": Key(_S, _N),
    # applied by the pinned wrangler's bundling
    "define": Key(_B, _N),
    "alias": Key(_B, _TOP),
    "rules": Key(_B, _I),
    "build": Key(_B, _I, "the custom build runs in wrangler's bundling"),
    "minify": Key(_B, _I),
    "keep_names": Key(_B, _I),
    "jsx_factory": Key(_B, _I),
    "jsx_fragment": Key(_B, _I),
    "tsconfig": Key(_B, _I),
    "find_additional_modules": Key(_B, _I),
    "preserve_file_names": Key(_B, _I),
    "base_dir": Key(_B, _I),
    "python_modules": Key(_B, _I),
    # refused: bindings (and Pages, service environments) WDL does not serve
    "ai": Key(_R, _N, _BINDING),
    "ai_search": Key(_R, _N, _BINDING),
    "ai_search_namespaces": Key(_R, _N, _BINDING),
    "analytics_engine_datasets": Key(_R, _N, _BINDING),
    "artifacts": Key(_R, _N, _BINDING),
    "browser": Key(_R, _N, _BINDING),
    "cloudchamber": Key(_R, _N, "containers are not served by WDL"),
    "containers": Key(_R, _N, "containers are not served by WDL"),
    "data_blobs": Key(_R, _TOP, "a legacy service-worker binding; import the file instead"),
    "dispatch_namespaces": Key(_S, _N),
    "flagship": Key(_R, _N, _BINDING),
    "hyperdrive": Key(_S, _N),
    "images": Key(_R, _N, _BINDING),
    "logfwdr": Key(_R, _I, _BINDING),
    "media": Key(_R, _N, _BINDING),
    "mtls_certificates": Key(_R, _N, _BINDING),
    "pages_build_output_dir": Key(_R, _TOP, "a Pages project: WDL deploys Workers"),
    "pipelines": Key(_R, _N, _BINDING),
    "secrets_store_secrets": Key(_R, _N, _BINDING),
    "send_email": Key(_R, _N, _BINDING),
    "site": Key(_R, _TOP, "Workers Sites: use `assets`"),
    "stream": Key(_R, _N, _BINDING),
    "streaming_tail_consumers": Key(_R, _N, _BINDING),
    "text_blobs": Key(_R, _TOP, "a legacy service-worker binding; import the file instead"),
    "unsafe": Key(_R, _N, "raw bindings and metadata the platform cannot check"),
    "unsafe_hello_world": Key(_R, _N, _BINDING),
    "vectorize": Key(_R, _N, _BINDING),
    "vpc_networks": Key(_R, _N, _BINDING),
    "vpc_services": Key(_R, _N, _BINDING),
    "wasm_modules": Key(_R, _TOP, "a legacy service-worker binding; import the module"),
    # warned: deployed without them
    "account_id": Key(_W, _I, "WDL has no accounts: the namespace (--ns) plays that part"),
    "cache": Key(_W, _I, "there is no edge cache"),
    "compliance_region": Key(_W, _I, "WDL runs where you run it"),
    # Only `wrangler dev` reads it; deploying it changes nothing, as on Cloudflare.
    "dev": Key(_T, _TOP, "`wrangler dev` settings; `wdl dev` takes its own options"),
    "first_party_worker": Key(_W, _I, "a Cloudflare-internal flag"),
    "keep_vars": Key(_W, _TOP, "a deploy sets exactly the config's vars; secrets are kept"),
    "legacy_env": Key(_W, _TOP, "only wrangler environments are read (`--env`); "
                      "service environments are not"),
    "limits": Key(_W, _I, "the namespace's limits apply (docs/containment.md)"),
    "logpush": Key(_W, _I, "use `wdl tail` and the platform's logs"),
    "observability": Key(_W, _I, "use `wdl tail`, the metrics and logs of the platform"),
    "placement": Key(_W, _I, "the worker runs where the platform runs"),
    "preview_urls": Key(_W, _I, "versions are not served on URLs of their own"),
    "previews": Key(_W, _I, "versions are not served on URLs of their own"),
    "secrets": Key(_W, _N, "secrets are set with `wdl secret put`; the required list is "
                   "not checked"),
    "upload_source_maps": Key(_W, _I, "source maps are not uploaded"),
    # tooling
    "$schema": Key(_T, _TOP),
    "send_metrics": Key(_T, _TOP),
    "env": Key(_T, _TOP, "environments: `wdl deploy --env NAME`"),
}


class EnvError(ValueError):
    """`--env NAME` cannot be applied to the config."""


def keys_of(treatment: Treatment) -> tuple[str, ...]:
    return tuple(k for k, spec in KEYS.items() if spec.treatment == treatment)


# What wrangler writes into a config it generates (a framework build's
# `dist/<worker>/wrangler.json`, reached through `.wrangler/deploy/config.json`): where it
# came from. Not config: never warned.
GENERATED_MARKS = frozenset({"configPath", "userConfigPath", "topLevelName"})


def warnings_for(doc: dict[str, Any], config: str, *, bundled: bool) -> list[str]:
    """One line per key of the (merged) config that deploys without effect.

    A generated config (a framework build's) was bundled by its toolchain: its bundler
    keys were applied there, and `legacy_env = true` is wrangler's default written out."""
    out: list[str] = []
    generated = bool(GENERATED_MARKS & set(doc))
    bundled = bundled or generated
    for key in doc:
        spec = KEYS.get(key)
        if key in GENERATED_MARKS or (generated and key == "legacy_env" and doc[key] is True):
            continue
        if spec is None:
            out.append(f"{config}: `{key}` is not a wrangler config key WDL knows; "
                       "it is ignored")
        elif spec.treatment == "warned" and doc[key] not in (None, False, {}, []):
            out.append(f"{config}: `{key}` is ignored by WDL: {spec.note}")
        elif spec.treatment == "bundler" and not bundled and doc[key] not in (None, {}, []):
            out.append(f"{config}: `{key}` is ignored: it is applied by wrangler's bundling, "
                       "and these modules are uploaded as they are")
    return out


def select_env(doc: dict[str, Any], env: str | None,
               config: str) -> tuple[dict[str, Any], list[str]]:
    """The config as `[env.NAME]` sees it (wrangler's inheritance) and the warnings
    wrangler gives for it. Without `env`: the top level, without `env`."""
    envs = doc.get("env")
    if envs is not None and (not isinstance(envs, dict)
                             or not all(isinstance(e, dict) for e in envs.values())):
        raise EnvError(f"{config}: `env` must be a table of environments ([env.NAME])")
    top = {k: v for k, v in doc.items() if k != "env"}
    if env is None:
        return top, []
    defined = sorted(envs or {})
    if env not in defined:
        listing = (f"the defined environments are: {', '.join(defined)}" if defined
                   else "the config defines none")
        raise EnvError(f"{config}: no environment {env!r} ([env.{env}]); {listing}")
    raw: dict[str, Any] = envs[env]  # type: ignore[index]
    warnings: list[str] = []
    merged: dict[str, Any] = {}
    for key, value in raw.items():
        spec = KEYS.get(key)
        if spec is not None and spec.inheritance == "top_only":
            warnings.append(f"{config}: `env.{env}.{key}` is ignored: `{key}` is read from "
                            "the top level only")
        else:
            merged[key] = value
    for key, value in top.items():
        spec = KEYS.get(key)
        if key in merged:
            continue
        if spec is not None and spec.inheritance == "not_inheritable":
            warnings.append(f"{config}: `{key}` exists at the top level, but not on "
                            f"`env.{env}`: it is not inherited by environments (add it to "
                            f"[env.{env}])")
        elif key in ("route", "routes") and ("route" in raw or "routes" in raw):
            continue  # the environment's routes replace the top level's, either spelling
        else:
            merged[key] = value
    if "name" not in raw and isinstance(top.get("name"), str):
        merged["name"] = f"{top['name']}-{env}"
    return merged, warnings

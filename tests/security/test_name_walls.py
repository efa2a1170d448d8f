"""Walls of validation and the CLI (issue 22, items 5 and 7): what a tenant may name,
schedule, flag, upload and fetch.

The attacker holds a deployer token scoped to its namespace and drives the real `wdl` CLI
(and, where the CLI checks locally first, the control API directly, since a tenant can
skip the CLI). Every refusal must be clean (an exit code and a message naming what was
wrong, never a traceback) and must write nothing: the attacker's event log and version
list read back unchanged, and the victim reads back intact.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.security.rig import ATTACKER, VICTIM, Result, Walls

pytestmark = pytest.mark.security

HELLO = "export default { fetch() { return new Response('ok'); } };"


def flat(text: str) -> str:
    """The CLI's message on one line (rich wraps long lines on a narrow console)."""
    return " ".join(text.split())


async def _get(walls: Walls, path: str, token: str, **params: Any) -> Any:
    async with httpx.AsyncClient(base_url=walls.api, timeout=60) as client:
        r = await client.get(path, params=params, headers={"authorization": f"Bearer {token}"})
    r.raise_for_status()
    return r.json()


async def log_of(walls: Walls) -> list[str]:
    """The attacker namespace's events (ids), once the audit trail is settled. Read over
    HTTP with the admin's token: every test reads it twice, a CLI process each is slow."""
    admin = walls.admin.env["WDL_TOKEN"]
    previous: list[str] | None = None
    for _ in range(20):
        ids: list[str] = []
        cursor = None
        while True:
            page = await _get(walls, "/v1/audit", admin, namespace=ATTACKER, limit=500,
                              **({"cursor": cursor} if cursor else {}))
            ids.extend(str(row.get("event_id")) for row in page["items"])
            cursor = page.get("next_cursor")
            if cursor is None:
                break
        if ids == previous:
            return ids
        previous = ids
        await asyncio.sleep(0.2)
    raise AssertionError("the audit trail of the attacker namespace did not settle")


async def versions_of(walls: Walls, worker: str) -> list[str]:
    async with httpx.AsyncClient(base_url=walls.api, timeout=60) as client:
        r = await client.get(f"/v1/namespaces/{ATTACKER}/workers/{worker}/versions",
                             headers=_auth(walls))
    if r.status_code == 404:
        return []
    r.raise_for_status()
    return [str(v.get("version_id")) for v in r.json()]


class Unchanged:
    """Asserts that what happens inside writes nothing to the attacker's namespace."""

    def __init__(self, walls: Walls, worker: str = "") -> None:
        self.walls, self.worker = walls, worker

    async def __aenter__(self) -> Unchanged:
        self.log = await log_of(self.walls)
        self.versions = await versions_of(self.walls, self.worker) if self.worker else []
        return self

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is not None:
            return
        assert await log_of(self.walls) == self.log, "a refused attack wrote to the log"
        if self.worker:
            assert await versions_of(self.walls, self.worker) == self.versions
        await self.walls.assert_victim_intact()


def refused(result: Result, *needles: str) -> str:
    text = flat(result.text)
    assert result.code != 0, f"accepted:\n{text}"
    assert "Traceback" not in result.text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"
    return text


async def api_deploy(walls: Walls, worker: str, **body: Any) -> httpx.Response:
    """A deploy straight to the control API with the attacker's token (no CLI checks)."""
    payload = {"main_module": "index.js",
               "modules": [{"name": "index.js", "content_b64":
                            "ZXhwb3J0IGRlZmF1bHQgeyBmZXRjaCgpIHsgcmV0dXJuIG5ldyBSZXNwb25zZSgn"
                            "b2snKTsgfSB9Ow=="}],
               "compatibility_date": "2025-11-17", **body}
    async with httpx.AsyncClient(base_url=walls.api, timeout=60) as client:
        return await client.post(f"/v1/namespaces/{ATTACKER}/workers/{worker}/versions",
                                 json=payload, headers=_auth(walls))


def _auth(walls: Walls) -> dict[str, str]:
    return {"authorization": f"Bearer {walls.attacker.env['WDL_TOKEN']}"}


async def baseline(walls: Walls, worker: str) -> None:
    """One accepted version of `worker`, so an unchanged version list means something."""
    done = walls.extra.setdefault("name_walls_baseline", set())
    if worker not in done:
        await walls.attacker.deploy(walls.attacker.project(worker, HELLO), "--no-bundle")
        done.add(worker)


# --- crons -------------------------------------------------------------------------------

@pytest.mark.parametrize("cron", [
    "* * * * * * *",          # seconds and years: scheduled() every second
    "* * * * * *",            # seconds
    "0 0 * * 0",              # Cloudflare's weekdays are 1-7 (1 = Sunday)
    "0 0 ? * *",
])
async def test_crons_outside_cloudflares_five_fields_are_refused(walls: Walls, cron: str) -> None:
    await baseline(walls, "cronjob")
    async with Unchanged(walls, "cronjob"):
        result = await walls.attacker.deploy(walls.attacker.project(
            "cronjob", HELLO, f'[triggers]\ncrons = ["{cron}"]\n'), "--no-bundle", ok=False)
        refused(result, "cron", cron)
        r = await api_deploy(walls, "cronjob", cron_triggers=[cron])
        assert r.status_code == 400, r.text
        assert "cron" in r.json()["error"]["message"]


async def test_cloudflares_cron_extensions_deploy(walls: Walls) -> None:
    crons = ["0 18 * * 6L", "0 10 * * MON#2", "0 0 L * *", "10 7 * * mon-fri", "0 0 15W * *"]
    version = await walls.attacker.deploy_js(
        "cronok", HELLO, f"[triggers]\ncrons = {json.dumps(crons)}\n", "--no-bundle")
    assert version


# --- compatibility date and flags ---------------------------------------------------------

@pytest.mark.parametrize(("date", "flags", "code"), [
    ("2025-11-17", ["no_such_flag_xyz"], "unknown_compatibility_flag"),
    ("2025-11-17", ["experimental"], "experimental_compatibility_flag"),
    ("2025-11-17", ["nodejs_compat", "unsafe_module"], "experimental_compatibility_flag"),
    ("2025-11-17", ["nodejs_compat", "no_nodejs_compat"], "contradictory_compatibility_flags"),
    # Not experimental, but it makes workerd fetch Python packages from the network at load
    # time, outside any egress policy (and then fail the process's worker).
    ("2025-11-17", ["python_workers"], "unsupported_compatibility_flag"),
    ("2025-11-17", ["python_workflows"], "unsupported_compatibility_flag"),
    ("2026-11-18", [], "compatibility_date_unsupported"),   # the pinned workerd's is 11-17
    ("2099-01-01", [], "compatibility_date_unsupported"),
])
async def test_flags_and_dates_the_runtime_refuses_are_refused_before_anything_is_written(
        walls: Walls, date: str, flags: list[str], code: str) -> None:
    await baseline(walls, "flagged")
    async with Unchanged(walls, "flagged"):
        toml = (f'name = "flagged"\nmain = "src/index.js"\ncompatibility_date = "{date}"\n'
                f"compatibility_flags = {json.dumps(flags)}\n")
        project = walls.attacker.project("flagged", HELLO)
        (project / "wrangler.toml").write_text(toml)
        result = await walls.attacker.deploy(project, "--no-bundle", ok=False)
        refused(result, code)
        r = await api_deploy(walls, "flagged", compatibility_date=date,
                             compatibility_flags=flags)
        assert (r.status_code, r.json()["error"]["code"]) == (400, code), r.text
    r = await walls.attack("flagged", "/")
    assert (r.status_code, r.text) == (200, "ok")


# --- reserved names -----------------------------------------------------------------------

# Spellings of each prefix and case; tests/unit/test_events_validation.py has the rest.
RESERVED = ["__WDL_BINDINGS", "__Wdl_Alarms", "_wdl_meta", "_CF_X"]


@pytest.mark.parametrize("name", RESERVED)
async def test_secrets_with_reserved_names_are_refused(walls: Walls, name: str) -> None:
    await baseline(walls, "probe")
    async with Unchanged(walls, "probe"):
        for scope in (("--worker", "probe"), ()):
            result = await walls.attacker.wdl("secret", "put", name, "--ns", ATTACKER, *scope,
                                              stdin="x", ok=False)
            refused(result, "reserved_name", name)
    r = await walls.attack("probe", "/")
    assert (r.status_code, r.text) == (200, "ok")  # the namespace still serves


@pytest.mark.parametrize(("toml", "name"), [
    ('[vars]\n__WDL_DO = "x"\n', "__WDL_DO"),
    ('[vars]\n__wdl_bindings = "x"\n', "__wdl_bindings"),
    ("[vars]\n__WDL_BINDINGS = { VKV = \"kv\" }\n", "__WDL_BINDINGS"),      # a json binding
    ('[vars]\n_cf_x = "x"\n', "_cf_x"),
    ('[[kv_namespaces]]\nbinding = "_CF_KV"\nid = "reserved-kv"\n', "_CF_KV"),
    ('[[r2_buckets]]\nbinding = "__WDL_R2"\nbucket_name = "reserved-bucket"\n', "__WDL_R2"),
    ('[[services]]\nbinding = "_wdl_svc"\nservice = "probe"\n', "_wdl_svc"),
    ('[[services]]\nbinding = "SVC"\nservice = "probe"\nentrypoint = "__wdl_alarm"\n',
     "__wdl_alarm"),
    ('[[durable_objects.bindings]]\nname = "OBJ"\nclass_name = "_cf_Obj"\n'
     '[[migrations]]\ntag = "v1"\nnew_sqlite_classes = ["_cf_Obj"]\n', "_cf_Obj"),
])
async def test_bindings_and_vars_with_reserved_names_are_refused(
        walls: Walls, toml: str, name: str) -> None:
    await baseline(walls, "probe")
    async with Unchanged(walls, "probe"):
        result = await walls.attacker.deploy(walls.attacker.project("probe", HELLO, toml),
                                             "--no-bundle", ok=False)
        refused(result, "reserved", name)
    r = await api_deploy(walls, "probe", vars={name: "x"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "reserved_name"), r.text


@pytest.mark.parametrize("module", ["__WDL/shim.js", "__wdl_x.js", "_cf_x.js", "_WDL_/a.js"])
async def test_modules_with_reserved_names_are_refused(walls: Walls, module: str) -> None:
    await baseline(walls, "probe")
    async with Unchanged(walls, "probe"):
        project = walls.attacker.project("probe", HELLO, "no_bundle = true\n",
                                         files={f"src/{module}": "export const x = 1;\n"})
        result = await walls.attacker.deploy(project, ok=False)
        refused(result, "reserved", module)


# --- bodies -------------------------------------------------------------------------------

async def _chunks(total: int, size: int = 1 << 20) -> AsyncIterator[bytes]:
    piece = b"a" * size
    for _ in range(total // size):
        yield piece


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1/namespaces/attacker/workers/probe/versions"),
    ("PUT", "/v1/namespaces/attacker/secrets/BIG"),
    ("POST", "/v1/namespaces"),
    ("POST", "/v1/namespaces/attacker/hosts"),
])
async def test_an_oversized_chunked_body_is_413_on_every_route(
        walls: Walls, method: str, path: str) -> None:
    async with Unchanged(walls):
        async with httpx.AsyncClient(base_url=walls.api, timeout=120) as client:
            r = await client.request(method, path, content=_chunks(40 << 20),
                                     headers={**_auth(walls),
                                              "content-type": "application/json"})
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "request_too_large"


# --- what no_bundle uploads ---------------------------------------------------------------

@pytest.fixture
def elsewhere(walls: Walls) -> Path:
    """Files outside any project: what an upload must never carry."""
    place = walls.attacker.workdir / "elsewhere"
    place.mkdir(exist_ok=True)
    (place / "x.js").write_text(HELLO)
    (place / "private.json").write_text('{"key": "do-not-upload"}')
    return place


async def test_no_bundle_main_outside_the_project_is_refused(
        walls: Walls, elsewhere: Path) -> None:
    await baseline(walls, "outside")
    async with Unchanged(walls, "outside"):
        project = walls.attacker.project("outside", HELLO)
        rel = "../" * len(project.relative_to(walls.attacker.workdir).parts) + "elsewhere/x.js"
        (project / "wrangler.toml").write_text(
            f'name = "outside"\nmain = "{rel}"\ncompatibility_date = "2025-11-17"\n'
            "no_bundle = true\n")
        result = await walls.attacker.deploy(project, ok=False)
        refused(result, "main", "outside the project")


@pytest.mark.parametrize("link", ["file", "directory"])
async def test_no_bundle_symlinks_out_of_the_project_are_refused(
        walls: Walls, elsewhere: Path, link: str) -> None:
    await baseline(walls, "outside")
    async with Unchanged(walls, "outside"):
        project = walls.attacker.project("outside", HELLO, "no_bundle = true\n")
        if link == "file":
            (project / "src" / "leak.json").symlink_to(elsewhere / "private.json")
        else:
            (project / "src" / "lib").symlink_to(elsewhere, target_is_directory=True)
        result = await walls.attacker.deploy(project, ok=False)
        refused(result, "outside the project")


# --- wrangler config types ----------------------------------------------------------------

@pytest.mark.parametrize(("toml", "key"), [
    ('vars = "oops"\n', "vars"),
    ('compatibility_flags = "nodejs_compat"\n', "compatibility_flags"),
    ("compatibility_flags = [1]\n", "compatibility_flags"),
    ('triggers = "hourly"\n', "triggers"),
    ('[triggers]\ncrons = "* * * * *"\n', "triggers.crons"),
    ('no_bundle = "yes"\n', "no_bundle"),
    ('kv_namespaces = "x"\n', "kv_namespaces"),
    ("[[kv_namespaces]]\nbinding = 3\n", "binding"),
    ('queues = "x"\n', "queues"),
    ('migrations = "x"\n', "migrations"),
    ('durable_objects = "x"\n', "durable_objects"),
    ('[vars]\nA = 1\n[[d1_databases]]\nbinding = "DB"\nmigrations_dir = 5\n', "migrations_dir"),
])
async def test_wrangler_type_errors_are_clean_exits(walls: Walls, toml: str, key: str) -> None:
    async with Unchanged(walls, "typed"):
        result = await walls.attacker.deploy(walls.attacker.project("typed", HELLO, toml),
                                             "--no-bundle", ok=False)
        text = refused(result, f"`{key}`", "must be")
        assert result.code == 2, text


@pytest.mark.parametrize(("field", "value"), [
    ("name", "3"), ("main", "[]"), ("compatibility_date", "2025-11-17")])
async def test_wrangler_top_level_type_errors_are_clean_exits(
        walls: Walls, field: str, value: str) -> None:
    async with Unchanged(walls, "typed"):
        project = walls.attacker.project("typed", HELLO)
        base = {"name": '"typed"', "main": '"src/index.js"',
                "compatibility_date": '"2025-11-17"', field: value}
        (project / "wrangler.toml").write_text(
            "".join(f"{k} = {v}\n" for k, v in base.items()))
        result = await walls.attacker.deploy(project, "--no-bundle", ok=False)
        text = refused(result, f"`{field}`", "must be")
        assert result.code == 2, text


# --- grants -------------------------------------------------------------------------------

async def _grants(walls: Walls) -> list[dict[str, Any]]:
    result = await walls.attacker.wdl("ns", "grants", "--ns", ATTACKER, "--json")
    return [g for g in result.json() if g["namespace"] == VICTIM]


@pytest.mark.parametrize("grants", [["probe"], ["probe", "*"], ["probe", "cronok", "*"]])
async def test_revoke_without_worker_removes_every_grant(
        walls: Walls, grants: list[str]) -> None:
    await baseline(walls, "probe")
    for worker in grants:
        await walls.attacker.wdl("ns", "grant", VICTIM, "--ns", ATTACKER, "--worker", worker)
    assert len(await _grants(walls)) == len(grants)
    result = await walls.attacker.wdl("ns", "revoke", VICTIM, "--ns", ATTACKER, ok=False)
    assert result.code == 0, result.text
    assert await _grants(walls) == [], flat(result.text)
    for worker in grants:
        assert worker in flat(result.text)  # it says what it revoked


async def test_revoke_of_a_missing_grant_is_refused_and_says_so(walls: Walls) -> None:
    async with Unchanged(walls):
        result = await walls.attacker.wdl("ns", "revoke", VICTIM, "--ns", ATTACKER, ok=False)
        refused(result, "grant_missing")


# --- egress spellings ---------------------------------------------------------------------

EGRESS_JS = """\
export default {
  async fetch(request) {
    const target = new URL(request.url).searchParams.get("url");
    try {
      const r = await fetch(target);
      return new Response(`fetched ${r.status}`);
    } catch (err) {
      return new Response(String(err && err.message || err), { status: 502 });
    }
  },
};
"""

# Each embeds a loopback, private or metadata IPv4 address. None may be fetched.
SPELLINGS = [
    ("http://[::ffff:0:7f00:1]/", "127.0.0.1"),             # IPv4-translated
    ("http://[::ffff:0:127.0.0.1]/", "127.0.0.1"),
    ("http://[0:0:0:0:0:ffff:7f00:1]/", "127.0.0.1"),       # IPv4-mapped, long form
    ("http://[::127.0.0.1]/", "127.0.0.1"),                 # IPv4-compatible
    ("http://[2002:7f00:1::]/", "127.0.0.1"),               # 6to4
    ("http://[2002:a9fe:a9fe::1]/", "169.254.169.254"),
    ("http://[64:ff9b::7f00:1]/", "127.0.0.1"),             # NAT64
    ("http://[64:ff9b:1::a00:1]/", "10.0.0.1"),             # local-use NAT64
    ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "127.0.0.1"),  # Teredo client
    ("http://[2606:4700::5efe:7f00:1]/", "127.0.0.1"),      # ISATAP
]


@pytest.fixture(scope="module")
async def egress_worker(walls: Walls) -> AsyncIterator[str]:
    # An allow-list with no IP in it: were the embedded address missed, the URL would still
    # be refused ("not in the allow list") and no packet would leave this machine; the test
    # asserts the reason names the embedded address.
    await walls.admin.wdl("ns", "egress", "set", "allow", "--allow", "api.example.com:443",
                          "--ns", ATTACKER)
    await walls.attacker.deploy_js("egress", EGRESS_JS, "", "--no-bundle")
    try:
        yield "egress"
    finally:
        await walls.admin.wdl("ns", "egress", "set", "public", "--ns", ATTACKER)


@pytest.mark.parametrize(("url", "embedded"), SPELLINGS)
async def test_egress_judges_the_ipv4_address_every_ipv6_spelling_embeds(
        walls: Walls, egress_worker: str, url: str, embedded: str) -> None:
    r = await walls.attack(egress_worker, "/", params={"url": url})
    assert r.status_code == 502, r.text
    assert f"WDL egress policy of namespace {ATTACKER} refused" in r.text, r.text
    assert f"{embedded} embedded in" in r.text, r.text

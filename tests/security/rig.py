"""The security suite's rig: an attacker beside a victim, on a running platform.

The victim namespace holds a worker `vault` with a KV namespace, an R2 bucket, a
D1 database, a SQLite-backed Durable Object and a secret, all seeded through the
worker itself. The attacker namespace is driven only with a *deployer token
scoped to it*, through the real `wdl` CLI and the real gateway: what it can do
is what any tenant of the platform can do. The admin acts only to set the scene
and to read the victim back.

Two shapes of the platform give the same `Walls`: the real servers (Kafka,
Redis, PostgreSQL, S3, workerd; the components in-process, `wdl up`'s code)
and `wdl dev` as a user runs it (a subprocess on embedded backends).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.platform_stack import WDL

VICTIM = "victim"
ATTACKER = "attacker"
DOMAIN = "workers.local"
VICTIM_SECRET = "victim-secret-value-7f3a"
INTERNAL_TOKEN = "wdl-internal-security-suite-token"

VICTIM_TOML = """\
name = "vault"
main = "src/index.js"
compatibility_date = "2025-11-17"

[[kv_namespaces]]
binding = "VKV"
id = "vault-kv"

[[r2_buckets]]
binding = "VR2"
bucket_name = "vault-files"

[[d1_databases]]
binding = "VDB"
database_name = "vault-db"

[[durable_objects.bindings]]
name = "SAFE"
class_name = "Safe"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Safe"]
"""

VICTIM_JS = """\
import { DurableObject } from "cloudflare:workers";

export class Safe extends DurableObject {
  async put(value) {
    this.ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS box (v TEXT)");
    this.ctx.storage.sql.exec("DELETE FROM box");
    this.ctx.storage.sql.exec("INSERT INTO box VALUES (?)", value);
    await this.ctx.storage.put("v", value);
  }
  async get() {
    const rows = this.ctx.storage.sql.exec(
      "SELECT name FROM sqlite_master WHERE name = 'box'").toArray();
    const box = rows.length
      ? this.ctx.storage.sql.exec("SELECT v FROM box").toArray().map((r) => r.v) : [];
    return { kv: (await this.ctx.storage.get("v")) ?? null, box };
  }
}

async function sha256(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    if (request.method === "POST" && path === "/seed") {
      await env.VKV.put("k", "victim-kv-value");
      await env.VR2.put("o", "victim-r2-object");
      await env.VDB.batch([
        env.VDB.prepare("CREATE TABLE IF NOT EXISTS t (a TEXT)"),
        env.VDB.prepare("DELETE FROM t"),
        env.VDB.prepare("INSERT INTO t VALUES ('victim-d1-row')"),
      ]);
      await env.SAFE.getByName("s").put("victim-do-value");
      return new Response("seeded");
    }
    if (path === "/state") {
      const object = await env.VR2.get("o");
      const { results } = await env.VDB.prepare("SELECT a FROM t ORDER BY rowid").all();
      const tables = await env.VDB.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, 1) != '_' " +
        "ORDER BY name").all();
      return Response.json({
        kv: await env.VKV.get("k"),
        kv_keys: (await env.VKV.list()).keys.map((k) => k.name),
        r2: object === null ? null : await object.text(),
        r2_keys: (await env.VR2.list()).objects.map((o) => o.key),
        d1: results.map((r) => r.a),
        d1_tables: tables.results.map((r) => r.name),
        do: await env.SAFE.getByName("s").get(),
        secret: await sha256(env.VAULT_SECRET ?? ""),
      });
    }
    if (path === "/write") {
      // The victim's own writes: an attack must not stall them.
      const started = Date.now();
      await env.VDB.prepare("INSERT INTO t VALUES (?)").bind("w").run();
      await env.VDB.prepare("DELETE FROM t WHERE a = 'w'").run();
      return Response.json({ ms: Date.now() - started });
    }
    return new Response("vault", { status: 200 });
  },
};
"""

EXPECTED_VICTIM = {
    "kv": "victim-kv-value", "kv_keys": ["k"],
    "r2": "victim-r2-object", "r2_keys": ["o"],
    "d1": ["victim-d1-row"], "d1_tables": ["t"],
    "do": {"kv": "victim-do-value", "box": ["victim-do-value"]},
    "secret": hashlib.sha256(VICTIM_SECRET.encode()).hexdigest(),
}


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.err + self.out

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Actor:
    """Someone holding a token: runs `wdl` with it (the CLI as a user runs it)."""

    name: str
    env: dict[str, str]
    workdir: Path
    namespace: str | None = None
    _projects: int = 0

    async def wdl(self, *args: str, stdin: str | None = None, ok: bool = True,
                  timeout: float = 120) -> Result:
        proc = await asyncio.create_subprocess_exec(
            WDL, *args, env=self.env, cwd=self.workdir, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin is not None else None), timeout)
        result = Result(proc.returncode or 0, out.decode(), err.decode())
        if ok and result.code != 0:
            raise AssertionError(f"{self.name}: wdl {' '.join(args)} failed ({result.code}):\n"
                                 f"{result.text}")
        return result

    def project(self, name: str, js: str, toml: str = "", *,
                files: Mapping[str, str] | None = None) -> Path:
        """A wrangler project `name` (main = src/index.js) under this actor's workdir;
        `toml` is appended to the generated wrangler.toml."""
        self._projects += 1
        directory = self.workdir / f"{name}-{self._projects}"
        (directory / "src").mkdir(parents=True)
        (directory / "wrangler.toml").write_text(
            f'name = "{name}"\nmain = "src/index.js"\ncompatibility_date = "2025-11-17"\n'
            + textwrap.dedent(toml))
        (directory / "src" / "index.js").write_text(js)
        for rel, text in (files or {}).items():
            target = directory / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        return directory

    async def deploy(self, project: Path, *extra: str, ok: bool = True) -> Result:
        assert self.namespace is not None
        return await self.wdl("deploy", str(project), "--ns", self.namespace, "--json", *extra,
                              ok=ok)

    async def deploy_js(self, name: str, js: str, toml: str = "", *extra: str) -> str:
        """Deploy a worker and return its version id."""
        result = await self.deploy(self.project(name, js, toml), *extra)
        return str(result.json()["version_id"])


@dataclass
class Walls:
    kind: str                 # "servers" | "dev"
    gateway: str              # http://127.0.0.1:<port>
    api: str                  # the control API
    data_dir: Path            # WDL_DATA_DIR of the platform (D1, DO and dev files live here)
    admin: Actor
    attacker: Actor
    internal_token: str
    # Other internal endpoints of this platform by component (e.g. "state", "data"): urls.
    internals: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def host(self, namespace: str) -> str:
        return f"{namespace}.{DOMAIN}"

    async def get(self, host: str, path: str, *, method: str = "GET", timeout: float = 30,
                  **kw: Any) -> httpx.Response:
        headers = {"host": host, **kw.pop("headers", {})}
        async with httpx.AsyncClient(base_url=self.gateway, timeout=timeout) as client:
            return await client.request(method, path, headers=headers, **kw)

    async def attack(self, worker: str, path: str = "/", **kw: Any) -> httpx.Response:
        """A request to one of the attacker's workers on its namespace host."""
        return await self.get(self.host(ATTACKER), f"/{worker}{path}", **kw)

    async def victim_state(self) -> dict[str, Any]:
        r = await self.get(self.host(VICTIM), "/vault/state")
        assert r.status_code == 200, r.text
        state: dict[str, Any] = r.json()
        return state

    async def assert_victim_intact(self) -> None:
        assert await self.victim_state() == EXPECTED_VICTIM


async def set_the_scene(admin: Actor, workdir: Path) -> Actor:
    """Create the victim and the attacker namespace; return the attacker, holding a deployer
    token scoped to its namespace only (`workdir`, existing, holds its projects)."""
    await admin.wdl("ns", "create", VICTIM)
    await admin.wdl("ns", "create", ATTACKER)
    victim = Actor("victim-admin", admin.env, admin.workdir, VICTIM)
    await victim.deploy(victim.project("vault", VICTIM_JS, VICTIM_TOML.split("\n", 3)[3]))
    await victim.wdl("secret", "put", "VAULT_SECRET", "--ns", VICTIM, "--worker", "vault",
                     stdin=VICTIM_SECRET)
    issued = await admin.wdl("tokens", "issue", "--role", "deployer", "--namespace", ATTACKER,
                             "--label", "attacker", "--json")
    token = issued.json()["token"]
    env = {**admin.env, "WDL_TOKEN": token}
    return Actor("attacker", env, workdir, ATTACKER)


async def seed_victim(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as client:
        r = await client.post("/vault/seed", headers={"host": f"{VICTIM}.{DOMAIN}"})
        assert (r.status_code, r.text) == (200, "seeded"), r.text

"""`wdl init [DIR]`: a wrangler project that `wdl deploy` deploys as it is."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from cli.common import fail

COMPATIBILITY_DATE = "2025-06-01"
_HELLO = """export default {
  async fetch(request) {
    const url = new URL(request.url);
    return new Response(`Hello from NAME! You asked for ${url.pathname}\\n`);
  },
};
"""
_KV = """// GET /KEY reads a value, PUT /KEY stores the request body (the KV binding CACHE).
export default {
  async fetch(request, env) {
    const key = new URL(request.url).pathname.slice(1) || "index";
    if (request.method === "PUT") {
      await env.CACHE.put(key, await request.text());
      return new Response("stored\\n");
    }
    const value = await env.CACHE.get(key);
    return value === null ? new Response("not found\\n", { status: 404 }) : new Response(value);
  },
};
"""
_R2 = """// GET /KEY reads an object, PUT /KEY stores the request body (the R2 binding FILES).
export default {
  async fetch(request, env) {
    const key = new URL(request.url).pathname.slice(1) || "index";
    if (request.method === "PUT") {
      const object = await env.FILES.put(key, await request.arrayBuffer());
      return Response.json({ key: object.key, size: object.size });
    }
    const object = await env.FILES.get(key);
    return object === null ? new Response("not found\\n", { status: 404 })
                           : new Response(object.body);
  },
};
"""
# template -> (src/index.js, extra wrangler.toml; NAME is the worker name)
TEMPLATES = {
    "hello": (_HELLO, ""),
    "kv": (_KV, '\n# created on `wdl deploy` if missing\n[[kv_namespaces]]\n'
                'binding = "CACHE"\nid = "NAME-cache"\n'),
    "r2": (_R2, '\n# created on `wdl deploy` if missing\n[[r2_buckets]]\n'
                'binding = "FILES"\nbucket_name = "NAME-files"\n'),
}
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def init(directory: Annotated[Path, typer.Argument(help="project directory "
                                                   "(created; must be empty)")] = Path("."),
         template: Annotated[str, typer.Option(
             "--template", "-t", help="hello (plain fetch), kv or r2")] = "hello",
         name: Annotated[str | None, typer.Option(
             "--name", help="worker name (default: the directory's name)")] = None) -> None:
    """Scaffold a wrangler project (wrangler.toml + src/index.js) for `wdl deploy`."""
    if template not in TEMPLATES:
        raise fail(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}", 2)
    root = directory.resolve()
    worker = name or re.sub(r"[^a-z0-9-]+", "-", root.name.lower()).strip("-")
    if not _NAME.match(worker):
        raise fail(f"{worker!r} is not a valid worker name (lowercase letters, digits and "
                   "dashes); pass --name", 2)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise fail(f"{root} is not empty; `wdl init` only writes into a new or empty "
                   "directory (pass another DIR)", 2)
    source, extra = TEMPLATES[template]
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "wrangler.toml").write_text(
        f'name = "{worker}"\nmain = "src/index.js"\n'
        f'compatibility_date = "{COMPATIBILITY_DATE}"\n' + extra.replace("NAME", worker),
        encoding="utf-8")
    (root / "src" / "index.js").write_text(source.replace("NAME", worker), encoding="utf-8")
    typer.echo(f"created {template} worker {worker} in {root}")
    typer.echo(f"next: wdl deploy {directory} --ns NS   (wdl ns create NS first, or add "
               "--create-namespace)")

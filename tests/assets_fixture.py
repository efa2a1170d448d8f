"""A full-stack Static Assets project for the tests: an SPA in `public/` and an API worker."""

from __future__ import annotations

import json
from pathlib import Path

BINARY = bytes(range(256)) * 40  # 10 KiB, every byte value
LARGE = bytes((i * 7919) % 251 for i in range(300 * 1024))  # streamed, not kept in memory

WORKER = """
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname.startsWith("/api/")) {
      return Response.json({ api: url.pathname, method: request.method });
    }
    if (url.pathname === "/via-binding") {
      const r = await env.ASSETS.fetch(new Request(new URL("/about.html", url)));
      return new Response("binding:" + r.status + ":" + (await r.text()),
                          { headers: { "x-from": "worker" } });
    }
    return new Response("worker " + url.pathname, { headers: { "x-from": "worker" } });
  },
};
"""


def write_project(root: Path, name: str, assets: dict[str, object], *,
                  main: bool = True, date: str = "2025-06-01") -> Path:
    """`root/<name>`: wrangler.jsonc with `assets`, `public/` with the fixture's files."""
    project = root / name
    public = project / "public"
    (public / "blog").mkdir(parents=True, exist_ok=True)
    (public / "docs" / "guide").mkdir(parents=True, exist_ok=True)
    (public / "index.html").write_text("<h1>home</h1>")
    (public / "about.html").write_text("<h1>about</h1>")
    (public / "blog" / "index.html").write_text("<h1>blog</h1>")
    (public / "docs" / "404.html").write_text("<h1>docs 404</h1>")
    (public / "404.html").write_text("<h1>404</h1>")
    (public / "docs" / "guide" / "index.html").write_text("<h1>guide</h1>")
    (public / "app.js").write_text("console.log('app');")
    (public / "logo.bin").write_bytes(BINARY)
    (public / "large.bin").write_bytes(LARGE)
    (public / "secret.txt").write_text("must not be uploaded")
    (public / ".assetsignore").write_text("secret.txt\n")
    (public / "_headers").write_text(
        "/*\n  X-Frame-Options: DENY\n/blog/*\n  Cache-Control: no-cache\n  X-Blog: :splat\n")
    (public / "_redirects").write_text(
        "/old /about 301\n/go/:name /blog/:name 302\n/rewrite /about 200\n")
    config: dict[str, object] = {"name": name, "compatibility_date": date,
                                 "assets": {"directory": "./public", **assets}}
    if main:
        (project / "src").mkdir(exist_ok=True)
        (project / "src" / "index.js").write_text(WORKER)
        config["main"] = "src/index.js"
    (project / "wrangler.jsonc").write_text(json.dumps(config, indent=2))
    return project

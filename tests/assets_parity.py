"""Static Assets parity: the full-stack fixture, the pinned `wrangler dev` as the reference,
and one list of requests recorded against both and compared path by path.

`tests/integration/test_assets_parity.py` runs the list against `wrangler dev` of the
fixture (live, in the test), against the platform on the real servers and against
`wdl dev`. `python -m tests.assets_parity [VARIANT]` prints wrangler's record alone (to
look at the reference by hand).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness.endpoints import ROOT
from harness.workerd import free_port

FIXTURE = ROOT / "tests" / "fixtures" / "fullstack"
WRANGLER = ROOT / "workerd" / "node_modules" / ".bin" / "wrangler"
BIG_SIZE = 3 * 1024 * 1024 + 12345  # streamed, and not a round number of any chunk size
HOST = "parity.example.test"

# The assets config of each variant (the fixture's own is "spa"). Each is deployed as it
# is on both sides; the probes are the same list for all.
VARIANTS: dict[str, dict[str, Any]] = {
    "spa": {"not_found_handling": "single-page-application",
            "run_worker_first": ["/api/*"]},
    "404-page": {"not_found_handling": "404-page", "html_handling": "auto-trailing-slash"},
    "force-trailing-slash": {"html_handling": "force-trailing-slash"},
    "drop-trailing-slash": {"html_handling": "drop-trailing-slash",
                            "not_found_handling": "404-page"},
    "none": {"html_handling": "none", "not_found_handling": "none"},
    "worker-first": {"run_worker_first": True},
    "assets-only": {"not_found_handling": "404-page", "_no_main": True},
}

# Headers whose values are compared (lower case). ETags are compared by form only (each
# side revalidates with the ETag it gave); dates, server names and cache status are not,
# nor framing: wrangler dev chunks most answers where WDL sends a length (the body's
# length and digest are compared instead).
COMPARED = ("content-type", "location", "cache-control", "content-range",
            "x-frame-options", "x-content-type-options", "x-page",
            "access-control-allow-origin", "x-from", "x-echo")


@dataclass(frozen=True)
class Probe:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    revalidate: bool = False  # GET, then again with If-None-Match: <the ETag it gave>

    @property
    def key(self) -> str:
        extra = "".join(f" [{k}: {v}]" for k, v in self.headers)
        return f"{self.method} {self.path}{extra}{' (revalidate)' if self.revalidate else ''}"


NAV = (("sec-fetch-mode", "navigate"), ("accept", "text/html"))


def _probes() -> list[Probe]:
    gets = ["/", "/index.html", "/index", "/about", "/about/", "/about/index.html",
            "/about/index", "/docs", "/docs/", "/docs/page", "/docs/page.html",
            "/docs/page/", "/404.html", "/404", "/logo.png", "/data.json", "/notes.txt",
            "/notes.txt?v=1", "/about?x=1", "/docs/page.html?q=2", "/assets/app.css",
            "/assets/app.js", "/assets/", "/assets", "/big.bin", "/%61bout/",
            "/missing", "/missing/deep/route", "/missing.png", "/about/missing",
            # .assetsignore and the config files themselves are never assets
            "/secret.txt", "/app.js.map", "/ignored/file.txt", "/_headers", "/_redirects",
            "/.assetsignore",
            # _redirects
            "/old-about", "/temp", "/blog/a/b", "/users/42", "/external", "/rewrite",
            "/default-status",
            # the Worker
            "/api/hello", "/api/nope", "/api/asset?path=/logo.png",
            "/api/asset?path=/missing", "/api/asset?path=/about", "/api/wrapped"]
    probes = [Probe("GET", p) for p in gets]
    probes += [Probe("GET", p, NAV) for p in ("/missing", "/missing/deep/route",
                                              "/about/missing", "/missing.png", "/api/nope")]
    probes += [Probe("HEAD", p) for p in ("/", "/logo.png", "/about", "/big.bin", "/missing")]
    probes += [Probe("GET", p, revalidate=True) for p in ("/", "/logo.png", "/big.bin",
                                                          "/about/")]
    probes += [Probe("GET", "/logo.png", (("if-none-match", '"not-the-etag"'),)),
               Probe("GET", "/logo.png", (("if-none-match", "*"),))]
    ranges = ["bytes=0-99", "bytes=-100", "bytes=1048576-", "bytes=3145000-3145727",
              "bytes=999999999-", "bytes=0-1,5-6", "bytes=abc"]
    probes += [Probe("GET", "/big.bin", (("range", r),)) for r in ranges]
    probes += [Probe("GET", "/logo.png", (("range", "bytes=0-9"),)),
               Probe("GET", "/api/asset?path=/big.bin", (("range", "bytes=0-99"),)),
               Probe("HEAD", "/big.bin", (("range", "bytes=0-99"),))]
    probes += [Probe("POST", "/api/echo", body=b"posted body"),
               Probe("POST", "/notes.txt", body=b"x"), Probe("PUT", "/about/", body=b"x"),
               Probe("DELETE", "/logo.png"), Probe("OPTIONS", "/")]
    probes += [Probe("GET", "/logo.png", (("accept-encoding", "gzip, br"),)),
               Probe("GET", "/index.html", (("accept-encoding", "gzip"),))]
    return probes


PROBES = _probes()


@dataclass
class Record:
    status: int
    headers: dict[str, str]
    etag: str  # "strong", "weak" or "none"
    body_sha256: str
    body_len: int
    revalidated: int | None = None  # status of the If-None-Match request
    revalidated_len: int | None = None
    note: str = field(default="")


def materialize(dest: Path, variant: str = "spa") -> Path:
    """The fixture copied to `dest` with its large file written and the variant's assets
    config; returns the project directory."""
    project = dest / f"fullstack-{variant}"
    shutil.copytree(FIXTURE, project, ignore=shutil.ignore_patterns(".wrangler", ".wdl"))
    (project / "public" / "big.bin").write_bytes(big_bytes())
    settings = dict(VARIANTS[variant])
    no_main = settings.pop("_no_main", False)
    text = (project / "wrangler.jsonc").read_text()
    config = json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.M))
    config["assets"] = {"directory": "./public", "binding": "ASSETS", **settings}
    if no_main:
        del config["main"]
        del config["assets"]["binding"]
        shutil.rmtree(project / "src")
    config["name"] = f"fullstack-{variant}"
    (project / "wrangler.jsonc").write_text(json.dumps(config, indent=2) + "\n")
    return project


def big_bytes() -> bytes:
    """BIG_SIZE deterministic bytes (the same file on both sides)."""
    seed = hashlib.sha256(b"wdl assets parity").digest()
    out = bytearray()
    block = seed
    while len(out) < BIG_SIZE:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:BIG_SIZE])


def _etag_form(value: str | None) -> str:
    if not value:
        return "none"
    if value.startswith("W/"):
        return "weak"
    return "strong" if value.startswith('"') and value.endswith('"') else f"bad:{value}"


def _location(value: str | None, base: str) -> str | None:
    """A redirect target, the origin of the server answering dropped (each side has its
    own port)."""
    if value is None:
        return None
    return value[len(base):] or "/" if value.startswith(base) else value


def record(base: str, host: str = HOST, probes: list[Probe] | None = None,
           ) -> dict[str, Record]:
    """Each probe's answer from the server at `base`, asked for `host`."""
    out: dict[str, Record] = {}
    with httpx.Client(base_url=base, timeout=30, follow_redirects=False) as client:
        for probe in probes or PROBES:
            headers = {"host": host, **dict(probe.headers)}
            try:
                res = client.request(probe.method, probe.path, headers=headers,
                                     content=probe.body)
            except httpx.HTTPError as exc:
                out[probe.key] = Record(0, {}, "none", "", 0, note=f"{type(exc).__name__}")
                continue
            kept = {k: v for k, v in res.headers.items() if k in COMPARED}
            if "location" in kept:
                kept["location"] = _location(kept["location"], base) or ""
            rec = Record(res.status_code, dict(sorted(kept.items())),
                         _etag_form(res.headers.get("etag")),
                         hashlib.sha256(res.content).hexdigest()[:16], len(res.content))
            if probe.revalidate:
                etag = res.headers.get("etag")
                again = client.request("GET", probe.path, headers={
                    **headers, "if-none-match": etag or '"none"'})
                rec.revalidated, rec.revalidated_len = again.status_code, len(again.content)
            out[probe.key] = rec
    return out


def compare(expected: dict[str, Record], got: dict[str, Record]) -> list[dict[str, Any]]:
    """One entry per probe whose answers differ: the fields that differ, expected vs got."""
    diffs = []
    for key, want in expected.items():
        have = got.get(key)
        if have is None:
            diffs.append({"probe": key, "field": "missing", "expected": asdict(want),
                          "got": None})
            continue
        a, b = asdict(want), asdict(have)
        for name in ("status", "etag", "body_sha256", "body_len", "revalidated",
                     "revalidated_len", "note"):
            if a[name] != b[name]:
                diffs.append({"probe": key, "field": name, "expected": a[name],
                              "got": b[name]})
        for header in sorted(set(a["headers"]) | set(b["headers"])):
            if a["headers"].get(header) != b["headers"].get(header):
                diffs.append({"probe": key, "field": f"header {header}",
                              "expected": a["headers"].get(header),
                              "got": b["headers"].get(header)})
    return diffs


def _asset_bytes(path: str) -> bytes | None:
    """The bytes of the asset a probe's path names (itself, or through /api/asset)."""
    url = httpx.URL(path)
    target = url.params.get("path", "") if url.path == "/api/asset" else url.path
    if target == "/big.bin":
        return big_bytes()
    return (FIXTURE / "public" / "logo.png").read_bytes() if target == "/logo.png" else None


def range_differences(probe: Probe, want: Record, have: Record) -> list[dict[str, Any]] | None:
    """A documented difference: `wrangler dev` ignores `Range` (200, the whole asset);
    WDL answers a single satisfiable range with 206 and the slice, and an unsatisfiable one
    with 416, as Cloudflare's edge does. None when the probe is not one of these (then it
    must equal wrangler's answer); else the ways WDL's answer falls short of that."""
    spec = dict(probe.headers).get("range")
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", spec or "")
    content = _asset_bytes(probe.path)
    if match is None or match.group(0) == "bytes=-" or want.status != 200 \
            or want.etag != "strong" or content is None:
        return None  # not an asset's answer (e.g. the Worker's own)
    size = len(content)
    first, last = match.group(1), match.group(2)
    if first:
        start, end = int(first), min(int(last) if last else size - 1, size - 1)
    else:
        start, end = max(size - int(last), 0), size - 1
    checks: dict[str, object]
    if start >= size or start > end:
        checks = {"status": 416, "header content-range": f"bytes */{size}"}
    else:
        piece = content[start:end + 1] if probe.method == "GET" else b""
        checks = {"status": 206, "header content-range": f"bytes {start}-{end}/{size}",
                  "body_sha256": hashlib.sha256(piece).hexdigest()[:16],
                  "body_len": len(piece), "etag": want.etag,
                  "header content-type": want.headers.get("content-type")}
    found = {"status": have.status, "body_sha256": have.body_sha256,
             "body_len": have.body_len, "etag": have.etag,
             **{f"header {k}": v for k, v in have.headers.items()}}
    return [{"probe": probe.key, "field": f"{name} (Range, documented)", "expected": value,
             "got": found.get(name)} for name, value in checks.items()
            if found.get(name) != value]


def compare_all(expected: dict[str, Record], got: dict[str, Record],
                probes: list[Probe] | None = None) -> list[dict[str, Any]]:
    """`compare`, with the documented Range difference checked as WDL's own rule."""
    diffs: list[dict[str, Any]] = []
    for probe in probes or PROBES:
        want, have = expected.get(probe.key), got.get(probe.key)
        if want is None:
            continue
        ranged = range_differences(probe, want, have) if have is not None else None
        diffs += ranged if ranged is not None else compare({probe.key: want}, got)
    return diffs


def render(title: str, diffs: list[dict[str, Any]]) -> str:
    """The differences as a markdown section (for /work/notes/assets-diffs.md)."""
    lines = [f"### {title}: {len(diffs)} difference(s)", ""]
    if diffs:
        lines += ["| probe | field | wrangler dev | WDL |", "|---|---|---|---|"]
        for d in diffs:
            def cell(v: object) -> str:
                s = json.dumps(v) if not isinstance(v, str) else v
                return s.replace("|", "\\|")[:160]
            lines.append(f"| `{d['probe']}` | {d['field']} | {cell(d['expected'])} | "
                         f"{cell(d['got'])} |")
    return "\n".join(lines) + "\n"


class WranglerDev:
    """The pinned `wrangler dev` on a free loopback port, offline, in the project."""

    def __init__(self, project: Path) -> None:
        self.project = project
        self.port = free_port()
        self.log = project.parent / f"{project.name}-wrangler.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> None:
        env = {**os.environ, "WRANGLER_SEND_METRICS": "false", "CI": "true",
               "NO_COLOR": "1", "XDG_CONFIG_HOME": str(self.project.parent / ".config")}
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(WRANGLER), "dev", "--ip", "127.0.0.1", "--port", str(self.port),
                 "--inspector-port", str(free_port()),
                 "--show-interactive-dev-session=false"],
                cwd=self.project, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"wrangler dev exited:\n{self.log.read_text()[-3000:]}")
            if b"Ready on" in self.log.read_bytes():
                with contextlib.suppress(httpx.HTTPError):
                    httpx.get(self.url + "/__wdl_ready", timeout=5)
                    return
            time.sleep(0.2)
        raise AssertionError(f"wrangler dev did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


@contextlib.contextmanager
def wrangler_dev(project: Path) -> Iterator[WranglerDev]:
    server = WranglerDev(project)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def main(argv: list[str]) -> int:
    import tempfile
    variant = argv[0] if argv else "spa"
    with tempfile.TemporaryDirectory(prefix="wdl-parity-") as tmp, \
            wrangler_dev(materialize(Path(tmp), variant)) as server:
        for key, rec in record(server.url).items():
            print(json.dumps({"probe": key, **asdict(rec)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

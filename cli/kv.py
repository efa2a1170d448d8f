"""`wdl kv key …`: values of a KV namespace over the control API (services/api/routes/kv_data.py).

The KV namespace is chosen with `--namespace-id` (alias `--binding-ns`, short `-k`):
the id a wrangler `kv_namespaces[].id` names. `--ns/-n` is, as everywhere, the
platform namespace. The lead adds the `namespace create|list|delete` group to `app`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO
from urllib.parse import quote, unquote

import httpx
import typer

from cli.client import ApiFailure, raise_for
from cli.common import (
    JsonOpt,
    NsOpt,
    ProfileOpt,
    TokenOpt,
    UrlOpt,
    connect,
    err,
    fail,
    print_json,
    table,
)

app = typer.Typer(name="kv", help="Workers KV namespaces and their keys.", no_args_is_help=True)
key_app = typer.Typer(name="key", help="Keys of a KV namespace.", no_args_is_help=True)
app.add_typer(key_app)

KvIdOpt = Annotated[str, typer.Option("--namespace-id", "--binding-ns", "-k",
                                      help="KV namespace id (as in wrangler kv_namespaces[].id)",
                                      show_default=False)]
CHUNK = 1024 * 1024
METADATA_HEADER = "x-kv-metadata"


def _values(namespace: str, kv: str, key: str) -> str:
    # Every reserved byte of the key is escaped ("/" included): one path segment.
    return f"/v1/namespaces/{namespace}/kv/{kv}/values/{quote(key, safe='')}"


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        yield chunk


def _expiry(seconds: Any) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@key_app.command("get")
def get(key: str, kv: KvIdOpt, ns: NsOpt = None,
        file: Annotated[Path | None, typer.Option("--file", "-f",
                                                  help="write the value here")] = None,
        as_json: Annotated[bool, typer.Option(
            "--json", help="print {value, metadata, expiration} (value as UTF-8 text)")] = False,
        url: UrlOpt = None, token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Print the value of KEY (raw bytes on stdout)."""
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        http = client.http
        try:
            response = http.get(_values(namespace, kv, key))
        except httpx.HTTPError as exc:
            raise ApiFailure(0, "unreachable", f"cannot reach {client.config.url}: "
                                               f"{type(exc).__name__}") from None
        raise_for(response)
    meta = response.headers.get(METADATA_HEADER)
    if as_json:
        exp = response.headers.get("x-kv-expiration")
        print_json({"key": key, "value": response.content.decode(errors="replace"),
                    "metadata": None if meta is None else json.loads(unquote(meta)),
                    "expiration": None if exp is None else int(exp)})
    elif file is not None:
        file.write_bytes(response.content)
    else:
        sys.stdout.buffer.write(response.content)
        sys.stdout.buffer.flush()


@key_app.command("put")
def put(key: str, kv: KvIdOpt,
        value: Annotated[str | None, typer.Argument(help="the value (or use --path)")] = None,
        path: Annotated[Path | None, typer.Option("--path", help="read the value from a file "
                                                  "('-' for stdin)")] = None,
        ttl: Annotated[int | None, typer.Option("--ttl", help="expire after this many "
                                                "seconds (at least 60)")] = None,
        expiration: Annotated[int | None, typer.Option(
            "--expiration", help="expire at this UNIX time (seconds)")] = None,
        metadata: Annotated[str | None, typer.Option("--metadata",
                                                     help="metadata as JSON")] = None,
        ns: NsOpt = None, url: UrlOpt = None, token: TokenOpt = None,
        profile: ProfileOpt = None) -> None:
    """Write KEY (replacing its value, metadata and expiration)."""
    if (value is None) == (path is None):
        raise fail("give exactly one of VALUE or --path", 2)
    if metadata is not None:
        try:
            json.loads(metadata)
        except ValueError:
            raise fail("--metadata is not valid JSON", 2) from None
    headers = {"Content-Type": "application/octet-stream"}
    if metadata is not None:
        headers[METADATA_HEADER] = quote(metadata, safe="")
    params = {"expiration_ttl": ttl, "expiration": expiration}
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        http = client.http
        body: bytes | Iterator[bytes]
        handle: BinaryIO | None = None
        if value is not None:
            body = value.encode()
        elif str(path) == "-":
            body = _chunks(sys.stdin.buffer)
        else:
            assert path is not None
            handle = path.open("rb")
            body = _chunks(handle)
        try:
            response = http.put(_values(namespace, kv, key), content=body, headers=headers,
                                params={k: v for k, v in params.items() if v is not None})
        except httpx.HTTPError as exc:
            raise ApiFailure(0, "unreachable", f"cannot reach {client.config.url}: "
                                               f"{type(exc).__name__}") from None
        finally:
            if handle is not None:
                handle.close()
        raise_for(response)
    err.print(f"[green]wrote[/] {key} to KV namespace {kv} in {namespace}", highlight=False)


@key_app.command("delete")
def delete(key: str, kv: KvIdOpt, ns: NsOpt = None, url: UrlOpt = None,
           token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Delete KEY (deleting a missing key succeeds)."""
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        client.request("DELETE", _values(namespace, kv, key))
    err.print(f"[green]deleted[/] {key} from KV namespace {kv} in {namespace}",
              highlight=False)


@key_app.command("list")
def list_keys(kv: KvIdOpt,
              prefix: Annotated[str, typer.Option(help="only keys starting with this")] = "",
              limit: Annotated[int, typer.Option(min=1, max=1000,
                                                 help="keys per page")] = 1000,
              cursor: Annotated[str | None, typer.Option(
                  help="continue after a previous page")] = None,
              ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
              token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """List keys in byte order, one page (--json prints the Workers list result)."""
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        page = client.get(f"/v1/namespaces/{namespace}/kv/{kv}/keys", prefix=prefix or None,
                          limit=limit, cursor=cursor)
    if as_json:
        print_json(page)
        return
    rows = [{"name": k["name"], "expiration": k.get("expiration"),
             "metadata": json.dumps(k["metadata"]) if "metadata" in k else ""}
            for k in page["keys"]]
    table(rows, [("name", "key"), ("expiration", "expires"), ("metadata", "metadata")],
          {"expiration": _expiry})
    if not page["list_complete"]:
        err.print(f"more keys: --cursor {page['cursor']}", highlight=False)

"""`wdl r2 object …`: tenant R2 objects through the control API (like `wrangler r2 object`).

Objects are addressed as `BUCKET/KEY` (the first `/` splits them). Bodies
stream: `put` sends the file in chunks, `get` writes chunks as they arrive,
so large objects never sit in memory. The `bucket` subgroup (create, list,
delete) is added to `app` by cli/resources.py.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, BinaryIO
from urllib.parse import quote

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
    fail,
    print_json,
    table,
    when,
)

app = typer.Typer(name="r2", help="R2 buckets and objects.", no_args_is_help=True)
object_app = typer.Typer(name="object", help="Objects of an R2 bucket (BUCKET/KEY).",
                         no_args_is_help=True)
app.add_typer(object_app)

CHUNK = 1024 * 1024
OBJECT_HEADER = "x-wdl-r2-object"
ObjectPath = Annotated[str, typer.Argument(metavar="BUCKET/KEY", help="bucket and object key")]
FileOpt = Annotated[Path | None, typer.Option("--file", "-f", help="local file")]
PipeOpt = Annotated[bool, typer.Option("--pipe", "-p", help="use stdin/stdout for the body")]


def split(path: str) -> tuple[str, str]:
    bucket, sep, key = path.partition("/")
    if not bucket or not sep or not key:
        raise fail(f"expected BUCKET/KEY, got {path!r}", 2)
    return bucket, key


def _objects(namespace: str, bucket: str) -> str:
    return f"/v1/namespaces/{namespace}/r2/{quote(bucket, safe='')}/objects"


def _object(namespace: str, bucket: str, key: str) -> str:
    # Every byte of the key is escaped (including "/" and "."), so no client or proxy can
    # normalise `../` segments out of it; the API decodes it back to the exact key.
    return f"{_objects(namespace, bucket)}/{quote(key, safe='')}"


def _decode_header(text: str) -> Any:
    # services/r2/routes.py encode_header: base64url(JSON), unpadded.
    return json.loads(base64.urlsafe_b64decode(text.encode() + b"=" * (-len(text) % 4)))


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        yield chunk


@object_app.command("put")
def put(path: ObjectPath, file: FileOpt = None, pipe: PipeOpt = False,
        content_type: Annotated[str | None, typer.Option(
            "--content-type", "--ct",
            help="stored as the object's httpMetadata.contentType")] = None,
        custom_metadata: Annotated[str | None, typer.Option(
            "--custom-metadata", help='JSON object, e.g. \'{"owner": "ana"}\'')] = None,
        ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
        token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Upload a file (or stdin with --pipe) as BUCKET/KEY."""
    bucket, key = split(path)
    if (file is None) == (not pipe):
        raise fail("give exactly one of --file or --pipe", 2)
    headers: dict[str, str] = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if custom_metadata is not None:
        headers["x-wdl-r2-custom-metadata"] = custom_metadata
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        source: BinaryIO = sys.stdin.buffer if file is None else file.open("rb")
        try:
            http = client.http
            try:
                response = http.put(_object(namespace, bucket, key), content=_chunks(source),
                                    headers=headers)
            except httpx.HTTPError as exc:
                raise ApiFailure(0, "unreachable", f"cannot reach {client.config.url}: "
                                 f"{type(exc).__name__}") from None
            raise_for(response)
            meta = response.json()
        finally:
            if not pipe:
                source.close()
    if as_json:
        print_json(meta)
    else:
        typer.echo(f"Uploaded {bucket}/{key} ({meta['size']} bytes, etag {meta['etag']})",
                   err=True)


@object_app.command("get")
def get(path: ObjectPath, file: FileOpt = None, pipe: PipeOpt = False, ns: NsOpt = None,
        url: UrlOpt = None, token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Download BUCKET/KEY to --file (default: the key's last segment) or stdout (--pipe)."""
    bucket, key = split(path)
    target = None if pipe else (file or Path(key.rsplit("/", 1)[-1] or "object"))
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        http = client.http
        try:
            with http.stream("GET", _object(namespace, bucket, key)) as response:
                raise_for(response)
                out: BinaryIO = sys.stdout.buffer if target is None else target.open("wb")
                try:
                    for chunk in response.iter_bytes(CHUNK):
                        out.write(chunk)
                finally:
                    if target is not None:
                        out.close()
                    else:
                        out.flush()
        except httpx.HTTPError as exc:
            raise ApiFailure(0, "unreachable", f"cannot reach {client.config.url}: "
                             f"{type(exc).__name__}") from None
    if target is not None:
        typer.echo(f"Downloaded {bucket}/{key} to {target}", err=True)


@object_app.command("head")
def head(path: ObjectPath, ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
         token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Show an object's metadata (size, etag, upload time, http and custom metadata)."""
    bucket, key = split(path)
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        http = client.http
        try:
            response = http.head(_object(namespace, bucket, key))
        except httpx.HTTPError as exc:
            raise ApiFailure(0, "unreachable", f"cannot reach {client.config.url}: "
                             f"{type(exc).__name__}") from None
        if response.status_code == 404:
            raise ApiFailure(404, "r2_object_not_found", f"object {key!r} not found "
                             f"(or bucket {bucket!r} does not exist)")
        raise_for(response)
        meta: dict[str, Any] = _decode_header(response.headers[OBJECT_HEADER])
    if as_json:
        print_json(meta)
        return
    for name in ("key", "size", "etag", "version"):
        typer.echo(f"{name}: {meta[name]}")
    typer.echo(f"uploaded: {when(meta['uploaded'])}")
    for name, value in sorted(meta.get("httpMetadata", {}).items()):
        typer.echo(f"http.{name}: {value}")
    for name, value in sorted(meta.get("customMetadata", {}).items()):
        typer.echo(f"custom.{name}: {value}")


@object_app.command("list")
def list_objects(bucket: Annotated[str, typer.Argument(help="bucket name")],
                 prefix: Annotated[str, typer.Option(help="only keys starting with this")] = "",
                 delimiter: Annotated[str | None, typer.Option(
                     help="group keys sharing a prefix up to this (e.g. /)")] = None,
                 ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
                 token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """List every object of BUCKET (all pages), in key order."""
    objects: list[dict[str, Any]] = []
    prefixes: list[str] = []
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        cursor: str | None = None
        while True:
            page = client.get(_objects(namespace, bucket), prefix=prefix,
                              delimiter=delimiter, cursor=cursor)
            objects += page["objects"]
            prefixes += page["delimitedPrefixes"]
            if not page["truncated"]:
                break
            cursor = page["cursor"]
    if as_json:
        print_json({"objects": objects, "delimitedPrefixes": prefixes})
        return
    table(objects, [("key", "key"), ("size", "size"), ("etag", "etag"),
                    ("uploaded", "uploaded")], {"uploaded": when})
    for p in prefixes:
        typer.echo(f"{p} (prefix)")


@object_app.command("delete")
def delete(path: ObjectPath, ns: NsOpt = None, url: UrlOpt = None, token: TokenOpt = None,
           profile: ProfileOpt = None) -> None:
    """Delete BUCKET/KEY (deleting a missing key is not an error, as in R2)."""
    bucket, key = split(path)
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        client.delete(_object(namespace, bucket, key))
    typer.echo(f"Deleted {bucket}/{key}", err=True)

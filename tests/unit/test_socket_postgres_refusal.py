"""A refused connect() to a Hyperdrive host answers in PostgreSQL's protocol
(workerd/gateway/sockets.js `postgresError`), so the tenant's driver reports the reason
as its own error; any other refused socket is only closed (it may be any protocol).
The drivers' side is tests/integration/test_hyperdrive_drivers.py."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from typing import Any

from services.dataplane.config import workerd_dir

A = "0123456789abcdef0123456789abcdef"


def node(script: str) -> Any:
    binary = shutil.which("node")
    assert binary is not None
    module = (workerd_dir() / "gateway" / "sockets.js").as_uri()
    done = subprocess.run([binary, "--input-type=module", "-e",
                           f"const m = await import({json.dumps(module)});\n{script}"],
                          capture_output=True, text=True, timeout=30, check=True)
    return json.loads(done.stdout)


def test_the_error_response_is_well_formed() -> None:
    raw = bytes(node('console.log(JSON.stringify(Array.from(m.postgresError("53300", '
                     '"connect() refused by the platform: ça"))))'))
    assert raw[0:1] == b"E"
    (length,) = struct.unpack(">I", raw[1:5])
    assert length == len(raw) - 1
    body = raw[5:]
    assert body.endswith(b"\x00\x00")
    fields = {f[:1].decode(): f[1:].decode() for f in body[:-1].split(b"\x00") if f}
    assert fields == {"S": "FATAL", "V": "FATAL", "C": "53300",
                      "M": "connect() refused by the platform: ça"}


def test_only_hyperdrive_hosts_are_answered_in_postgres_protocol() -> None:
    env = {"POOLER_ADDRESS": "127.0.0.1:26432"}
    cases = [f"{A}.hyperdrive.wdl:5432",            # bound: to the pooler
             f"{'f' * 32}.hyperdrive.wdl:5432",     # not bound: refused
             "x.hyperdrive.wdl:5432",               # not an id: refused
             "127.0.0.1:5432", "db.example.com:5432"]
    out = node(f"const env = {json.dumps(env)};\n"
               f"console.log(JSON.stringify({json.dumps(cases)}.map((a) => {{\n"
               f"  const r = m.socketRoute(env, {{mode: 'public'}}, a, [{json.dumps(A)}]);\n"
               "  return {dial: r.dial || null, refused: Boolean(r.reason),"
               " postgres: Boolean(r.postgres)}; })))")
    assert out == [
        {"dial": "127.0.0.1:26432", "refused": False, "postgres": True},
        {"dial": None, "refused": True, "postgres": True},
        {"dial": None, "refused": True, "postgres": True},
        {"dial": None, "refused": True, "postgres": False},
        {"dial": "db.example.com:5432", "refused": False, "postgres": False},
    ]

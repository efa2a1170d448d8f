"""The Hyperdrive wall at the tenant's socket: a worker's connect() reaches the pooler only
for a config its own version binds, and a refusal tells nothing of the pooler.

Attack first: the attacker's worker (binding its own config) speaks PostgreSQL's startup
itself over `cloudflare:sockets` - to the victim's config host `<victim id>.hyperdrive.wdl`
(with its own credentials, with the victim's database alias), to an id that exists
nowhere, to an id-less `.hyperdrive.wdl` name, to its own host on another port, and to
the pooler's real address. Each is refused: the Hyperdrive names are answered with a
PostgreSQL ErrorResponse (SQLSTATE 08004, the same text whether the id is another
namespace's or nobody's: no oracle; neither the pooler's address nor port in it), the
pooler's address is a loopback address the egress refuses (closed, no answer). Its own
host is answered by PgBouncer itself (an authentication request: the wall holds for the
right reason), and the victim is unchanged. Runs on both shapes (servers, `wdl dev`).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.security.rig import ATTACKER, VICTIM, Walls
from tests.security.test_hyperdrive_walls import (  # noqa: F401 (fixtures)
    SPY_JS,
    Origin,
    _binding,
    _pooler_port,
    _until_login,
    origins,
    walls_env,
)

pytestmark = pytest.mark.security
WALLS_COMPONENTS = ("hyperdrive",)

# A startup message with the given user and database; the first message back, decoded:
# {type, code?, message?} or {closed} / {error}.
PROBE_JS = r"""
import { connect } from "cloudflare:sockets";

function startup(user, database) {
  const enc = new TextEncoder();
  const body = enc.encode(`user\0${user}\0database\0${database}\0\0`);
  const out = new Uint8Array(8 + body.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, out.length);
  view.setUint32(4, 196608);
  out.set(body, 8);
  return out;
}

async function probe(to, user, database) {
  try {
    const socket = connect(to);
    const writer = socket.writable.getWriter();
    await writer.write(startup(user, database));
    const reader = socket.readable.getReader();
    let bytes = new Uint8Array(0);
    while (bytes.length < 5 || bytes.length < 1 + new DataView(bytes.buffer).getUint32(1)) {
      const { value, done } = await reader.read();
      if (done) return bytes.length ? { partial: bytes.length } : { closed: true };
      const joined = new Uint8Array(bytes.length + value.length);
      joined.set(bytes);
      joined.set(value, bytes.length);
      bytes = joined;
    }
    await socket.close();
    const type = String.fromCharCode(bytes[0]);
    if (type !== "E") return { type };
    const fields = {};
    for (const f of new TextDecoder().decode(bytes.slice(5)).split("\0")) {
      if (f) fields[f[0]] = f.slice(1);
    }
    return { type, code: fields.C, message: fields.M };
  } catch (e) {
    return { error: String(e && e.message || e) };
  }
}

export default {
  async fetch(request, env) {
    const u = new URL(request.url);
    const to = u.searchParams.get("to").replace("OWN", env.HD.host);
    return Response.json(await probe(to, u.searchParams.get("user") || env.HD.user,
                                     u.searchParams.get("db") || env.HD.database));
  },
};
"""

NOT_BOUND = {"type": "E", "code": "08004", "message": "connect() refused by the platform: "
             "a Hyperdrive config this worker does not bind"}


@pytest.fixture(scope="module")
async def scene(origins: tuple[Origin, Origin], walls: Walls,  # noqa: F811
                walls_env: dict[str, str]) -> dict[str, Any]:  # noqa: F811
    victim_origin, attacker_origin = origins
    admin, attacker = walls.admin, walls.attacker
    vid = (await admin.wdl("hyperdrive", "create", "vdb", "--ns", VICTIM,
                           "--connection-string", "-", "--json",
                           stdin=victim_origin.url + "\n")).json()["id"]
    victim = type(attacker)("victim-admin", admin.env, admin.workdir, VICTIM)
    await victim.deploy(victim.project(
        "vhd", SPY_JS, f'\n[[hyperdrive]]\nbinding = "HD"\nid = "{vid}"\n'))
    aid = (await attacker.wdl("hyperdrive", "create", "mine", "--ns", ATTACKER,
                              "--connection-string", "-", "--json",
                              stdin=attacker_origin.url + "\n")).json()["id"]
    await attacker.deploy(attacker.project(
        "pgprobe", PROBE_JS, f'compatibility_flags = ["nodejs_compat"]\n'
        f'\n[[hyperdrive]]\nbinding = "HD"\nid = "{aid}"\n'))
    port = _pooler_port(walls_env)
    v_value = await _binding(walls, VICTIM, "vhd")
    assert (await _until_login(port, v_value)).startswith("ok")
    return {"vid": vid, "aid": aid, "port": port, "victim": v_value}


async def _probe(walls: Walls, to: str, **params: str) -> dict[str, Any]:
    r = await walls.attack("pgprobe", "/", params={"to": to, **params})
    assert r.status_code == 200, r.text
    got: dict[str, Any] = r.json()
    return got


async def test_its_own_config_reaches_pgbouncer(walls: Walls, scene: dict[str, Any]) -> None:
    # The control: PgBouncer asks the attacker's own user to authenticate ('R').
    got = await _probe(walls, "OWN:5432")
    assert got == {"type": "R"}, got


async def test_another_namespaces_config_host_is_refused_without_an_oracle(
        walls: Walls, scene: dict[str, Any]) -> None:
    vid, victim, port = scene["vid"], scene["victim"], scene["port"]
    tries = {
        "the victim's host, own credentials": (f"{vid}.hyperdrive.wdl:5432", {}),
        "the victim's host, the victim's alias": (
            f"{vid}.hyperdrive.wdl:5432", {"user": victim["user"], "db": victim["database"]}),
        "the victim's host, upper case": (f"{vid.upper()}.HYPERDRIVE.WDL:5432", {}),
        "an id nobody has": (f"{'e' * 32}.hyperdrive.wdl:5432", {}),
        "no id": ("hyperdrive.wdl:5432", {}),
        "a sub-name": (f"x.{vid}.hyperdrive.wdl:5432", {}),
    }
    for what, (to, params) in tries.items():
        got = await _probe(walls, to, **params)
        assert got == NOT_BOUND, (what, got)
        assert str(port) not in got["message"] and "127.0.0.1" not in got["message"]
    # Its own host on another port is not the pooler's route either.
    got = await _probe(walls, "OWN:5433")
    assert got == NOT_BOUND, got
    await walls.assert_victim_intact()


async def test_the_poolers_own_address_is_not_reachable(
        walls: Walls, scene: dict[str, Any]) -> None:
    port = scene["port"]
    for to in (f"127.0.0.1:{port}", f"localhost:{port}", f"0x7f.1:{port}"):
        got = await _probe(walls, to)
        # Refused by the egress as any loopback address (no PostgreSQL answer).
        assert "type" not in got, (to, got)
    # The victim's config still serves the victim.
    assert (await _until_login(port, scene["victim"])).startswith("ok")
    await walls.assert_victim_intact()

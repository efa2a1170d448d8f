"""The compatibility table read from the pinned binary agrees with what that workerd does:
every flag the control API lets through loads, every flag it refuses as experimental is
refused by workerd too (without --experimental), an unknown one is unknown to both."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from services.dataplane.workerd_process import workerd_bin
from services.runtime_compat import pinned_runtime

pytestmark = pytest.mark.integration

MODULE = "export default { fetch() { return new Response('x'); } };"


def _service(index: int, flag: str) -> str:
    return (f'(name = "s{index}", worker = (modules = [(name = "m.js", esModule = '
            f'{json.dumps(MODULE)})], compatibilityDate = "2025-11-17", '
            f"compatibilityFlags = [{json.dumps(flag)}]))")


def test_the_table_matches_what_workerd_loads(tmp_path: Path) -> None:
    runtime = pinned_runtime()
    # Python flags make workerd fetch a Pyodide bundle from the network: not from a test.
    flags = [f.enable for f in runtime.flags if f.enable and "python" not in f.enable]
    probe = [*flags, "wdl_no_such_flag"]  # an unknown one makes workerd stop after checking
    config = tmp_path / "probe.capnp"
    config.write_text(
        'using Workerd = import "/workerd/workerd.capnp";\n'
        "const config :Workerd.Config = (services = [\n"
        + ",\n".join(_service(i, flag) for i, flag in enumerate(probe)) + "\n]);\n")
    done = subprocess.run([str(workerd_bin()), "serve", str(config)], capture_output=True,
                          text=True, timeout=120, check=False)
    errors: dict[str, str] = {}
    for line in (done.stderr + done.stdout).splitlines():
        found = re.match(r"service s(\d+): (.*)", line)
        if found:
            errors[probe[int(found.group(1))]] = found.group(2)
    assert errors.pop("wdl_no_such_flag") == "No such compatibility flag: wdl_no_such_flag"
    experimental = {f.enable for f in runtime.flags if f.enable in flags and f.experimental}
    refused = {flag for flag, message in errors.items() if "is experimental" in message}
    assert refused == experimental
    others = {flag: message for flag, message in errors.items() if flag not in experimental}
    assert not [m for m in others.values() if "No such compatibility flag" in m], others

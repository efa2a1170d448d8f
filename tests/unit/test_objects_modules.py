"""The objects process's workerd config carries every module its ES modules import.

A module the gateway's files import but the objects' list forgets (`pooler.js`, imported
by sockets.js since the Hyperdrive route) stops the whole objects process at start
("No such module"), which only a platform start showed before this test.
"""

from __future__ import annotations

import posixpath
import re

from services.dataplane.config import workerd_dir
from services.objects.config import _modules

IMPORT = re.compile(r"""^\s*(?:import|export)\s*(?:[\w*{}\s,$]+?\s*from\s*)?["']([^"']+)["']""",
                    re.MULTILINE)


def test_every_static_import_of_an_objects_module_is_in_the_config() -> None:
    modules = _modules(workerd_dir())
    names = {name for name, _, _ in modules}
    missing = []
    for name, kind, source in modules:
        if kind != "esModule":
            continue
        for spec in IMPORT.findall(source):
            if spec.startswith(("cloudflare:", "node:", "workerd:")):
                continue
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), spec))
            if target not in names:
                missing.append(f"{name} imports {spec}")
    assert not missing, missing

"""The objects process's workerd config carries every module its modules import: a
missing one (pooler.js, imported by sockets.js) stopped the objects process at start."""

from __future__ import annotations

import re

from services.dataplane.config import workerd_dir
from services.objects.config import _modules

IMPORT = re.compile(r'^\s*(?:import|export)\b[^;]*?\bfrom\s+"\./([^"]+)"', re.M)


def test_every_relative_import_of_an_objects_module_is_served() -> None:
    modules = _modules(workerd_dir())
    names = {name for name, _, _ in modules}
    missing = {(name, target) for name, kind, source in modules if kind == "esModule"
               for target in IMPORT.findall(source) if target not in names}
    assert not missing, missing

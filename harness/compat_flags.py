"""Generate `workerd/compatibility-flags.json` from the pinned workerd binary itself.

The runtime's compatibility flags are the fields of `CompatibilityFlags` in workerd's
`src/workerd/io/compatibility-date.capnp`, each annotated with its enable flag, its
disable flag, the date it became the default and whether it is experimental. workerd
reads them at run time through capnp reflection, so the binary carries that schema node
in its encoded form (a single-segment capnp message in read-only data). This module
finds the node by its id and decodes just what it needs: the pinned release's source is
not always at hand (the npm package ships only the binary), and the binary is the
authority on what it will accept anyway.

    python -m harness.compat_flags            # rewrite the file from the pinned binary
    python -m harness.compat_flags --check    # exit 1 if the file is stale

`tests/unit/test_runtime_compat.py` checks the file against the binary; the data-plane
test `tests/integration/test_runtime_compat_workerd.py` checks the decoding against what
workerd itself refuses.
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.dataplane.workerd_process import pinned_version, workerd_bin
from services.runtime_compat import FLAGS_FILE

# Ids fixed in compatibility-date.capnp (`struct CompatibilityFlags @0x8f8c1b68151b6cef` and
# its annotations): stable across releases, as capnp ids are.
COMPATIBILITY_FLAGS_NODE = 0x8F8C1B68151B6CEF
ENABLE_FLAG = 0xB6DABBC87CD1B03E
DISABLE_FLAG = 0xD145CF1ADC42577C
ENABLE_DATE = 0x91A5D5D7244CF6D0
ENABLE_ALL_DATES = 0x9A1D37C8030D9418
EXPERIMENTAL = 0xE3E5A63E76284D88
DISPLAY_NAME = b"compatibility-date.capnp:CompatibilityFlags"

# capnp's schema.capnp layout: Node.displayName is pointer 0, Node.struct.fields pointer 3;
# Field.name pointer 0, Field.annotations pointer 1; Annotation.id data word 0,
# Annotation.value pointer 0; Value's union tag is its first 16 bits, `text` is tag 12.
_NODE_FIELDS_POINTER = 3
_VALUE_TEXT = 12


class SchemaNotFound(Exception):
    """The binary does not hold a decodable CompatibilityFlags node."""


@dataclass
class _Reader:
    data: bytes

    def word(self, at: int) -> int:
        return int(struct.unpack_from("<Q", self.data, at)[0])

    def pointer(self, at: int) -> tuple[int, int, int, int] | None:
        """(kind, target, a, b): struct (0, target, data words, pointers) or list (1, target,
        element size, count)."""
        w = self.word(at)
        if w == 0:
            return None
        kind = w & 3
        offset = (w >> 2) & 0x3FFFFFFF
        if offset & 0x20000000:
            offset -= 0x40000000
        target = at + 8 + offset * 8
        if kind == 0:
            return 0, target, (w >> 32) & 0xFFFF, (w >> 48) & 0xFFFF
        if kind == 1:
            return 1, target, (w >> 32) & 7, w >> 35
        raise SchemaNotFound(f"unexpected far or capability pointer at {at:#x}")

    def text(self, at: int) -> str | None:
        p = self.pointer(at)
        if p is None:
            return None
        kind, target, size, count = p
        if kind != 1 or size != 2 or count == 0:
            raise SchemaNotFound(f"no text at {at:#x}")
        return self.data[target:target + count - 1].decode("utf-8")

    def structs(self, at: int) -> list[tuple[int, int]]:
        """A composite list: (address, data words) of each element."""
        p = self.pointer(at)
        if p is None:
            return []
        kind, target, size, _ = p
        if kind != 1 or size != 7:
            raise SchemaNotFound(f"no struct list at {at:#x}")
        tag = self.word(target)
        count = (tag >> 2) & 0x3FFFFFFF
        data_words, pointers = (tag >> 32) & 0xFFFF, (tag >> 48) & 0xFFFF
        step = (data_words + pointers) * 8
        return [(target + 8 + i * step, data_words) for i in range(count)]


def _node(reader: _Reader) -> tuple[int, int]:
    """(address of the node's struct, its data words): the root struct pointer right before
    the id, whose display name is the one expected."""
    needle = struct.pack("<Q", COMPATIBILITY_FLAGS_NODE)
    at = reader.data.find(needle)
    while at >= 0:
        if at % 8 == 0 and at >= 8:
            p = reader.pointer(at - 8) if reader.word(at - 8) & 3 == 0 else None
            if p is not None and p[1] == at and p[2] >= 1 and p[3] > _NODE_FIELDS_POINTER:
                name = reader.text(at + p[2] * 8)
                if name is not None and name.encode().endswith(DISPLAY_NAME):
                    return at, p[2]
        at = reader.data.find(needle, at + 1)
    raise SchemaNotFound("the CompatibilityFlags schema node is not in the binary")


def extract(binary: bytes) -> list[dict[str, Any]]:
    """Every flag of the binary's CompatibilityFlags, in field order."""
    reader = _Reader(binary)
    node, data_words = _node(reader)
    flags: list[dict[str, Any]] = []
    for field, field_words in reader.structs(node + (data_words + _NODE_FIELDS_POINTER) * 8):
        entry: dict[str, Any] = {"field": reader.text(field + field_words * 8), "enable": None,
                                 "disable": None, "date": None, "experimental": False}
        for ann, ann_words in reader.structs(field + field_words * 8 + 8):
            kind = reader.word(ann)
            value = reader.pointer(ann + ann_words * 8)
            text = None
            if value is not None and value[0] == 0:
                tag = struct.unpack_from("<H", binary, value[1])[0]
                if tag == _VALUE_TEXT:
                    text = reader.text(value[1] + value[2] * 8)
            if kind == ENABLE_FLAG:
                entry["enable"] = text
            elif kind == DISABLE_FLAG:
                entry["disable"] = text
            elif kind == ENABLE_DATE:
                entry["date"] = text
            elif kind == ENABLE_ALL_DATES:
                entry["date"] = "2000-01-01"
            elif kind == EXPERIMENTAL:
                entry["experimental"] = True
        if entry["enable"] or entry["disable"]:
            flags.append(entry)
    if len(flags) < 50:
        raise SchemaNotFound(f"only {len(flags)} flags decoded; the layout is not understood")
    return flags


def binary_date(binary: Path) -> str:
    """The newest compatibility date the binary supports (`workerd --version`)."""
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                          timeout=30, check=True)
    return done.stdout.split()[-1]


def generate(binary: Path | None = None) -> dict[str, Any]:
    path = binary or workerd_bin()
    return {
        "generated_by": "python -m harness.compat_flags (from the pinned workerd binary)",
        "workerd": pinned_version(),
        "max_compatibility_date": binary_date(path),
        "flags": extract(path.read_bytes()),
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.compat_flags")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = render(generate())
    if args.check:
        current = FLAGS_FILE.read_text() if FLAGS_FILE.exists() else ""
        if current != text:
            print(f"{FLAGS_FILE} is stale: run python -m harness.compat_flags", file=sys.stderr)
            return 1
        return 0
    FLAGS_FILE.write_text(text)
    print(f"wrote {FLAGS_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The fold's JSON: compact, sorted keys, so equal state renders equal bytes."""

from __future__ import annotations

from typing import Any

import msgspec

_json = msgspec.json.Encoder(order="sorted")


def dumps(value: Any) -> str:
    return _json.encode(value).decode()

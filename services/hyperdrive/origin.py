"""A Hyperdrive origin's connection string: parsed, allow-listed, never echoed.

Every field ends up in PgBouncer's configuration (services/hyperdrive/pgbouncer.py),
so each is held to a pattern that cannot break out of a pgbouncer.ini value. Errors
name the field that is wrong, never its value (the string carries the password).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")
# Printable ASCII without space, quotes or backslash: written single-quoted in the ini.
PASSWORD_RE = re.compile(r"[!#-&(-\[\]-~]{1,256}")
HOST_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}")
DATABASE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")
MAX_CONNECTION_STRING = 2048


class OriginError(ValueError):
    """What is wrong with a connection string (the message never quotes it)."""


@dataclass(frozen=True, repr=False)
class Origin:
    host: str
    port: int
    database: str
    user: str
    password: str

    def __repr__(self) -> str:  # never the password, not even in a traceback's locals
        return f"Origin({self.host}:{self.port}/{self.database})"

    def connection_string(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/" \
               f"{self.database}"


def parse_origin(text: str) -> Origin:
    if not isinstance(text, str) or not text or len(text) > MAX_CONNECTION_STRING:
        raise OriginError(f"the connection string must be 1-{MAX_CONNECTION_STRING} characters")
    try:
        parts = urlsplit(text)
        port = parts.port or 5432
    except ValueError:
        raise OriginError("the connection string is not a postgres:// URL with a valid "
                          "port") from None
    if parts.scheme not in ("postgres", "postgresql"):
        raise OriginError("the connection string must start with postgres:// or "
                          "postgresql://")
    if parts.query or parts.fragment:
        raise OriginError("the connection string's options (?…) are not supported: the "
                          "pooler connects to the origin without TLS options")
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    host = parts.hostname or ""
    database = unquote(parts.path.removeprefix("/"))
    for field, value, pattern in (("user", user, USER_RE), ("password", password, PASSWORD_RE),
                                  ("host", host, HOST_RE), ("database", database, DATABASE_RE)):
        if not pattern.fullmatch(value):
            raise OriginError(f"the connection string's {field} is missing or has characters "
                              f"the pooler cannot take (pattern {pattern.pattern})")
    if not 1 <= port <= 65535:
        raise OriginError("the connection string's port must be 1-65535")
    return Origin(host=host, port=port, database=database, user=user, password=password)

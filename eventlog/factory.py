"""Open an event log from a URL, so configuration is one string."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from eventlog.embedded import EmbeddedEventLog
from eventlog.errors import InvalidLogUrl
from eventlog.kafka import KafkaEventLog, KafkaSettings
from eventlog.port import DEFAULT_MAX_EVENT_BYTES, EventLog


def open_event_log(url: str) -> EventLog:
    """Build (not start) an event log.

    - `kafka://host:port[,host:port...]?topic=NAME&partitions=N&replication_factor=R`
    - `sqlite:///absolute/path.db?partitions=N`, `sqlite://relative/path.db`, or a bare path

    Both accept `max_event_bytes=`.
    """
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query, strict_parsing=False).items()}
    try:
        if parts.scheme == "kafka":
            return _kafka(parts.netloc, query, url)
        if parts.scheme == "sqlite":
            path = parts.netloc + parts.path
            if not path:
                raise InvalidLogUrl(f"{url!r} names no file")
            return _sqlite(path, query, url)
        if parts.scheme in ("", "file"):
            return EmbeddedEventLog(Path(parts.path or url))
    except ValueError as exc:
        if isinstance(exc, InvalidLogUrl):
            raise
        raise InvalidLogUrl(f"{url!r}: {exc}") from exc
    raise InvalidLogUrl(f"{url!r}: unsupported scheme {parts.scheme!r} (kafka, sqlite)")


def _int(query: dict[str, str], name: str) -> int | None:
    value = query.pop(name, None)
    return None if value is None else int(value)


def _leftovers(query: dict[str, str], url: str) -> None:
    if query:
        raise InvalidLogUrl(f"{url!r}: unknown parameters {sorted(query)}")


def _kafka(netloc: str, query: dict[str, str], url: str) -> KafkaEventLog:
    if not netloc:
        raise InvalidLogUrl(f"{url!r} names no bootstrap servers")
    topic = query.pop("topic", "wdl.events")
    partitions = _int(query, "partitions")
    replication = _int(query, "replication_factor") or 1
    max_bytes = _int(query, "max_event_bytes") or DEFAULT_MAX_EVENT_BYTES
    _leftovers(query, url)
    return KafkaEventLog(
        KafkaSettings(
            bootstrap_servers=netloc,
            topic=topic,
            partitions=partitions,
            replication_factor=replication,
            max_event_bytes=max_bytes,
        )
    )


def _sqlite(path: str, query: dict[str, str], url: str) -> EmbeddedEventLog:
    partitions = _int(query, "partitions")
    max_bytes = _int(query, "max_event_bytes") or DEFAULT_MAX_EVENT_BYTES
    _leftovers(query, url)
    return EmbeddedEventLog(Path(path), partitions=partitions, max_event_bytes=max_bytes)

"""open_event_log() turns one configuration string into an adapter (not started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventlog import EmbeddedEventLog, InvalidLogUrl, KafkaEventLog, open_event_log

pytestmark = pytest.mark.unit


def test_kafka_url() -> None:
    log = open_event_log("kafka://k1:9092,k2:9092?topic=wdl.prod&partitions=24")
    assert isinstance(log, KafkaEventLog)
    assert log.settings.bootstrap_servers == "k1:9092,k2:9092"
    assert (log.settings.topic, log.settings.partitions) == ("wdl.prod", 24)


def test_sqlite_urls_and_paths() -> None:
    absolute = open_event_log("sqlite:///var/lib/wdl/events.db?partitions=8")
    assert isinstance(absolute, EmbeddedEventLog)
    assert absolute.path == Path("/var/lib/wdl/events.db")
    relative = open_event_log("sqlite://.wdl/events.db")
    assert isinstance(relative, EmbeddedEventLog) and relative.path == Path(".wdl/events.db")
    bare = open_event_log("/tmp/events.db")
    assert isinstance(bare, EmbeddedEventLog) and bare.path == Path("/tmp/events.db")


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost",
        "kafka://",
        "kafka://k:9092?partitions=many",
        "kafka://k:9092?topicc=x",
        "sqlite://",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(InvalidLogUrl):
        open_event_log(url)

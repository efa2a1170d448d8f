"""Queues in the fold: create/delete, producer bindings, consumers and dead-letter queues."""

from __future__ import annotations

import msgspec
import pytest

from eventlog import events as ev
from eventlog.errors import InvalidEvent
from projections import keys
from tests.factories import upload
from tests.unit.test_fold import Harness, accepted

PRODUCER = ev.Binding(name="JOBS", kind="queue", target="jobs")


def with_queue(*names: str) -> Harness:
    h = Harness()
    assert accepted(h.send(ev.NamespaceCreated(namespace="acme")))
    for name in names or ("jobs",):
        assert accepted(h.send(ev.QueueCreated(namespace="acme", name=name)))
    return h


def test_created_renders_the_queue_without_a_consumer() -> None:
    h = with_queue()
    doc = h.get(keys.resources("queue", "acme"), "jobs")
    assert isinstance(doc, dict)
    assert (doc["delivery_delay"], doc["consumer"], doc["version"]) == (0, None, 1)
    assert h.send(ev.QueueCreated(namespace="acme", name="jobs")).code == "resource_exists"


def test_bad_names_and_settings_are_invalid() -> None:
    for event in (ev.QueueCreated(namespace="acme", name="Jobs"),
                  ev.QueueCreated(namespace="acme", name="jobs", delivery_delay=43_201),
                  ev.QueueConsumerSet(namespace="acme", name="jobs", worker="w",
                                      max_batch_size=101),
                  ev.QueueConsumerSet(namespace="acme", name="jobs", worker="w",
                                      max_batch_size=0),
                  ev.QueueConsumerSet(namespace="acme", name="jobs", worker="w",
                                      dead_letter_queue="jobs"),
                  ev.QueueConsumerSet(namespace="acme", name="jobs", worker="w",
                                      max_retries=-1)):
        with pytest.raises(InvalidEvent):
            event.validate()
    with pytest.raises(InvalidEvent):
        msgspec.structs.replace(upload("acme", "api", "v1"), bindings=(
            ev.Binding(name="Q", kind="queue", target="jobs", value="soon"),)).validate()


def test_producer_binding_needs_the_queue_and_pins_it() -> None:
    h = Harness()
    h.send(ev.NamespaceCreated(namespace="acme"))
    version = msgspec.structs.replace(upload("acme", "api", "v1"), bindings=(PRODUCER,))
    assert h.send(version).code == "binding_target_missing"
    h.send(ev.QueueCreated(namespace="acme", name="jobs"))
    assert accepted(h.send(version))
    assert accepted(h.send(ev.VersionPromoted(namespace="acme", worker="api", version_id="v1")))
    in_use = h.send(ev.QueueDeleted(namespace="acme", name="jobs"))
    assert in_use.code == "resource_in_use" and "queue" in in_use.message
    assert accepted(h.send(ev.QueueDeleted(namespace="acme", name="jobs", force=True)))
    assert h.get(keys.resources("queue", "acme"), "jobs") is None


def test_one_consumer_per_queue_with_an_existing_worker_and_dlq() -> None:
    h = with_queue("jobs", "jobs-dlq")
    consumer = ev.QueueConsumerSet(namespace="acme", name="jobs", worker="api", max_retries=2,
                                   dead_letter_queue="jobs-dlq", max_batch_size=50)
    assert h.send(consumer).code == "worker_not_found"
    assert accepted(h.send(upload("acme", "api", "v1")))
    assert accepted(h.send(upload("acme", "other", "v1")))
    missing_dlq = msgspec.structs.replace(consumer, dead_letter_queue="nope")
    assert h.send(missing_dlq).code == "resource_not_found"
    assert accepted(h.send(consumer))
    settings = h.get(keys.QUEUE_CONSUMERS, "acme/jobs")
    assert isinstance(settings, dict)
    assert (settings["worker"], settings["max_batch_size"], settings["max_retries"],
            settings["dead_letter_queue"]) == ("api", 50, 2, "jobs-dlq")
    doc = h.get(keys.resources("queue", "acme"), "jobs")
    assert isinstance(doc, dict) and doc["consumer"] == settings
    # The same worker may change its settings; another one is refused.
    assert accepted(h.send(msgspec.structs.replace(consumer, max_batch_size=10)))
    taken = h.send(msgspec.structs.replace(consumer, worker="other"))
    assert taken.code == "consumer_exists"
    # The dead-letter queue is in use while a consumer names it.
    assert h.send(ev.QueueDeleted(namespace="acme", name="jobs-dlq")).code == "resource_in_use"
    wrong = h.send(ev.QueueConsumerRemoved(namespace="acme", name="jobs", worker="other"))
    assert wrong.code == "consumer_not_found"
    assert accepted(h.send(ev.QueueConsumerRemoved(namespace="acme", name="jobs",
                                                   worker="api")))
    assert h.get(keys.QUEUE_CONSUMERS, "acme/jobs") is None
    assert accepted(h.send(ev.QueueDeleted(namespace="acme", name="jobs-dlq")))


def test_deleting_a_queue_drops_its_consumer() -> None:
    h = with_queue()
    h.send(upload("acme", "api", "v1"))
    assert accepted(h.send(ev.QueueConsumerSet(namespace="acme", name="jobs", worker="api")))
    assert accepted(h.send(ev.QueueDeleted(namespace="acme", name="jobs")))
    assert h.get(keys.QUEUE_CONSUMERS, "acme/jobs") is None
    assert accepted(h.send(ev.QueueCreated(namespace="acme", name="jobs")))
    doc = h.get(keys.resources("queue", "acme"), "jobs")
    assert isinstance(doc, dict) and doc["consumer"] is None

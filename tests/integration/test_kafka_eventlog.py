"""What only the Kafka adapter promises: topic settings and clear unavailability."""

from __future__ import annotations

import socket
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from eventlog import KafkaEventLog, KafkaSettings, LogUnavailable
from harness.endpoints import Endpoints

pytestmark = pytest.mark.integration


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_topic_is_created_with_infinite_retention_and_configured_partitions(
    services: Endpoints,
) -> None:
    assert services.kafka_bootstrap_servers is not None
    topic = f"eventlog-cfg-{uuid.uuid4().hex[:12]}"
    settings = KafkaSettings(services.kafka_bootstrap_servers, topic=topic, partitions=6)
    async with KafkaEventLog(settings) as log:
        assert log.partitions == 6
    admin = AIOKafkaAdminClient(bootstrap_servers=services.kafka_bootstrap_servers)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
    finally:
        await admin.close()
    entries = {
        entry["config_names"]: entry["config_value"]
        for response in responses
        for resource in response.to_object()["resources"]
        for entry in resource["config_entries"]
    }
    assert entries["retention.ms"] == "-1"
    assert entries["retention.bytes"] == "-1"
    assert entries["cleanup.policy"] == "delete"


async def test_an_unreachable_broker_is_log_unavailable() -> None:
    settings = KafkaSettings(
        f"127.0.0.1:{_closed_port()}", topic="never-created", connect_timeout_s=5
    )
    with pytest.raises(LogUnavailable) as info:
        async with KafkaEventLog(settings):
            pass
    assert info.value.code == "log_unavailable"
    assert not info.value.outcome_unknown

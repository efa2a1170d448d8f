"""Fallback for machines with a Docker engine: the same servers via testcontainers.

Only used when the environment does not name the services. workerd is never
containerised: it comes from npm on every machine.
"""

from __future__ import annotations

import shutil
import subprocess
from contextlib import ExitStack
from typing import Any

from harness.endpoints import Endpoints


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        res = subprocess.run(["docker", "info"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


class ContainerServices:
    """Starts Kafka, Redis, PostgreSQL and MinIO containers; `stop()` removes them."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self.kafka: Any = None

    def start(self, workerd_bin: str | None) -> Endpoints:
        from testcontainers.kafka import KafkaContainer
        from testcontainers.minio import MinioContainer
        from testcontainers.postgres import PostgresContainer
        from testcontainers.redis import RedisContainer

        kafka = KafkaContainer("confluentinc/cp-kafka:7.7.1").with_kraft()
        self.kafka = self._stack.enter_context(kafka)
        redis = self._stack.enter_context(RedisContainer("redis:7-alpine"))
        pg = self._stack.enter_context(
            PostgresContainer("postgres:15-alpine", username="wdl", password="wdl", dbname="wdl")
        )
        minio = self._stack.enter_context(MinioContainer("minio/minio:latest"))
        cfg = minio.get_config()
        return Endpoints(
            kafka_bootstrap_servers=self.kafka.get_bootstrap_server(),
            redis_url=(
                f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"
            ),
            database_url=(
                f"postgresql://wdl:wdl@{pg.get_container_host_ip()}:"
                f"{pg.get_exposed_port(5432)}/wdl"
            ),
            s3_endpoint_url=f"http://{cfg['endpoint']}",
            s3_access_key_id=cfg["access_key"],
            s3_secret_access_key=cfg["secret_key"],
            workerd_bin=workerd_bin,
        )

    def stop(self) -> None:
        self._stack.close()

"""Session fixtures for the real servers.

Resolution order (issue 2): the variables in the environment (``make test``
exports ``.wdl/services.env``); else testcontainers when a Docker engine
answers; else the session fails with instructions. A missing service is a
failure, never a skip, in CI and out of it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Protocol

import pytest

from harness import endpoints as ep

HOW_TO = (
    "Integration tests need real Kafka, Redis, PostgreSQL, S3 and workerd. Provide them with\n"
    "  make services && set -a && . .wdl/services.env && set +a\n"
    "(provisions everything on 127.0.0.1 without Docker), or export KAFKA_BOOTSTRAP_SERVERS,\n"
    "REDIS_URL, DATABASE_URL, S3_ENDPOINT_URL, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY and\n"
    "WORKERD_BIN yourself, or run on a machine with a Docker engine (testcontainers)."
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test is exactly one of unit/integration/security, by directory.
    for item in items:
        path = str(item.path)
        if f"{os.sep}integration{os.sep}" in path:
            item.add_marker(pytest.mark.integration)
        elif f"{os.sep}unit{os.sep}" in path:
            item.add_marker(pytest.mark.unit)
        elif f"{os.sep}security{os.sep}" in path:
            item.add_marker(pytest.mark.security)


class BrokerControl(Protocol):
    def stop(self) -> None: ...
    def start(self) -> None: ...
    def restart(self) -> None: ...


class _HarnessKafka:
    """Stops and starts the broker that `make services` runs (same ports, same data)."""

    def __init__(self) -> None:
        from harness.services import Kafka

        self._kafka = Kafka()

    def stop(self) -> None:
        self._kafka.terminate()

    def start(self) -> None:
        self._kafka.start()

    def restart(self) -> None:
        self.stop()
        self.start()


class _ContainerKafka:
    def __init__(self, container: Any) -> None:
        self._container = container

    def stop(self) -> None:
        self._container.get_wrapped_container().stop()

    def start(self) -> None:
        self._container.get_wrapped_container().start()

    def restart(self) -> None:
        self._container.get_wrapped_container().restart()


@pytest.fixture(scope="session")
def _resolved_services() -> Iterator[tuple[ep.Endpoints, BrokerControl | None]]:
    found = ep.load(env_file=None)
    if not found.missing():
        yield found, _harness_kafka_if_managed(found)
        return
    workerd = found.workerd_bin or _installed_workerd()
    from harness.containers import ContainerServices, docker_available

    if docker_available():
        containers = ContainerServices()
        try:
            started = containers.start(workerd)
        except Exception as exc:  # pragma: no cover - needs a Docker engine
            containers.stop()
            pytest.fail(f"testcontainers could not start the services: {exc}\n{HOW_TO}")
        try:
            yield started, _ContainerKafka(containers.kafka)
        finally:
            containers.stop()
        return
    pytest.fail(f"missing services: {', '.join(found.missing())}\n{HOW_TO}", pytrace=False)


def _installed_workerd() -> str | None:
    try:
        from harness.workerd import workerd_bin

        return str(workerd_bin())
    except Exception:
        return None


def _harness_kafka_if_managed(found: ep.Endpoints) -> BrokerControl | None:
    from harness.services import Kafka

    kafka = Kafka()
    if kafka.pid() is not None and found.kafka_bootstrap_servers == kafka.bootstrap:
        return _HarnessKafka()
    return None


@pytest.fixture(scope="session")
def services(_resolved_services: tuple[ep.Endpoints, BrokerControl | None]) -> ep.Endpoints:
    endpoints, _ = _resolved_services
    missing = endpoints.missing()
    if missing:
        pytest.fail(f"missing services: {', '.join(missing)}\n{HOW_TO}", pytrace=False)
    return endpoints


@pytest.fixture(scope="session")
def kafka_broker(
    services: ep.Endpoints, _resolved_services: tuple[ep.Endpoints, BrokerControl | None]
) -> BrokerControl:
    _, control = _resolved_services
    if control is None:
        pytest.fail(
            "fault tests restart the Kafka broker, so they need one this run controls: "
            "the broker of `make services` or a testcontainers one, not an external "
            f"KAFKA_BOOTSTRAP_SERVERS={services.kafka_bootstrap_servers}",
            pytrace=False,
        )
    return control


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Names that cannot collide between tests or runs (topics, buckets, databases)."""

    def make(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    return make


@pytest.fixture
def fresh_database(services: ep.Endpoints) -> Iterator[str]:
    """A brand-new PostgreSQL database for one test; dropped afterwards."""
    with new_database(services) as url:
        yield url


@contextlib.contextmanager
def new_database(services: ep.Endpoints) -> Iterator[str]:
    """A brand-new PostgreSQL database, dropped when the block ends."""
    import psycopg

    assert services.database_url is not None
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin_url = _with_database(services.database_url, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(services.database_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture
def endpoints_with(services: ep.Endpoints) -> Callable[..., ep.Endpoints]:
    """Copy of the endpoints with some fields replaced (e.g. a per-test database)."""

    def make(**changes: str) -> ep.Endpoints:
        return replace(services, **changes)

    return make

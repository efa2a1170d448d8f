"""Fixtures shared by the integration tests that run a whole platform."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from harness.endpoints import Endpoints
from tests.integration.test_dataplane_dev import Dev
from tests.platform_stack import Stack, platform_stack


@pytest.fixture
def dev(services: Endpoints, tmp_path: Path) -> Iterator[Dev]:
    """`wdl dev` as a user runs it (a subprocess on free ports, data under tmp_path), not
    started yet; killed at the end whatever the test left running."""
    assert services.workerd_bin
    d = Dev(tmp_path / "data", services.workerd_bin)
    try:
        yield d
    finally:
        d.kill()


@pytest.fixture
async def loopback_stack(services: Endpoints, fresh_database: str,
                         unique_name: Callable[[str], str], tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    """A platform whose tenants may reach loopback (the operators' test setting), so tests
    can stand up destinations on 127.0.0.1."""
    async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                              egress_allow_loopback=True) as stack:
        yield stack

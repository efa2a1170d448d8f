"""Fixtures shared by the integration tests that run a whole platform."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from harness.endpoints import Endpoints
from tests.platform_stack import Stack, platform_stack


@pytest.fixture
async def loopback_stack(services: Endpoints, fresh_database: str,
                         unique_name: Callable[[str], str], tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    """A platform whose tenants may reach loopback (the operators' test setting), so tests
    can stand up destinations on 127.0.0.1."""
    async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                              egress_allow_loopback=True) as stack:
        yield stack

"""Component combinations `wdl up --only` refuses before starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.platform import Platform, PlatformOptions
from services.settings import Settings

pytestmark = pytest.mark.unit

SERVERS = {"REDIS_URL": "redis://127.0.0.1:1/0", "DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}


def _settings(tmp_path: Path) -> Settings:
    return Settings.from_env({**SERVERS, "WDL_DATA_DIR": str(tmp_path)})


@pytest.mark.parametrize(("components", "state_url", "message"), [
    ({"gateway"}, None, "the gateway alone needs --state-url and --data-url"),
    ({"data"}, None, "the data service without the state service needs --state-url"),
    ({"data", "api"}, None, "the data service without the state service needs --state-url"),
])
def test_refused_combinations_say_what_is_missing(
        tmp_path: Path, components: set[str], state_url: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Platform(_settings(tmp_path), PlatformOptions(components=frozenset(components),
                                                      state_url=state_url))


@pytest.mark.parametrize("components", [{"data"}, {"data", "state"}, {"data", "api"}])
def test_the_data_service_with_a_state_service_is_accepted(
        tmp_path: Path, components: set[str]) -> None:
    state_url = None if "state" in components else "http://127.0.0.1:8790"
    Platform(_settings(tmp_path), PlatformOptions(components=frozenset(components),
                                                  state_url=state_url))

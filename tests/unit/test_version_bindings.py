"""Pure logic of the `version_metadata` and `ratelimit` binding kinds and deploy tags."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import msgspec
import pytest

from eventlog import decode, encode
from eventlog.bindings import SPECS, BindingConfigError
from eventlog.bindings.version_metadata import iso_timestamp
from eventlog.errors import InvalidEvent
from eventlog.events import Binding
from services.ratelimit.store import (
    MemoryRatelimitStore,
    RatelimitRefusal,
    ratelimit_store_from_kv_url,
)
from services.state.bundles import _env
from tests.eventlog_samples import envelope, upload

pytestmark = pytest.mark.unit
VersionBindingConfigError = BindingConfigError


def read_version_metadata(doc: Mapping[str, object], config: str) -> list[dict[str, str]]:
    parse = SPECS["version_metadata"].parse
    assert parse is not None
    return parse(doc, config)


def read_ratelimits(doc: Mapping[str, object], config: str) -> list[dict[str, str]]:
    parse = SPECS["ratelimit"].parse
    assert parse is not None
    return parse(doc, config)
DIGEST = "ab" * 32


def with_(**changes: object) -> object:
    return msgspec.structs.replace(upload(), **changes)


def test_tag_and_message_default_empty_and_old_events_decode_unchanged() -> None:
    raw = encode(envelope(upload()))
    assert b'"tag"' not in raw and b'"message"' not in raw  # as events before the fields
    assert decode(raw).payload.tag == "" and decode(raw).payload.message == ""  # type: ignore[union-attr]
    tagged = envelope(with_(tag="v1", message="a fix"))  # type: ignore[arg-type]
    assert decode(encode(tagged)) == tagged


@pytest.mark.parametrize(("changes", "field"), [
    ({"tag": "t" * 26}, "tag"), ({"message": "m" * 101}, "message"),
    ({"tag": "a\nb"}, "tag"), ({"message": "bell\x07"}, "message"),
])
def test_tags_and_messages_are_bounded_printable_text(changes: dict[str, str],
                                                      field: str) -> None:
    with pytest.raises(InvalidEvent) as exc:
        with_(**changes).validate()  # type: ignore[attr-defined]
    assert exc.value.field == field
    with_(tag="t" * 25, message="ünïcode ok " * 9).validate()  # type: ignore[attr-defined]


@pytest.mark.parametrize("binding", [
    Binding(name="M", kind="version_metadata", target="x"),
    Binding(name="R", kind="ratelimit", target="10:01", value="3/60"),
    Binding(name="R", kind="ratelimit", target="", value="3/60"),
    Binding(name="R", kind="ratelimit", target="1" * 17, value="3/60"),
    Binding(name="R", kind="ratelimit", target="1001", value="3/30"),
    Binding(name="R", kind="ratelimit", target="1001", value="0/60"),
    Binding(name="R", kind="ratelimit", target="1001", value="3"),
    Binding(name="R", kind="ratelimit", target="1001", value="3/60", entrypoint="X"),
])
def test_bad_bindings_of_the_two_kinds_are_refused(binding: Binding) -> None:
    with pytest.raises(InvalidEvent):
        with_(bindings=(binding,)).validate()  # type: ignore[attr-defined]


def test_good_bindings_of_the_two_kinds_are_accepted() -> None:
    with_(bindings=(Binding(name="M", kind="version_metadata"),
                    Binding(name="R", kind="ratelimit", target="1001", value="100/10")),
          ).validate()  # type: ignore[attr-defined]


def test_the_env_gets_metadata_as_data_and_a_ratelimit_stub_with_platform_props() -> None:
    meta = {"uploaded_at": 1_700_000_000_123, "tag": "v2", "bindings": [
        {"name": "M", "kind": "version_metadata"},
        {"name": "R", "kind": "ratelimit", "target": "1001", "value": "7/10"}]}
    env, platform = _env("acme", "api", "ver1", meta, {})
    assert env == {"M": {"id": "ver1", "tag": "v2", "timestamp": "2023-11-14T22:13:20.123Z"}}
    assert platform == [{"name": "R", "kind": "ratelimit", "props": {
        "namespace": "acme", "worker": "api", "version": "ver1", "namespace_id": "1001",
        "limit": 7, "period": 10}}]
    assert iso_timestamp(0) == "1970-01-01T00:00:00.000Z"


def test_wrangler_tables_become_bindings() -> None:
    doc = {"version_metadata": {"binding": "META"},
           "ratelimits": [{"name": "RL", "namespace_id": "1001",
                           "simple": {"limit": 100, "period": 60}}]}
    assert read_version_metadata(doc, "w.toml") == [{"name": "META", "kind": "version_metadata"}]
    assert read_ratelimits(doc, "w.toml") == [
        {"name": "RL", "kind": "ratelimit", "target": "1001", "value": "100/60"}]
    assert read_ratelimits({}, "w.toml") == [] == read_version_metadata({}, "w.toml")


@pytest.mark.parametrize(("doc", "says"), [
    ({"version_metadata": {"binding": "M", "x": 1}}, "version_metadata.x"),
    ({"version_metadata": "M"}, "binding"),
    ({"ratelimits": [{"name": "R", "namespace_id": 1001, "simple": {"limit": 1,
                                                                   "period": 60}}]},
     "namespace_id"),
    ({"ratelimits": [{"name": "R", "namespace_id": "ns-a", "simple": {"limit": 1,
                                                                     "period": 60}}]},
     "must be an integer"),
    ({"ratelimits": [{"name": "R", "namespace_id": "1", "simple": {"limit": 1,
                                                                  "period": 30}}]},
     "must be either 10 or 60"),
    ({"ratelimits": [{"name": "R", "namespace_id": "1", "simple": {"limit": 1.5,
                                                                  "period": 10}}]},
     "whole number"),
    ({"ratelimits": [{"name": "R", "namespace_id": "1", "simple": {"period": 10}}]},
     "simple.limit"),
    ({"ratelimits": [{"name": "R", "namespace_id": "1", "simple": {"limit": 1, "period": 10,
                                                                  "burst": 2}}]},
     "simple.burst"),
    ({"ratelimits": [{"name": "R", "namespace_id": "1"}]}, "simple"),
])
def test_wrangler_tables_are_checked_as_wrangler_does(doc: dict[str, object],
                                                      says: str) -> None:
    with pytest.raises(VersionBindingConfigError) as exc:
        read_version_metadata(doc, "w.toml")
        read_ratelimits(doc, "w.toml")
    assert says in str(exc.value)


@dataclasses.dataclass
class Clock:
    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_the_embedded_store_counts_fixed_windows_as_miniflare() -> None:
    clock = Clock(600.0)  # the start of a 60 s window (and of a 10 s one)
    store = MemoryRatelimitStore(clock)
    hits = [await store.hit("acme", "1", DIGEST, 2, 60) for _ in range(4)]
    assert hits == [True, True, False, False]  # a refused call does not count
    assert await store.hit("other", "1", DIGEST, 2, 60)  # another namespace: its own
    assert await store.hit("acme", "2", DIGEST, 2, 60)  # another namespace_id: its own
    assert await store.hit("acme", "1", DIGEST, 2, 10)  # another period: its own
    clock.now = 659.9
    assert not await store.hit("acme", "1", DIGEST, 2, 60)
    clock.now = 660.0  # the next window
    assert await store.hit("acme", "1", DIGEST, 2, 60)
    assert not await store.hit("acme", "1", DIGEST, 0, 60)  # limit 0: nothing passes


@pytest.mark.parametrize("args", [
    ("ac:me", "1", DIGEST, 1, 60), ("acme", "1:2", DIGEST, 1, 60),
    ("acme", "1", "raw-key", 1, 60), ("acme", "1", DIGEST.upper(), 1, 60),
    ("acme", "1", DIGEST, -1, 60), ("acme", "1", DIGEST, 10**10, 60),
    ("acme", "1", DIGEST, True, 60), ("acme", "1", DIGEST, 1, 30),
    ("acme", "1", DIGEST, 1.5, 60),
])
async def test_counter_names_are_built_from_allow_listed_parts_only(args: tuple) -> None:  # type: ignore[type-arg]
    with pytest.raises(RatelimitRefusal):
        await MemoryRatelimitStore().hit(*args)


def test_the_store_lives_beside_kv_data() -> None:
    redis = ratelimit_store_from_kv_url("redis://127.0.0.1:6379/0?prefix=t1kv:")
    assert type(redis).__name__ == "RedisRatelimitStore"
    assert redis.prefix == "t1kv:rl:" and "prefix" not in redis.url  # type: ignore[attr-defined]
    assert isinstance(ratelimit_store_from_kv_url("sqlite:///tmp/kv.sqlite"),
                      MemoryRatelimitStore)

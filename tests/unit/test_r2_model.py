"""R2's pure rules (Miniflare's validator): conditionals, ranges, limits, key encoding,
list-page selection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.r2.errors import InvalidRange, MetadataTooLarge, PreconditionFailed
from services.r2.keys import decode_key, encode_key, listing_prefix, select
from services.r2.model import Conditional, Etag, ObjectMeta, RangeSpec, check_custom_metadata

META = ObjectMeta("k", "v1", 10, "e" * 32, uploaded=1_700_000_000_500)


def test_etag_conditions() -> None:
    strong, weak, star = Etag("strong", META.etag), Etag("weak", META.etag), Etag("wildcard")
    assert Conditional(etag_matches=(strong,)).holds(META)
    assert not Conditional(etag_matches=(weak,)).holds(META)  # If-Match is strong-only
    assert not Conditional(etag_does_not_match=(weak,)).holds(META)  # If-None-Match is weak
    assert Conditional(etag_does_not_match=(Etag("strong", "x"),)).holds(META)
    assert not Conditional(etag_does_not_match=(star,)).holds(META)
    # On a missing object only If-Match / If-Modified-Since fail.
    assert Conditional(etag_does_not_match=(star,)).holds(None)
    assert not Conditional(etag_matches=(star,)).holds(None)
    assert not Conditional(uploaded_after=0).holds(None)
    with pytest.raises(PreconditionFailed) as failed:
        Conditional(etag_matches=(Etag("strong", "x"),)).check(META)
    assert failed.value.meta is META


def test_date_conditions_and_precedence() -> None:
    t = META.uploaded
    assert Conditional(uploaded_before=t + 1).holds(META)
    assert not Conditional(uploaded_before=t).holds(META)
    assert Conditional(uploaded_after=t - 1).holds(META)
    assert not Conditional(uploaded_after=t).holds(META)
    # Header conditions compare at second granularity.
    assert not Conditional(uploaded_after=t - 1, seconds_granularity=True).holds(META)
    # A matching If-Match overrides If-Unmodified-Since; If-None-Match overrides If-Modified.
    assert Conditional(etag_matches=(Etag("strong", META.etag),), uploaded_before=0).holds(META)
    assert Conditional(etag_does_not_match=(Etag("strong", "x"),),
                       uploaded_after=t + 10).holds(META)


@pytest.mark.parametrize(("spec", "want"), [
    (RangeSpec(offset=2, length=3), (2, 3)),
    (RangeSpec(offset=7), (7, 3)),
    (RangeSpec(length=4), (0, 4)),
    (RangeSpec(suffix=4), (6, 4)),
    (RangeSpec(suffix=40), (0, 10)),
    (RangeSpec(offset=8, length=50), (8, 2)),
    (RangeSpec(header="bytes=1-2"), (1, 2)),
    (RangeSpec(header="bytes=8-"), (8, 2)),
    (RangeSpec(header="bytes=-3"), (7, 3)),
    (RangeSpec(header="bytes=1-2,4-5"), None),  # not exactly one range: the whole object
    (RangeSpec(header="bytes=20-30"), None),
])
def test_ranges(spec: RangeSpec, want: tuple[int, int] | None) -> None:
    assert spec.resolve(10) == want


@pytest.mark.parametrize("spec", [RangeSpec(offset=11), RangeSpec(suffix=0),
                                  RangeSpec(offset=0, length=0), RangeSpec(offset=-1),
                                  RangeSpec(offset=10)])  # nothing left to read
def test_unsatisfiable_ranges(spec: RangeSpec) -> None:
    with pytest.raises(InvalidRange):
        spec.resolve(10)


def test_custom_metadata_is_counted_like_r2() -> None:
    check_custom_metadata({"k": "v" * 2047})
    with pytest.raises(MetadataTooLarge):
        check_custom_metadata({"k": "v" * 2048})
    with pytest.raises(MetadataTooLarge):  # a char >= 256 counts every char twice
        check_custom_metadata({"k": "€" * 1024})
    check_custom_metadata({"k": "é" * 2047})  # below 256: one each


def test_encoding_is_path_safe_and_ordered() -> None:
    keys = ["", "a", "a\x00", "a/", "a/b", "ab", "b", "../../etc/passwd", "\U0001f600",
            "x" * 150, "x" * 151, "é" * 512]
    for key in keys:
        name = encode_key(key)
        assert decode_key(name) == key
        assert ".." not in name and not name.startswith("/")
        assert all(0 < len(seg) <= 201 for seg in name.split("/"))
        assert name.startswith(listing_prefix(key[:4]))
    assert sorted(keys, key=encode_key) == sorted(keys, key=lambda k: k.encode())
    assert decode_key("not-ours.json") is None


async def _iter(keys: list[str]) -> AsyncIterator[str]:
    for k in keys:
        yield k


async def test_select_counts_prefixes_and_objects_against_the_limit() -> None:
    keys = ["a/1", "a/2", "b", "c/1", "d"]
    page = await select(_iter(keys), "", "/", 2)
    assert page.prefixes == ["a/"] and page.keys == ["b"]
    assert page.next_start_after == "b"
    page = await select(_iter(keys), "", "/", 10)
    assert page.keys == ["b", "d"] and page.prefixes == ["a/", "c/"]
    assert page.next_start_after is None
    page = await select(_iter(keys), "a/", None, 1)
    assert page.keys == ["a/1"] and page.next_start_after == "a/1"

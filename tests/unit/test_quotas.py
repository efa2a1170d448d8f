"""Quotas: settings and the refusal's words."""

from __future__ import annotations

import pytest

from services.api.errors import ApiError
from services.api.quotas import Quotas


def test_settings_override_the_defaults_and_must_be_positive() -> None:
    q = Quotas.from_env({"WDL_QUOTA_WORKERS": "7", "WDL_QUOTA_D1_BACKUPS": "2"})
    assert (q.workers, q.d1_backups, q.kv) == (7, 2, Quotas().kv)
    with pytest.raises(ValueError, match="WDL_QUOTA_HOSTS"):
        Quotas.from_env({"WDL_QUOTA_HOSTS": "0"})


def test_a_refusal_names_the_count_the_bound_and_the_way_out() -> None:
    q = Quotas(kv=2)
    q.check("kv", 1, "namespace acme", way_out="delete one")
    with pytest.raises(ApiError) as refused:
        q.check("kv", 2, "namespace acme", way_out="delete a KV namespace first")
    assert (refused.value.status, refused.value.code) == (409, "quota_exceeded")
    assert refused.value.message == ("namespace acme has 2 KV namespaces, the most it may "
                                     "have (WDL_QUOTA_KV=2); delete a KV namespace first")

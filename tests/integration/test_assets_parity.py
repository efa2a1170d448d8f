"""Full-stack projects answer on WDL as on `wrangler dev`, path by path.

The full-stack fixture (tests/fixtures/fullstack: an SPA, a nested page, a 404 page, a
PNG, a 3 MiB file, `_headers`, `_redirects`, `.assetsignore`, and a Worker with an API
that calls `env.ASSETS.fetch()`) in each variant of its assets config is served by the
pinned `wrangler dev`, live in this test, and deployed with `wdl deploy` on the platform
on the real servers and on `wdl dev`. The same list of requests (GET, HEAD, revalidation
with the ETag each side gave, Range, trailing-slash redirects, SPA fallbacks, the API,
`_redirects`, `_headers`) is asked of each, and every answer is compared: status, content
type, redirect target, selected headers, body digest. The one documented difference
(Range, see tests/assets_parity.py and docs/compatibility.md) is checked as WDL's own rule.

`WDL_PARITY_REPORT=FILE` appends each run's differences to FILE as markdown.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.endpoints import Endpoints
from tests.assets_parity import (
    VARIANTS,
    Record,
    compare_all,
    materialize,
    record,
    render,
    wrangler_dev,
)
from tests.integration.test_dataplane_dev import Dev
from tests.platform_stack import platform_stack

pytestmark = pytest.mark.timeout(900)


def host(variant: str) -> str:
    return f"{variant}.parity.example.test"


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("parity")
    return {variant: materialize(base, variant) for variant in VARIANTS}


@pytest.fixture(scope="module")
def reference(projects: dict[str, Path]) -> Iterator[dict[str, dict[str, Record]]]:
    """Each variant's answers from the pinned `wrangler dev`, run now."""
    answers = {}
    for variant, project in projects.items():
        with wrangler_dev(project) as server:
            answers[variant] = record(server.url, host(variant))
    yield answers


def report(side: str, reference: dict[str, dict[str, Record]],
           got: dict[str, dict[str, Record]]) -> list[str]:
    """Every difference, written to WDL_PARITY_REPORT if set; one line each for the
    assertion."""
    sections, lines = [], []
    for variant, want in reference.items():
        diffs = compare_all(want, got[variant])
        sections.append(render(f"{side}, variant `{variant}`", diffs))
        lines += [f"[{variant}] {d['probe']}: {d['field']}: wrangler dev {d['expected']!r}, "
                  f"WDL {d['got']!r}" for d in diffs]
    target = os.environ.get("WDL_PARITY_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(f"\n## {side}\n\n" + "\n".join(sections))
    return lines


async def test_servers_answer_as_wrangler_dev(
        reference: dict[str, dict[str, Record]], projects: dict[str, Path],
        services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got: dict[str, Any] = {}
    async with platform_stack(services, fresh_database, unique_name, tmp_path,
                              monkeypatch) as stack:
        await stack.wdl("ns", "create", "parity")
        for variant, project in projects.items():
            await stack.deploy("parity", project)
            await stack.wdl("hosts", "claim", host(variant), "--ns", "parity", "--worker",
                            f"fullstack-{variant}")
        for variant in projects:
            # In a thread: the platform's services run on this event loop.
            got[variant] = await asyncio.to_thread(record, stack.gateway, host(variant))
    differences = report("real servers", reference, got)
    assert not differences, "\n".join(differences)


def test_wdl_dev_answers_as_wrangler_dev(reference: dict[str, dict[str, Record]],
                                         projects: dict[str, Path], dev: Dev) -> None:
    dev.start()
    dev.cli("ns", "create", "parity")
    for variant, project in projects.items():
        dev.cli("deploy", str(project), "--ns", "parity")
        dev.cli("hosts", "claim", host(variant), "--ns", "parity", "--worker",
                f"fullstack-{variant}")
    got = {variant: record(f"http://127.0.0.1:{dev.gateway_port}", host(variant))
           for variant in projects}
    differences = report("wdl dev", reference, got)
    assert not differences, "\n".join(differences)

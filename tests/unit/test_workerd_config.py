"""The capnp renderer, binary lookup and npm pin, without starting workerd."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.workerd import (
    WORKERD_DIR,
    Config,
    ConfigError,
    DataBinding,
    EsModule,
    External,
    FromEnvironmentBinding,
    JsonBinding,
    Network,
    ServiceBinding,
    ServiceRef,
    Socket,
    TextBinding,
    Worker,
    WorkerdNotInstalled,
    WorkerLoaderBinding,
    capnp_text,
    pinned_version,
    render_config,
    workerd_bin,
)

pytestmark = pytest.mark.unit


def test_capnp_text_escapes_quotes_backslashes_controls_and_utf8() -> None:
    assert capnp_text('a"b\\c\nd\te') == '"a\\"b\\\\c\\nd\\te"'
    assert capnp_text("é") == '"\\xc3\\xa9"'
    assert capnp_text("\x00\r") == '"\\x00\\x0d"'


def test_render_full_config() -> None:
    config = Config(
        services=[
            Worker(
                name="gateway",
                modules=[EsModule("gateway.js", "export default {}")],
                compatibility_date="2025-06-01",
                compatibility_flags=["nodejs_compat"],
                bindings=[
                    WorkerLoaderBinding("LOADER", id="tenants"),
                    WorkerLoaderBinding("PRIVATE"),
                    ServiceBinding("STATE", ServiceRef("state")),
                    ServiceBinding("RPC", ServiceRef("gateway", "Admin", {"role": "x"})),
                    TextBinding("DOMAIN", "workers.local"),
                    JsonBinding("LIMITS", {"b": 1, "a": [True, None]}),
                    DataBinding("KEY", b"\x01\xff"),
                    FromEnvironmentBinding("TOKEN", "WDL_TOKEN"),
                ],
                global_outbound=ServiceRef("none"),
            ),
            External("state", "127.0.0.1:9000"),
            Network("none", allow=[]),
            Network("lan", allow=["private"], deny=["10.0.0.0/8"]),
        ],
        sockets=[
            Socket("http", ServiceRef("gateway"), address="127.0.0.1:8080"),
            Socket("fd", ServiceRef("gateway")),
        ],
        v8_flags=["--expose-gc"],
    )
    text = render_config(config)
    assert text.count('using Workerd = import "/workerd/workerd.capnp";') == 1
    assert "const config :Workerd.Config = (" in text
    for fragment in [
        '(name = "gateway.js", esModule = "export default {}")',
        'compatibilityDate = "2025-06-01"',
        'compatibilityFlags = ["nodejs_compat"]',
        '(name = "LOADER", workerLoader = (id = "tenants"))',
        '(name = "PRIVATE", workerLoader = ())',
        '(name = "STATE", service = (name = "state"))',
        '(name = "RPC", service = (name = "gateway", entrypoint = "Admin", '
        'props = (json = "{\\"role\\":\\"x\\"}")))',
        '(name = "DOMAIN", text = "workers.local")',
        '(name = "LIMITS", json = "{\\"a\\":[true,null],\\"b\\":1}")',
        '(name = "KEY", data = 0x"01ff")',
        '(name = "TOKEN", fromEnvironment = "WDL_TOKEN")',
        'globalOutbound = (name = "none")',
        '(name = "state", external = (address = "127.0.0.1:9000", http = ()))',
        '(name = "none", network = (allow = []))',
        '(name = "lan", network = (allow = ["private"], deny = ["10.0.0.0/8"]))',
        '(name = "http", address = "127.0.0.1:8080", http = (), service = (name = "gateway"))',
        '(name = "fd", http = (), service = (name = "gateway"))',
        'v8Flags = ["--expose-gc"]',
    ]:
        assert fragment in text, fragment
    # Balanced brackets: a cheap guard against a broken template.
    assert text.count("(") == text.count(")")
    assert text.count("[") == text.count("]")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            Config(services=[Network("a"), Network("a")]),
            "duplicate service names",
        ),
        (
            Config(services=[Network("a")], sockets=[Socket("s", ServiceRef("missing"))]),
            "unknown service 'missing'",
        ),
        (
            Config(services=[Worker("w", [], "2025-06-01")]),
            "has no modules",
        ),
        (
            Config(
                services=[
                    Worker(
                        "w",
                        [EsModule("w.js", "")],
                        "2025-06-01",
                        bindings=[TextBinding("A", "1"), TextBinding("A", "2")],
                    )
                ]
            ),
            "duplicate binding names",
        ),
        (
            Config(
                services=[
                    Worker(
                        "w",
                        [EsModule("w.js", "")],
                        "2025-06-01",
                        global_outbound=ServiceRef("nowhere"),
                    )
                ]
            ),
            "unknown service 'nowhere'",
        ),
    ],
)
def test_validation(config: Config, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        render_config(config)


def test_internet_is_implicit() -> None:
    config = Config(
        services=[
            Worker(
                "w", [EsModule("w.js", "")], "2025-06-01", global_outbound=ServiceRef("internet")
            )
        ]
    )
    assert 'globalOutbound = (name = "internet")' in render_config(config)


def test_missing_binary_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(WorkerdNotInstalled, match="npm ci --prefix workerd"):
        workerd_bin(tmp_path / "node_modules")


def test_installed_binary_is_the_pinned_native_executable() -> None:
    exe = workerd_bin()
    with exe.open("rb") as f:
        assert f.read(4) == b"\x7fELF"
    package = exe.parent.parent / "package.json"
    assert json.loads(package.read_text())["version"] == pinned_version()


def test_lockfile_pins_exact_versions_and_lists_every_platform_package() -> None:
    package = json.loads((WORKERD_DIR / "package.json").read_text())
    assert package["dependencies"] == {"workerd": "1.20261117.1", "wrangler": "4.85.0",
                                       "es-module-lexer": "3.0.5"}
    lock = json.loads((WORKERD_DIR / "package-lock.json").read_text())
    packages = lock["packages"]
    assert packages["node_modules/workerd"]["version"] == "1.20261117.1"
    assert packages["node_modules/wrangler"]["version"] == "4.85.0"
    assert packages["node_modules/es-module-lexer"]["version"] == "3.0.5"
    # `npm ci` refuses a lock that lacks any of workerd's optional platform packages; the
    # registry mirror here lacks some of them, so they are listed by hand (see docs/workerd.md).
    for name, version in packages["node_modules/workerd"]["optionalDependencies"].items():
        entry = packages.get(f"node_modules/{name}")
        assert entry is not None, f"{name} missing from workerd/package-lock.json"
        assert entry["version"] == version
    # One workerd in the tree: wrangler/miniflare use the pinned one (package.json overrides).
    versions = {v["version"] for k, v in packages.items() if k.endswith("node_modules/workerd")}
    assert versions == {"1.20261117.1"}

"""What the benches that run the whole platform in one process share: the embedded
platform's settings (nothing recycled mid-run) and wrk's options."""

from __future__ import annotations

import argparse
from pathlib import Path

from services.dataplane.gateway import RecyclePolicy
from services.platform import PlatformOptions
from services.settings import Settings


def embedded(work: Path, token: str, workerd: str | None) -> tuple[Settings, PlatformOptions]:
    """An embedded platform under `work`, every port picked by the OS, `token` its admin."""
    settings = Settings.from_env({"WDL_DATA_DIR": str(work / "data"),
                                  "WDL_ADMIN_TOKEN": token}, embedded=True)
    options = PlatformOptions(api_port=0, gateway_port=0, state_port=0, data_port=0,
                              scheduler_health_port=0, projector_health_port=0,
                              workerd_bin=workerd, recycle=RecyclePolicy(interval=0))
    return settings, options


def wrk_parser(prog: str, samples: int) -> argparse.ArgumentParser:
    """wrk's load (seconds, connections, threads), latency samples and the workerd binary."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", type=int, default=samples)
    parser.add_argument("--workerd", default=None, help="workerd binary (default: pinned)")
    return parser

"""`python -m services.api`: serve the control API from the environment.

Backends come from `Settings.from_env()`; live tail needs the data service
(`WDL_DATA_URL`, `WDL_INTERNAL_TOKEN`); the root keys from `WDL_ROOT_KEYS`
(embedded mode falls back to a dev key file under the data directory). In
embedded mode the projector runs in this process (the in-memory projection
lives here); with Redis a separate `python -m projections` runs it, unless
`--projector` asks for one here too.
"""

from __future__ import annotations

import argparse
import contextlib
import os

import uvicorn

from projections.runtime import open_backends, run
from services.api.app import create_app
from services.blobstore.factory import open_blob_store
from services.crypto.config import load_keyring
from services.hostpolicy import HostPolicy, verification_from_env
from services.kv.factory import open_kv_store
from services.logs import configure as configure_logging
from services.r2.factory import open_r2_store
from services.settings import Settings


async def serve(host: str, port: int, projector: bool | None, access_log: bool = False,
                domain: str = "workers.local") -> None:
    settings = Settings.from_env()
    hosts = HostPolicy(domain=domain, verification=verification_from_env(os.environ),
                       resolver=os.environ.get("WDL_DNS_RESOLVER") or None)
    keyring = load_keyring(dev_key_file=settings.data_dir / "root.keys"
                           if settings.embedded else None)
    async with contextlib.AsyncExitStack() as stack:
        backends = await stack.enter_async_context(open_backends(settings))
        blobs = await stack.enter_async_context(open_blob_store(settings.blob_url))
        kv = await stack.enter_async_context(open_kv_store(settings.kv_url))
        r2 = await stack.enter_async_context(open_r2_store(settings.r2_url))
        app = create_app(settings, backends, keyring, blobs,
                         run_projector=settings.embedded if projector is None else projector,
                         kv=kv, r2=r2, data_url=os.environ.get("WDL_DATA_URL"),
                         internal_token=os.environ.get("WDL_INTERNAL_TOKEN"),
                         host_policy=hosts)
        # log_config=None: uvicorn's records go through the process's handler (JSON or text).
        # No access log unless asked for (as in `wdl up`, services/serving.py): a line per
        # request cost ~0.15 ms of a command's few (docs/api.md, Performance); commands log
        # their own `appended` line with the request id.
        config = uvicorn.Config(app, host=host, port=port, lifespan="on", log_config=None,
                                log_level="info", access_log=access_log)
        await uvicorn.Server(config).serve()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.api")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--projector", dest="projector", action="store_true", default=None,
                       help="also run a projector in this process")
    group.add_argument("--no-projector", dest="projector", action="store_false")
    parser.add_argument("--access-log", action="store_true",
                        help="log a line per request (uvicorn's access log)")
    parser.add_argument("--domain", default="workers.local",
                        help="the platform domain: no host claim may take it or its subdomains")
    args = parser.parse_args(argv)
    configure_logging()
    run(serve(args.host, args.port, args.projector, args.access_log, args.domain))


if __name__ == "__main__":
    main()

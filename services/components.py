"""The platform's process kinds and the names of its files under the data dir.

Apart from services/platform.py (which starts them) so that the `wdl` command can name
them without importing every component's libraries at start-up.
"""

from __future__ import annotations

COMPONENTS = ("api", "projector", "state", "data", "gateway", "scheduler", "workflows", "d1",
              "objects", "queues", "hyperdrive")
DEV_KEY_FILE = "root.keys"  # same file the control API uses in embedded mode
TOKEN_FILE = "admin.token"
INTERNAL_TOKEN_FILE = "internal.token"

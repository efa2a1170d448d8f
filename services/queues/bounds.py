"""The queue service's platform bounds (docs/queues.md "Bounds"), from the environment.

Operators set them per deployment; per namespace, `wdl ns limits set --queue-batches N`
raises or lowers one namespace's share of in-flight batches (NamespaceShares key
"queue_batches"; 0 = `per_namespace` here).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DAY_S = 86_400
# Cloudflare: 4 days by default, at most 14 (`wrangler queues create|update
# --message-retention-period-secs`; not a wrangler.toml key).
DEFAULT_RETENTION_S = 4 * DAY_S
MAX_RETENTION_S = 14 * DAY_S


@dataclass(frozen=True)
class QueueBounds:
    # How long one batch may run in the gateway before it counts as a failed attempt.
    invoke_timeout_s: float = 60.0
    # Batches in flight at once per replica, all namespaces together; the HTTP pool to
    # the gateway has this many connections, so a batch holding a slot has a connection.
    capacity: int = 256
    # Batches in flight per namespace per replica unless its `limits` say otherwise.
    per_namespace: int = 32
    # A message not finished this long after it was first sent is dropped (counted).
    retention_s: float = DEFAULT_RETENTION_S
    # A send is refused once the queue's held messages (read and not finished: parked,
    # delayed, waiting, running) weigh this much on this replica.
    max_backlog_bytes: int = 64 * 1024 * 1024
    # Parked messages are appended again (to let the commit move past them) only for at
    # least this many bytes of others' finished messages behind them, and never for less
    # than their own size: the re-appends never outgrow the traffic they unblock.
    park_min_gain_bytes: int = 1024 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> QueueBounds:
        e = os.environ if env is None else env
        d = cls()

        def num(name: str, default: float, low: float, high: float) -> float:
            raw = e.get(name, "")
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name} must be a number, not {raw!r}") from None
            if not low <= value <= high:
                raise ValueError(f"{name} must be from {low:g} to {high:g}, not {raw}")
            return value

        return cls(
            invoke_timeout_s=num("WDL_QUEUE_INVOKE_TIMEOUT_S", d.invoke_timeout_s, 1, 900),
            capacity=int(num("WDL_QUEUE_CAPACITY", d.capacity, 1, 4096)),
            per_namespace=int(num("WDL_QUEUE_BATCHES_PER_NAMESPACE", d.per_namespace, 1, 4096)),
            retention_s=num("WDL_QUEUE_RETENTION_S", d.retention_s, 60, MAX_RETENTION_S),
            max_backlog_bytes=int(num("WDL_QUEUE_MAX_BACKLOG_BYTES", d.max_backlog_bytes,
                                      1_000_000, 1 << 40)),
            park_min_gain_bytes=int(num("WDL_QUEUE_PARK_MIN_GAIN_BYTES",
                                        d.park_min_gain_bytes, 0, 1 << 40)))

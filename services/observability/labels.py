"""Tenant label values with a bounded number of series.

Every (namespace, worker) pair that reaches a metric would be a new series in
every scraper forever; a platform with many tenants must not be able to blow
up Prometheus. The first `cap` distinct keys a process sees keep their own
labels, every later one shares the `_other` series (tenant names cannot start
with `_`, so it never collides with a real one). The cap is per process and
per label set: restarting a process re-admits keys in arrival order.

    workers = WorkerLabels()                 # WDL_METRICS_MAX_WORKERS or 500
    REQUESTS.labels(*workers.labels(ns, worker), "2xx").inc()
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

OTHER = "_other"
UNKNOWN = "_unknown"
DEFAULT_MAX_WORKERS = 500
DEFAULT_MAX_NAMESPACES = 500
MAX_VALUE_CHARS = 64  # longer than any valid name: a garbled value cannot be huge


def _clean(value: object) -> str:
    text = value if isinstance(value, str) else ""
    return text[:MAX_VALUE_CHARS] if text else UNKNOWN


def _cap_from_env(name: str, default: int, env: Mapping[str, str] | None) -> int:
    raw = (os.environ if env is None else env).get(name)
    if not raw:
        return default
    value = int(raw)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


class CappedKeys:
    """Admits at most `cap` distinct keys; the rest map to `overflow`.

    Thread-safe: metrics are updated from the event loop and, in other
    processes' code, from worker threads."""

    def __init__(self, cap: int) -> None:
        if cap < 0:
            raise ValueError("cap must be >= 0")
        self.cap = cap
        self._admitted: set[tuple[str, ...]] = set()
        self._lock = threading.Lock()

    def admit(self, key: tuple[str, ...]) -> bool:
        if key in self._admitted:  # the common case needs no lock (set reads are atomic)
            return True
        with self._lock:
            if key in self._admitted:
                return True
            if len(self._admitted) >= self.cap:
                return False
            self._admitted.add(key)
            return True

    def __len__(self) -> int:
        return len(self._admitted)


class WorkerLabels:
    """`labels(ns, worker)` -> `(ns, worker)`, or `("_other", "_other")` past the cap."""

    def __init__(self, cap: int | None = None, *, env: Mapping[str, str] | None = None) -> None:
        self.keys = CappedKeys(cap if cap is not None else _cap_from_env(
            "WDL_METRICS_MAX_WORKERS", DEFAULT_MAX_WORKERS, env))

    @property
    def cap(self) -> int:
        return self.keys.cap

    def labels(self, namespace: object, worker: object) -> tuple[str, str]:
        key = (_clean(namespace), _clean(worker))
        return key if self.keys.admit(key) else (OTHER, OTHER)


class NamespaceLabels:
    """`labels(ns)` -> `ns`, or `"_other"` past the cap."""

    def __init__(self, cap: int | None = None, *, env: Mapping[str, str] | None = None) -> None:
        self.keys = CappedKeys(cap if cap is not None else _cap_from_env(
            "WDL_METRICS_MAX_NAMESPACES", DEFAULT_MAX_NAMESPACES, env))

    @property
    def cap(self) -> int:
        return self.keys.cap

    def labels(self, namespace: object) -> str:
        value = _clean(namespace)
        return value if self.keys.admit((value,)) else OTHER

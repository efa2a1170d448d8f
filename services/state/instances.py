"""Which loader ids each gateway (workerd process) has loaded, and how many are stale.

The workerLoader never releases an isolate, so the gateway supervisor asks
here how many ids its current workerd holds that no route points at any more,
and recycles the process when that passes its bound (docs/dataplane.md).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class InstanceLoads:
    ids: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (ns, worker)


class LoadRegistry:
    def __init__(self, max_instances: int = 64) -> None:
        self.max_instances = max_instances
        self._instances: OrderedDict[str, InstanceLoads] = OrderedDict()

    def record(self, instance: str, loader_id: str, ns: str, worker: str) -> None:
        loads = self._instances.get(instance)
        if loads is None:
            loads = self._instances[instance] = InstanceLoads()
            while len(self._instances) > self.max_instances:
                self._instances.popitem(last=False)
        self._instances.move_to_end(instance)
        loads.ids[loader_id] = (ns, worker)

    def loaded(self, instance: str) -> dict[str, tuple[str, str]]:
        loads = self._instances.get(instance)
        return dict(loads.ids) if loads is not None else {}

    def forget(self, instance: str) -> None:
        self._instances.pop(instance, None)

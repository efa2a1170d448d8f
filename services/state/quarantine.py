"""Strike a namespace on the control log on behalf of the data plane's watchdog."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from eventlog import events as ev
from eventlog.envelope import Envelope
from eventlog.port import EventLog
from projections.reader import ProjectionReader
from services.state.incidents import IncidentPolicy, Target

log = logging.getLogger("wdl.state.quarantine")
ACTOR = "system:watchdog"


@dataclass(frozen=True)
class StrikeResult:
    target: Target
    accepted: bool
    code: str
    message: str
    held: bool  # the namespace is held back now (by this strike or before)


class Striker:
    """An event like any operator's, so the audit shows it and a rebuild keeps it: the
    fold counts the strikes and holds the namespace (projections/fold/containment.py)."""

    def __init__(self, log_: EventLog, reader: ProjectionReader,
                 policy: IncidentPolicy | None = None) -> None:
        self.log = log_
        self.reader = reader
        self.policy = policy or IncidentPolicy()

    async def strike(self, target: Target, kind: str, *, precise: bool, instance: str,
                     detail: str) -> StrikeResult:
        payload = ev.NamespaceStruck(
            namespace=target.namespace, worker=target.worker, version_id=target.version,
            reason="crash" if kind == "crash" else "hang", precise=precise,
            instance=instance[:128], detail=detail[:2000], hold_after=self.policy.strikes,
            window_s=max(1, int(self.policy.window_s)))
        envelope = Envelope.new(payload, actor=ACTOR)
        position = await self.log.append(envelope)
        verdict = await self.reader.wait_verdict(str(envelope.event_id), position.partition,
                                                 position.offset)
        held = await self.reader.held(target.namespace) is not None
        log.warning("strike against %s (%s): %s%s", target.namespace, target.label(),
                    "accepted" if verdict.accepted else "refused",
                    "; the namespace is held back" if held else "")
        return StrikeResult(target, verdict.accepted, verdict.code or "",
                            verdict.message or "", held)

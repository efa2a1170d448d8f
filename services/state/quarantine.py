"""Append a quarantine to the control log on behalf of the data plane's watchdog."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from eventlog import events as ev
from eventlog.envelope import Envelope
from eventlog.port import EventLog
from projections.reader import ProjectionReader
from services.state.incidents import Target

log = logging.getLogger("wdl.state.quarantine")
ACTOR = "system:watchdog"


@dataclass(frozen=True)
class QuarantineResult:
    target: Target
    accepted: bool
    code: str
    message: str


class Quarantiner:
    """An event like any operator's, so the audit shows it and a rebuild keeps it."""

    def __init__(self, log_: EventLog, reader: ProjectionReader) -> None:
        self.log = log_
        self.reader = reader

    async def quarantine(self, target: Target, kind: str, strikes: int,
                         detail: str) -> QuarantineResult:
        if target.version is None:
            return QuarantineResult(target, False, "version_unknown",
                                    "the worker had no active version to quarantine")
        payload = ev.VersionQuarantined(
            namespace=target.namespace, worker=target.worker, version_id=target.version,
            reason="crash" if kind == "crash" else "hang", strikes=strikes,
            detail=detail[:2000])
        envelope = Envelope.new(payload, actor=ACTOR)
        position = await self.log.append(envelope)
        verdict = await self.reader.wait_verdict(str(envelope.event_id), position.partition,
                                                 position.offset)
        log.warning("quarantine of %s: %s %s", target.label(),
                    "accepted" if verdict.accepted else "refused", verdict.code or "")
        return QuarantineResult(target, verdict.accepted, verdict.code or "",
                                verdict.message or "")

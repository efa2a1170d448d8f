"""A real DNS server on loopback for the tests of host ownership proofs (dnslib's
server, UDP on 127.0.0.1): TXT records from a dict the test changes as it goes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from dnslib import QTYPE, RCODE, RR, TXT, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class TxtZone(BaseResolver):  # type: ignore[misc]
    """Answers TXT queries from `records` (name without trailing dot -> values)."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.queries: list[str] = []
        self.address = ""  # "127.0.0.1:<port>" once served

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        self.queries.append(name)
        values = self.records.get(name)
        if values is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            for value in values:
                # A character-string holds at most 255 bytes: longer values span several.
                chunks = [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(chunks), ttl=1))
        return reply


@contextlib.contextmanager
def dns_server() -> Iterator[tuple[TxtZone, str]]:
    """(zone, "127.0.0.1:<port>") while the server runs."""
    zone = TxtZone()
    # Port 0: the OS picks a free UDP port, read back from the bound socket.
    server = DNSServer(zone, address="127.0.0.1", port=0,
                       logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data"))
    port = server.server.server_address[1]
    zone.address = f"127.0.0.1:{port}"
    server.start_thread()
    try:
        yield zone, f"127.0.0.1:{port}"
    finally:
        server.stop()

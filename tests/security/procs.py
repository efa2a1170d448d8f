"""What a local user of a platform host sees of the platform's processes, from /proc:
their command lines (world-readable), and the TCP ports they listen on (/proc/net/tcp
lists every listening socket; the socket inodes of /proc/<pid>/fd tie them to the
platform's processes - read here as root, so the suite attacks exactly the platform
under test and no neighbour on the shared machine)."""

from __future__ import annotations

import os
from pathlib import Path

LISTEN = "0A"


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of a live process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[3])


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def session(sid: int) -> list[int]:
    """Every process of session `sid` (`wdl dev` started with start_new_session)."""
    return [pid for pid in all_pids() if (s := _stat(pid)) is not None and s[1] == sid]


def tree(root: int) -> list[int]:
    """`root` and its descendants in root's session (a subprocess that started a
    session of its own - another platform - is not part of it)."""
    info = {pid: s for pid in all_pids() if (s := _stat(pid)) is not None}
    sid = info[root][1]
    found, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, psid) in info.items():
            if ppid == parent and psid == sid and pid not in found:
                found.add(pid)
                frontier.append(pid)
    return sorted(found)


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _socket_inodes(pids: list[int]) -> set[int]:
    inodes: set[int] = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    return inodes


def listening_ports(pids: list[int]) -> set[int]:
    """TCP ports (v4 and v6) the processes `pids` listen on."""
    inodes = _socket_inodes(pids)
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == LISTEN and int(fields[9]) in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports

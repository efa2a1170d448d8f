"""The gateway's public listening sockets: one per workerd slot, steered by liveness.

With one listening socket shared by every workerd process, the process that
wakes first drains the whole accept queue: a burst of new connections (a load
balancer opening its pool, wrk) all land in one process and the other cores
idle for the life of those keep-alive connections (docs/dataplane.md,
"Connections across processes"). So each slot gets its own socket, all bound
to the one port with SO_REUSEPORT, and the kernel spreads new connections over
them.

A plain reuseport group would also hand new connections to a stuck process (a
tenant's `while (true) {}`), which a shared socket never does. So the group
carries a classic BPF program that picks the socket from a hash of the
client's address and port *among the slots the supervisor last saw answer*;
the supervisor swaps the program whenever that set changes (late probe, kill,
replacement). The sockets belong to the supervisor and outlive the processes:
connections queued on a slot whose process died are accepted by its
replacement, not reset.

Where SO_REUSEPORT or the BPF program is unavailable (not Linux, an old
kernel, a caller's own socket), every slot shares one socket as before.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct
from collections.abc import Sequence

from services.serving import bind

log = logging.getLogger("wdl.gateway")

SO_ATTACH_REUSEPORT_CBPF = 51  # asm-generic/socket.h; not exported by Python
SKF_NET_OFF = -0x100000        # classic BPF: offsets relative to the network header

# Classic BPF opcodes (linux/filter.h)
_LD_W_ABS, _LD_H_ABS = 0x20, 0x28
_TAX = 0x07
_XOR_X, _MUL_K, _RSH_K, _MOD_K = 0xAC, 0x24, 0x74, 0x94
_JEQ_K = 0x15
_RET_K, _RET_A = 0x06, 0x16


def _insn(code: int, k: int = 0, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def steering_program(family: int, live: Sequence[int]) -> bytes:
    """cBPF that returns, for a SYN, the index (in the group) of one of the `live`
    sockets: hash(last word of the source address, source port) mod len(live).

    Linux picks connect() ports with a stride of 2, so the port alone mod 2 would
    send everything to one socket: it goes through a multiplicative hash first.
    The IPv4 offsets assume a header without options (a SYN with IP options still
    gets a valid index, only a worse spread)."""
    if not live:
        raise ValueError("no socket to steer to")
    addr, port = (12, 20) if family == socket.AF_INET else (20, 40)
    code = [
        _insn(_LD_W_ABS, SKF_NET_OFF + addr),
        _insn(_TAX),
        _insn(_LD_H_ABS, SKF_NET_OFF + port),
        _insn(_XOR_X),
        _insn(_MUL_K, 0x9E3779B1),
        _insn(_RSH_K, 16),
        _insn(_MOD_K, len(live)),
    ]
    if list(live) == list(range(len(live))):
        code.append(_insn(_RET_A))  # the hash's value is the index
    else:
        for i, index in enumerate(live[:-1]):
            code.append(_insn(_JEQ_K, i, jt=0, jf=1))
            code.append(_insn(_RET_K, index))
        code.append(_insn(_RET_K, live[-1]))
    return b"".join(code)


def attach(sock: socket.socket, program: bytes) -> None:
    """SO_ATTACH_REUSEPORT_CBPF: the program serves the whole group of `sock`."""
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HP", len(program) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


class SlotListeners:
    """`count` listening sockets on one port (or one shared), and their steering."""

    def __init__(self, host: str, port: int, count: int) -> None:
        self.host = host
        self.port = port
        self.count = count
        self._socks: list[socket.socket] = []
        self._steered = tuple(range(count))  # the slots new connections go to
        self.steering = False  # per-slot sockets with a steering program

    def open(self) -> None:
        if self.count == 1:
            self._socks = [bind(self.host, self.port)]  # nothing to spread, nobody may join
            return
        if self.port:
            # A reuseport bind would silently join another server's group on this
            # port: make sure nobody has it first, the way a plain bind would.
            bind(self.host, self.port).close()
        try:
            first = bind(self.host, self.port, reuseport=True)
        except (OSError, AttributeError) as exc:
            log.warning("SO_REUSEPORT unavailable (%s): the workerd processes share one socket",
                        exc)
            self._socks = [bind(self.host, self.port)]
            return
        socks = [first]
        try:
            port = first.getsockname()[1]
            for _ in range(1, self.count):
                socks.append(bind(self.host, port, reuseport=True))
            attach(first, steering_program(first.family, list(range(self.count))))
        except OSError as exc:
            for sock in socks[1:]:
                sock.close()
            log.warning("reuseport steering unavailable (%s): the workerd processes share "
                        "one socket", exc)
            socks = [first]
        self._socks = socks
        self.steering = len(socks) == self.count

    def close(self) -> None:
        for sock in self._socks:
            sock.close()
        self._socks = []
        self._steered = tuple(range(self.count))

    @property
    def address(self) -> tuple[str, int]:
        if not self._socks:
            raise RuntimeError("the listeners are not open")
        host, port = self._socks[0].getsockname()[:2]
        return str(host), int(port)

    def socket_for(self, slot: int) -> socket.socket:
        return self._socks[slot] if self.steering else self._socks[0]

    @property
    def steered(self) -> tuple[int, ...]:
        """The slots new connections go to now."""
        return self._steered

    def steer(self, live: Sequence[bool]) -> bool:
        """New connections to the slots marked live (all of them when none is: a
        stuck queue beats refused connections). True when the program changed."""
        if not self.steering:
            return False
        slots = tuple(i for i, ok in enumerate(live) if ok) or tuple(range(self.count))
        if slots == self._steered:
            return False
        try:
            attach(self._socks[0], steering_program(self._socks[0].family, slots))
        except OSError as exc:
            log.error("could not steer new connections to slots %s: %s", slots, exc)
            return False
        self._steered = slots
        return True

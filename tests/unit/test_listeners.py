"""The gateway's per-slot listening sockets and their steering (listeners.py), on real
loopback sockets: where new connections land is what the kernel decides."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator

import pytest

from services.dataplane.listeners import SlotListeners, steering_program


def landed(listeners: SlotListeners, count: int, connections: int = 60) -> Counter[int]:
    """Open `connections` connections to the port and count which slot's socket got each."""
    clients = [socket.create_connection(listeners.address) for _ in range(connections)]
    counts: Counter[int] = Counter()
    try:
        for slot in range(count):
            sock = listeners.socket_for(slot)
            sock.setblocking(False)
            while True:
                try:
                    accepted, _ = sock.accept()
                except BlockingIOError:
                    break
                accepted.close()
                counts[slot] += 1
    finally:
        for client in clients:
            client.close()
    return counts


@pytest.fixture
def three() -> Iterator[SlotListeners]:
    listeners = SlotListeners("127.0.0.1", 0, 3)
    listeners.open()
    yield listeners
    listeners.close()


def test_new_connections_spread_over_every_slot(three: SlotListeners) -> None:
    assert three.steering and three.steered == (0, 1, 2)
    assert len({three.socket_for(i).fileno() for i in range(3)}) == 3
    counts = landed(three, 3)
    assert sum(counts.values()) == 60
    # A shared socket gives a whole burst to whoever accepts first; here each slot
    # gets a share (the hash of 60 sequential client ports).
    assert all(counts[slot] >= 8 for slot in range(3)), counts


def test_a_slot_that_is_not_live_gets_no_new_connections(three: SlotListeners) -> None:
    assert three.steer([True, False, True])
    assert three.steered == (0, 2)
    counts = landed(three, 3)
    assert counts[1] == 0 and counts[0] + counts[2] == 60 and counts[0] and counts[2], counts
    assert not three.steer([True, False, True])  # unchanged: the program stays
    assert three.steer([False, False, True])
    assert landed(three, 3) == Counter({2: 60})
    assert three.steer([True, True, True])
    assert all(landed(three, 3)[slot] for slot in range(3))


def test_no_live_slot_steers_to_all_of_them(three: SlotListeners) -> None:
    three.steer([True, False, False])
    assert three.steer([False, False, False])
    assert three.steered == (0, 1, 2)
    assert sum(landed(three, 3).values()) == 60


def test_a_taken_port_is_refused_not_joined() -> None:
    first = SlotListeners("127.0.0.1", 0, 2)
    first.open()
    try:
        with pytest.raises(OSError):
            SlotListeners("127.0.0.1", first.address[1], 2).open()
    finally:
        first.close()


def test_one_slot_needs_no_steering() -> None:
    one = SlotListeners("127.0.0.1", 0, 1)
    one.open()
    try:
        assert not one.steering and one.steered == (0,)
        assert not one.steer([False])
        assert landed(one, 1, 5) == Counter({0: 5})
    finally:
        one.close()


def test_the_program_maps_hashes_onto_the_live_slots_only() -> None:
    all_three = steering_program(socket.AF_INET, [0, 1, 2])
    some = steering_program(socket.AF_INET, [2, 5])
    assert len(all_three) % 8 == 0 and len(some) > len(all_three)
    with pytest.raises(ValueError):
        steering_program(socket.AF_INET, [])

"""The precondition an event's writer states; the projector checks it against the log.

Kept apart from the envelope so the event catalogue can name it without
importing the envelope (which imports the catalogue).
"""

from __future__ import annotations

import msgspec


class Precondition(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the writer believed when it decided; the projector checks it.

    `expected_version` counts only the ACCEPTED events of the aggregate (0 for
    an aggregate with none); None means unconditional. `expected_generation`
    is the lease generation the writer saw (leases only).
    """

    expected_version: int | None = None
    expected_generation: int | None = None


NO_PRECONDITION = Precondition()

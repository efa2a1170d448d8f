"""A queue message as it sits on the message log, and Cloudflare's producer limits."""

from __future__ import annotations

import msgspec

MAX_MESSAGE_BYTES = 128_000  # Cloudflare (and Miniflare) count decimal kilobytes
MAX_BATCH_MESSAGES = 100
MAX_BATCH_BYTES = 256_000
MAX_DELAY_S = 43_200
CONTENT_TYPES = frozenset({"json", "text", "bytes", "v8"})


class QueueMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One message. `body` is as the producer serialised it (`content_type` says how: JSON
    text, UTF-8 text, raw bytes or V8 serialisation); the consumer's tenant decodes it.

    A retried message is appended again with `attempts` + 1 and `not_before` (ms since the
    epoch) set to when it may be delivered, so retries and delays survive restarts.
    """

    id: str
    namespace: str
    queue: str
    body: bytes
    content_type: str
    timestamp: int  # ms since the epoch, when it was first sent
    attempts: int = 1
    not_before: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.queue}"


encode = msgspec.msgpack.Encoder().encode
decode = msgspec.msgpack.Decoder(QueueMessage).decode

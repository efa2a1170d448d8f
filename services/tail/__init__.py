"""Live tail: trace events of tenant invocations, from the gateway to subscribers.

`workerd/gateway/tail.js` (the tail consumer of every loaded tenant version)
posts normalized events to the data service (`POST /tail`); the `TailHub`
hands them to the subscribers of that (namespace, worker) through bounded
queues (`GET /tail/stream`, NDJSON); the control API proxies that stream to
`wdl tail`. Best effort throughout: nothing is stored, a slow subscriber loses
events and is told how many (docs/dataplane.md, "Live tail").
"""

from services.tail.events import TailEvent, parse_event
from services.tail.filters import TailFilter
from services.tail.hub import Subscription, TailHub, TooManySubscribers

__all__ = ["Subscription", "TailEvent", "TailFilter", "TailHub", "TooManySubscribers",
           "parse_event"]

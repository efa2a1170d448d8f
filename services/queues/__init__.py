"""Queues: the message log (services/queues/store.py), the producer endpoint the gateway's
WdlQueue calls and the consumer that runs tenants' queue() handlers (docs/queues.md)."""

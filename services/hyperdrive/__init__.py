"""Hyperdrive: tenants' PostgreSQL origins behind the platform's PgBouncer
(docs/hyperdrive.md). origin.py parses connection strings; pgbouncer.py renders the
pooler's files; service.py supervises PgBouncer from the projected configs."""

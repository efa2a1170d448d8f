# One image for every platform process (api, projector, state, scheduler, workerd).
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm curl pgbouncer \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY eventlog eventlog
COPY projections projections
COPY services services
COPY cli cli
COPY bench bench
COPY harness harness
COPY migrations migrations
COPY workerd workerd
RUN pip install --no-cache-dir . && npm ci --prefix workerd --no-audit --no-fund
ENV WORKERD_BIN=/app/workerd/node_modules/workerd/bin/workerd
# Debian's PgBouncer (the Hyperdrive component runs it as the package's `postgres` user).
ENV PGBOUNCER_BIN=/usr/sbin/pgbouncer

# Everything a fresh machine needs goes through these targets.
#   make run    install and run the platform on embedded defaults (no external services)
#   make test   install, provision the real servers and run the whole suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements-lock.txt
NODE_STAMP := workerd/node_modules/.package-lock.json
PYTEST_ARGS ?=
LOCK_ARGS ?=

.PHONY: install lock run test test-unit test-integration test-security lint services services-down services-status bench clean

install: $(STAMP) $(NODE_STAMP)

# Every Python package comes from the hashed lock; the project itself is added on top
# without resolving again, so a fresh clone gets exactly the versions CI tested.
$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' 
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	$(PY) -m pip install -q -e . --no-deps
	touch $(STAMP)

# Re-resolve pyproject.toml (runtime + dev extra) for every platform; commit the result.
# Pins already in the lock are kept unless needed; `make lock LOCK_ARGS=--upgrade` moves all.
lock: install
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --generate-hashes --universal \
		--python-version 3.11 -o $(LOCK) -q $(LOCK_ARGS)

$(NODE_STAMP): workerd/package.json workerd/package-lock.json
	npm ci --prefix workerd --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

run: install
	PGBOUNCER_BIN=$$($(PY) -m harness pgbouncer | tail -1) $(VENV)/bin/wdl dev

services: install
	$(PY) -m harness up

services-down:
	$(PY) -m harness down

services-status:
	$(PY) -m harness status

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

test-unit: install
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

test-integration: services
	set -a && . .wdl/services.env && set +a && $(PY) -m pytest -m integration $(PYTEST_ARGS)

test-security: services
	set -a && . .wdl/services.env && set +a && $(PY) -m pytest -m security $(PYTEST_ARGS)

test: lint services
	set -a && . .wdl/services.env && set +a && $(PY) -m pytest $(PYTEST_ARGS)

bench: services
	set -a && . .wdl/services.env && set +a && $(PY) -m bench $(or $(BENCH),all)

clean: services-down
	rm -rf .wdl

# Elysium: `make up` runs the stack with a demo tunnel, `make test` runs every test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: deps lock services test lint bench up down clean compose-up compose-down

OIDC_PROVIDER := tests/oidc/provider

deps: services $(VENV)/.installed $(OIDC_PROVIDER)/node_modules/.installed

services:
	@deploy/dev/ensure-services.sh

# Every dependency comes pinned, with hashes, from requirements.lock (`make lock` refreshes it);
# the project itself goes in editable and without dependencies, so nothing unpinned slips in.
$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "deps: installing requirements.lock and the elysium package into $(VENV)"
	@$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r requirements.lock
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps -e . \
		--config-settings editable_mode=compat
	@touch $@

# The single sign-on tests' OpenID provider (oidc-provider on Node), exactly as locked.
$(OIDC_PROVIDER)/node_modules/.installed: $(OIDC_PROVIDER)/package-lock.json $(OIDC_PROVIDER)/package.json
	@echo "deps: npm ci in $(OIDC_PROVIDER)"
	@cd $(OIDC_PROVIDER) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# pip-compile keeps the versions already in requirements.lock unless pyproject.toml rules them
# out; LOCK_ARGS=--upgrade (or --upgrade-package NAME) moves them to the newest allowed.
LOCK_TOOLS := .lock-tools
LOCK_ARGS ?=
lock:
	@test -x $(LOCK_TOOLS)/bin/pip-compile || { python3 -m venv $(LOCK_TOOLS) && \
		$(LOCK_TOOLS)/bin/pip install -q --disable-pip-version-check 'pip-tools>=7.4,<8'; }
	$(LOCK_TOOLS)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links --extra test --extra lint --extra containers \
		-o requirements.lock $(LOCK_ARGS) pyproject.toml

test: deps
	$(PY) -m pytest $(PYTEST_ARGS)

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: deps
	$(PY) -m bench.alloc
	$(PY) -m bench.jobs
	$(PY) -m bench.dataplane
	$(PY) -m bench.liveness
	$(PY) -m bench.api
	$(PY) -m bench.policy
	$(PY) -m bench.follow
	$(PY) -m bench.client
	$(PY) -m bench.direct
	$(PY) -m bench.hubs
	$(PY) -m bench.ui
	$(PY) -m bench.compose
	$(PY) -m bench.ha
	$(PY) -m bench.summary

up: deps
	@$(PY) deploy/dev/demo.py up

down:
	@if [ -x $(PY) ]; then $(PY) deploy/dev/demo.py down; else echo "down: nothing runs (no $(VENV))"; fi

clean: deps
	@$(PY) deploy/dev/demo.py clean

# compose.yaml for real: podman (in a namespace of its own), images from Debian's packages.
compose-up: deps
	@$(PY) deploy/containers/stack.py up

compose-down:
	@if [ -x $(PY) ]; then $(PY) deploy/containers/stack.py down; else echo "compose-down: nothing runs (no $(VENV))"; fi

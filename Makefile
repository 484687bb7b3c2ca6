# Elysium: `make up` runs the stack with a demo tunnel, `make test` runs every test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: deps services test lint bench up down clean

deps: services $(VENV)/.installed

services:
	@deploy/dev/ensure-services.sh

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "deps: installing the elysium package into $(VENV)"
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[test,lint]' \
		--config-settings editable_mode=compat
	@touch $@

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
	$(PY) -m bench.hubs
	$(PY) -m bench.ui
	$(PY) -m bench.summary

up: deps
	@$(PY) deploy/dev/demo.py up

down:
	@if [ -x $(PY) ]; then $(PY) deploy/dev/demo.py down; else echo "down: nothing runs (no $(VENV))"; fi

clean: deps
	@$(PY) deploy/dev/demo.py clean

# mailsec: `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell scripts/find-python)
DEV_ENV := MAILSEC_DEBUG=1

.DEFAULT_GOAL := help
.PHONY: help install run migrate admin test test-fast lint format bench system-deps clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $@

install: $(VENV)/.installed ## create .venv and install mailsec with its dev tools

migrate: install ## apply database migrations (SQLite under var/ unless DATABASE_URL is set)
	$(DEV_ENV) $(PY) manage.py migrate --noinput

admin: migrate ## create the admin account on first run (prints its password once)
	$(DEV_ENV) $(PY) manage.py ensure_admin

run: admin ## run web (127.0.0.1:8000), Celery worker, beat and the SMTP report listener (127.0.0.1:2525); Ctrl-C stops all
	$(DEV_ENV) $(PY) scripts/run-dev

test: install ## run the whole test suite (real PostgreSQL, Redis, Knot, Celery, Chromium)
	$(PY) -m pytest

test-fast: install ## run only the tests that need no external server
	$(PY) -m pytest -m "not browser and not worker and not knot"

lint: install ## ruff, formatting, mypy, the import contracts and the migrations check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy .
	$(VENV)/bin/lint-imports
	$(DEV_ENV) $(PY) manage.py makemigrations --check --dry-run

format: install ## apply ruff's fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: install ## run the benchmarks in bench/
	@if ls bench/*.py >/dev/null 2>&1; then for b in bench/*.py; do $(PY) $$b || exit 1; done; else echo "no benchmarks yet"; fi

system-deps: ## install the Debian packages the tests start (needs root or sudo)
	scripts/install-system-deps

clean: ## remove the virtualenv and local state under var/
	rm -rf $(VENV) var staticfiles

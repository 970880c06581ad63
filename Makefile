# Two commands matter: `make run` (the whole product, locally) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
PYTEST_ARGS ?=

.PHONY: run test test-faults guarantees test-unit lint format docs docs-serve bench bench-quick node schema checksums config-docs clean

$(RUNTIME): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(DEV): $(RUNTIME) requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

run: $(RUNTIME)  ## start PostgreSQL/Redis if needed, migrate, run web + worker + dev mailbox
	$(PY) -m scripts.run

test: $(DEV)  ## the whole suite, against real PostgreSQL, Redis and SMTP
	$(PY) -m scripts.services -- $(PY) -m pytest $(PYTEST_ARGS)

test-faults: $(DEV)  ## kill and restart workers, PostgreSQL, Redis, SMTP; writes .data/faults/results.json
	$(PY) -m scripts.services -- $(PY) -m pytest tests/faults $(PYTEST_ARGS)
	$(PY) -m scripts.guarantees_table

guarantees:  ## print the Guarantees table (docs/guarantees.md) from the last `make test-faults`
	$(PY) -m scripts.guarantees_table

test-unit: $(DEV)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

bench: $(DEV) node  ## every scenario 3x, interleaved, medians vs raw Procrastinate and BullMQ; writes bench/RESULTS.md (~25 min)
	$(PY) -m scripts.services -- $(PY) -m bench $(BENCH_ARGS)

# Node and npm for the BullMQ baseline (bench/bullmq/, bench/bullmq_stack.py), from apt when
# missing; the bench itself installs the pinned npm packages. Only `make bench` needs them.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
node:
	@command -v node >/dev/null && command -v npm >/dev/null || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q nodejs npm; }

bench-quick: $(DEV)  ## one short run of each scenario (`make test` runs a smaller one: python -m bench --smoke)
	$(PY) -m scripts.services -- $(PY) -m bench --quick $(BENCH_ARGS)

schema: $(RUNTIME)  ## regenerate sql/schema.sql: the schema after every migration (pg_dump of a throwaway database)
	$(PY) -m scripts.services -- $(PY) -m scripts.migrations schema

checksums: $(RUNTIME)  ## append each new migration's sha256 to sql/migrations/CHECKSUMS (never rewrites a line)
	$(PY) -m scripts.migrations checksums

config-docs: $(RUNTIME)  ## regenerate docs/configuration.md and .env.example from tasks/core/config.py
	$(PY) -m tasks.core.config --docs > docs/configuration.md
	$(PY) -m tasks.core.config --env-example > .env.example

lint: $(DEV)  ## ruff (lint and format) and mypy (strict on tasks/ and webapp/; see pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check tasks webapp scripts tests bench
	$(VENV)/bin/mypy

format: $(DEV)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format tasks webapp scripts tests bench

# NO_MKDOCS_2_WARNING: Material prints a banner about its successor on every build; it says nothing about ours.
docs: $(DEV)  ## the documentation site (mkdocs.yml, docs/) into site/; strict: a broken link or anchor fails
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: $(DEV)  ## the same site on http://127.0.0.1:8001, rebuilt on every change
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --strict --dev-addr 127.0.0.1:8001

clean:
	rm -rf .data .pytest_cache site

# Two commands matter: `make run` (the whole product, locally) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
PYTEST_ARGS ?=

.PHONY: run test test-unit lint format bench clean

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

test-unit: $(DEV)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: $(DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check tasks webapp scripts

format: $(DEV)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format tasks webapp scripts

clean:
	rm -rf .data .pytest_cache

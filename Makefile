# Two commands on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export FLASK_APP := service

.PHONY: run test bench lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.run-deps: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.test-deps: requirements.txt requirements-test.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-test.txt
	touch $@ $(VENV)/.run-deps

# The addresses printed, served and written in the access letters follow HOST and PORT.
run: export PUBLIC_URL ?= http://$(HOST):$(PORT)
run: export HOST := $(HOST)
run: export PORT := $(PORT)
# The project's modules compiled ahead (incremental), so that no process (the web server, a
# worker, a command) compiles them at its start, even where PYTHONDONTWRITEBYTECODE is set.
COMPILE := $(BIN)/python -m compileall -q service signing storage bench

run: $(VENV)/.run-deps
	@scripts/system-deps.sh run
	@$(COMPILE)
	$(BIN)/flask db upgrade
	$(BIN)/flask demo load --if-empty --quiet
	@$(BIN)/flask demo credentials
	@echo "Service sur http://$(HOST):$(PORT), avec un worker et beat (Ctrl+C pour arrêter)"
	VENV_BIN=$(BIN) scripts/serve.sh

test: $(VENV)/.test-deps
	@scripts/system-deps.sh test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n 3 --dist worksteal

bench: $(VENV)/.test-deps
	@scripts/system-deps.sh test
	@$(COMPILE)
	$(BIN)/python -m bench

lint: $(VENV)/.test-deps
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache tests/artifacts

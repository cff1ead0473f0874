# The README's two commands: `make run` serves, `make test` runs the suite.
# Both create .venv with Python 3.11 and install from pyproject.toml when it changed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
URL ?= http://$(HOST):$(PORT)

.PHONY: install run test lint bench demo demo-fleet clean models

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	touch $@

$(VENV)/.installed-demo: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[demo]'
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/alembic upgrade head
	exec $(BIN)/uvicorn --factory app.main:create_app --host $(HOST) --port $(PORT) \
		--loop uvloop --http httptools --timeout-graceful-shutdown 60

test: lint
	$(BIN)/python -m pytest

# ruff (style and bugs), mypy (types), lint-imports (the layers of pyproject's contracts).
lint: $(VENV)/.installed-test
	$(BIN)/ruff check app models migrations tests bench
	$(BIN)/mypy app
	$(BIN)/lint-imports --no-logo

models: $(VENV)/.installed
	$(BIN)/python -m models build mlp var/models/mlp.tflite
	$(BIN)/python -m models build head var/models/head.tflite

# Against the server `make run` started: PORT=9000 make demo follows PORT=9000 make run.
demo: $(VENV)/.installed-demo
	$(BIN)/python -m app.demo --url $(URL)

# FedAvg, local only and FedPer on one label-skewed population, as one comparison table.
demo-fleet: $(VENV)/.installed-demo
	$(BIN)/python -m app.demo_fleet --url $(URL)

bench: $(VENV)/.installed-test
	$(BIN)/python -m bench

clean:
	rm -rf var .cache .pytest_cache

# The README's two commands: `make run` serves, `make test` runs the suite.
# Both create .venv with Python 3.11 and install from pyproject.toml when it changed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
URL ?= http://$(HOST):$(PORT)

.PHONY: install run test lint bench demo demo-fleet demo-privacy clean models bench-peers

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

# DP-FedAvg at noise multipliers 0, 0.5 and 1.0 on one population: accuracy beside epsilon.
demo-privacy: $(VENV)/.installed-demo
	$(BIN)/python -m app.demo_privacy --url $(URL)

bench: $(VENV)/.installed-test
	$(BIN)/python -m bench

# fleetlite beside Flower 1.42 on one workload (README, "Speed beside Flower"). Flower, its Ray
# and TensorFlow go into a virtualenv of their own, never into the project's dependencies.
PEERS_VENV ?= .cache/peers-venv
$(PEERS_VENV)/.installed:
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q "flwr[simulation]==1.42.0" "tensorflow==2.19.1" \
		"keras==3.15.1" "psutil==7.2.2"
	touch $@

bench-peers: $(VENV)/.installed-test $(PEERS_VENV)/.installed
	$(BIN)/python -m bench.peers --peers-python $(PEERS_VENV)/bin/python

clean:
	rm -rf var .cache .pytest_cache

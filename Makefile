# Disruption Feed: two commands on a fresh machine with Python 3.11+, Java 17+ and Maven.
#   make demo   installs, starts the embedded broker, publishes the sample data, shows it arriving
#   make test   installs, lints, type-checks and runs every test against a real broker

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help install demo test lint typecheck unit integration broker-start broker-stop clean

help:
	@echo "make demo   - run the whole product locally (broker, topics, sample data)"
	@echo "make test   - lint, type-check and run all tests against a real Kafka broker"
	@echo "make lint | typecheck | unit | integration | broker-start | broker-stop | clean"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/disruptfeed demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -m unit

# The test session starts its own broker (or uses DISRUPTFEED_BOOTSTRAP_SERVERS) and stops it.
integration: $(STAMP)
	$(BIN)/pytest -m 'not unit'

test: lint typecheck $(STAMP)
	$(BIN)/pytest

broker-start: $(STAMP)
	$(BIN)/disruptfeed broker start

broker-stop: $(STAMP)
	$(BIN)/disruptfeed broker stop

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info

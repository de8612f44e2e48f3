# Disruption Feed: two commands on a fresh machine with Python 3.11+, Java 17+ and Maven.
#   make demo   installs, starts the embedded broker, publishes the sample data, shows it arriving
#   make test   installs, lints, type-checks and runs every test against a real broker
# Both install exactly the versions in requirements.lock, each checked against its hash.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := requirements.lock
# The lock is for CPython 3.11 on Linux x86_64 (glibc 2.28+), whatever machine runs `make lock`.
LOCK_FLAGS := --extra dev --extra bench --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command 'make lock'
PIP_AUDIT := pip-audit==2.10.1

.PHONY: help install lock audit demo test lint typecheck unit integration browser broker-start broker-stop clean

help:
	@echo "make demo   - run the whole product locally (broker, topics, sample data)"
	@echo "make test   - lint, type-check and run all tests against a real Kafka broker"
	@echo "make lock   - re-resolve requirements.lock after editing pyproject.toml (UPGRADE=1: newest)"
	@echo "make audit  - check the locked versions against a vulnerability database (network)"
	@echo "make lint | typecheck | unit | integration | broker-start | broker-stop | clean"

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	@# Every package, pip and setuptools included, at its locked version and checked against its
	@# hashes; a package missing from the lock stops the install instead of being fetched unpinned.
	@# (Playwright among them, for the dashboard's browser test: it drives Debian's chromium,
	@# which .ci/run installs with apt-get; never `playwright install`.)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	@# The project itself, built by the locked setuptools rather than one fetched for the build.
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)

# Keeps every pin that still fits pyproject.toml; UPGRADE=1 moves each to its newest allowed.
lock: $(STAMP)
	$(BIN)/uv pip compile --quiet pyproject.toml requirements-tools.in $(LOCK_FLAGS) \
		$(if $(UPGRADE),--upgrade) -o $(LOCK)

# Needs a network that reaches PyPI's vulnerability data; not part of `make test` or CI.
# pip-audit runs in a throwaway environment of uv's, so the venv keeps exactly the lock.
audit: $(STAMP)
	$(BIN)/uv tool run --python $(BIN)/python --from '$(PIP_AUDIT)' \
		pip-audit --strict --disable-pip --require-hashes -r $(LOCK)

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

# The dashboard's browser test drives Debian's chromium (never a browser download of its own):
# installed here when it is missing and we may (root with apt-get); otherwise one line says how.
browser:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || { \
		echo "installing Debian's chromium for the dashboard's browser test ..."; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@command -v chromium >/dev/null || echo "no chromium: the dashboard test will fail; run 'sudo apt-get install chromium'"

test: lint typecheck browser $(STAMP)
	$(BIN)/pytest

broker-start: $(STAMP)
	$(BIN)/disruptfeed broker start

broker-stop: $(STAMP)
	$(BIN)/disruptfeed broker stop

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info

# ARForge developer commands. Python 3.11; everything installs into .venv (scripts/install.sh).
#   make demo    install, start the embedded stack, reconstruct the bundled sample, stop
#   make test    install, make sure PostgreSQL & system packages are there, run the suite
#   make up      install and run the embedded stack in the foreground (Ctrl-C stops)
# Variables: PY (python3.11), GPU=1 (also install the torch-based splatting / ai workers),
# PYTEST_ARGS (-q).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?= -q
DISTS := shared services/api services/webhooks services/photogrammetry services/mesh \
	services/splatting services/ai cli
# Reinstall when any distribution's metadata (or the dev tool list) changes.
METADATA := pyproject.toml $(wildcard $(addsuffix /pyproject.toml,$(DISTS)))
STAMP := $(VENV)/.installed$(if $(filter 1,$(GPU)),-gpu)

.PHONY: install test lint format demo up down clean

$(STAMP): $(METADATA) scripts/install.sh
	PY=$(PY) VENV=$(VENV) GPU=$(GPU) bash scripts/install.sh
	touch $@

install: $(STAMP)

test: install
	bash scripts/test-services.sh $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared/arforge services/*/arforge cli/arforge

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: install
	bash scripts/system-deps.sh
	$(BIN)/arforge demo

up: install
	$(BIN)/arforge up

down:
	$(BIN)/arforge down

clean:
	$(BIN)/arforge down --purge 2>/dev/null || true
	rm -rf .arforge arforge-output

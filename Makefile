# ARForge developer commands. Python 3.11; everything installs into .venv.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := -e ./shared -e ./services/api -e ./services/webhooks -e ./services/photogrammetry -e ./cli

.PHONY: install test lint demo up clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q $(PACKAGES) -e '.[dev]'

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy shared/arforge services/*/arforge cli/arforge

test: install
	bash scripts/test-services.sh
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/arforge demo

up: install
	$(BIN)/arforge up

clean:
	rm -rf .arforge

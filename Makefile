# Two commands for a fresh machine with Python 3.11: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export SDL_VIDEODRIVER ?= offscreen
export PIP_DISABLE_PIP_VERSION_CHECK = 1

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e .

install-test: $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"

demo: install
	$(BIN)/drivelab demo

# Lint and the import layers first (seconds), then the test suite.
test: install-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2 -q

.PHONY: install install-test demo test

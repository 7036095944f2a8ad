# Two commands on a fresh machine: `make run` (the service) and `make test` (the suite).
# The service's targets install only the package; the test and bench targets add the test tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
TOOLS := $(VENV)/.installed-test

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install run once demo test test-ahead bench status clean

$(RUNTIME): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME)

$(TOOLS): $(RUNTIME)
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(TOOLS)

install: $(TOOLS)

run: $(RUNTIME)
	$(BIN)/monitor run

once: $(RUNTIME)
	$(BIN)/monitor run --once

demo: $(RUNTIME)
	$(BIN)/monitor demo

status: $(RUNTIME)
	$(BIN)/monitor status

test: $(TOOLS)
	$(BIN)/pytest -q

# The suite with the clock a year ahead for the whole process: no test may depend on the day it runs.
test-ahead: $(TOOLS)
	@command -v faketime >/dev/null || { echo "needs faketime (Debian: apt-get install faketime)"; exit 2; }
	faketime -f +365d $(BIN)/pytest -q

bench: $(TOOLS)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# Two commands on a fresh machine: `make run` (the service) and `make test` (the suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install run once demo test test-ahead bench status clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/monitor run

once: $(STAMP)
	$(BIN)/monitor run --once

demo: $(STAMP)
	$(BIN)/monitor demo

status: $(STAMP)
	$(BIN)/monitor status

test: $(STAMP)
	$(BIN)/pytest -q

# The suite with the clock a year ahead for the whole process: no test may depend on the day it runs.
test-ahead: $(STAMP)
	@command -v faketime >/dev/null || { echo "needs faketime (Debian: apt-get install faketime)"; exit 2; }
	faketime -f +365d $(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

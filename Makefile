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

# The suite with the calendar a year ahead in every process it starts: no test may depend on the day it
# runs. libfaketime moves the wall clock only; tests/ahead/realsleep.c keeps sleeps on the real
# monotonic clock (see its comment for why).
FAKETIME_LIB = $(firstword $(wildcard /usr/lib/*/faketime/libfaketimeMT.so.1))
REALSLEEP := $(VENV)/realsleep.so

$(REALSLEEP): tests/ahead/realsleep.c $(RUNTIME)
	$(CC) -shared -fPIC -O2 -o $@ $<

test-ahead: $(TOOLS) $(REALSLEEP)
	@test -n "$(FAKETIME_LIB)" || { echo "needs libfaketime (Debian: apt-get install faketime)"; exit 2; }
	LD_PRELOAD=$(CURDIR)/$(REALSLEEP):$(FAKETIME_LIB) FAKETIME=+365d FAKETIME_DONT_FAKE_MONOTONIC=1 \
		$(BIN)/pytest -q

bench: $(TOOLS)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

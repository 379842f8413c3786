# partrig: every target installs what it needs by itself (see README.md, Quick start).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,litert,train
# Debian packages: the AVR toolchain and simavr for firmware-in-the-loop tests, chromium for
# the browser tests, nginx and curl for the pull benchmark.
APT_PACKAGES := gcc-avr avr-libc binutils-avr simavr libsimavr-dev libsimavrparts1 libelf-dev \
	pkg-config avrdude chromium nginx curl systemd
DATA ?= $(CURDIR)/demo-data

.PHONY: demo test test-firmware test-long bench lint format firmware sysdeps venv clean

# NOTE: one install stamp per extras set: `make demo` installs `.[litert]` only (no TensorFlow),
# and a later `make test` still sees its own stamp missing and installs everything.
FULL_STAMP := $(VENV)/.installed-full
DEMO_STAMP := $(VENV)/.installed-demo

$(FULL_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[$(EXTRAS)]'
	@touch $@ $(DEMO_STAMP)

# NOTE: --no-compile: byte-compiling every installed module took a third of a fresh demo
# install (18.7 s -> 12.4 s measured); the server compiles the few it imports on first start.
$(DEMO_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --no-compile -e '.[litert]'
	@touch $@

venv: $(FULL_STAMP)

sysdeps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = "0" ]; then \
			echo "installing Debian packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "partrig needs these Debian packages:$$missing"; \
			echo "run: sudo apt-get install$$missing   (or run make as root)"; exit 1; \
		fi; \
	fi

firmware: sysdeps
	$(MAKE) -C firmware all harness

# DEMO_ARGS: more options for `partrig serve`, e.g. make demo DEMO_ARGS="--port 8080".
DEMO_ARGS ?=
demo: $(DEMO_STAMP)
	$(BIN)/partrig serve --demo $(DATA) $(DEMO_ARGS)

# Types (mypy) and the import contracts (lint-imports: layers, no circles) are checked before
# the tests and fail the build; configuration in pyproject.toml, docs/architecture.md.
test: sysdeps venv firmware
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -m "not long" -p no:cacheprovider

# Firmware-in-the-loop tests and the link benchmark against another firmware ELF, e.g. stock
# Marlin built with firmware/marlin/config.ini: make test-firmware FIRMWARE_ELF=.../Marlin.elf
# (empty: partrig's own firmware).  docs/firmware.md records what passes on Marlin.
FIRMWARE_ELF ?=
test-firmware: sysdeps venv firmware
	PARTRIG_FIRMWARE_ELF="$(FIRMWARE_ELF)" $(BIN)/python -m pytest -q -p no:cacheprovider tests/firmware
	PARTRIG_FIRMWARE_ELF="$(FIRMWARE_ELF)" $(BIN)/python bench/link.py

test-long: sysdeps venv firmware
	$(BIN)/python -m pytest -q -m long -p no:cacheprovider

bench: sysdeps venv firmware
	@set -e; for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b; done

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) demo-data
	$(MAKE) -C firmware clean

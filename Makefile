# ehc-edge developer entry points. Everything runs from the virtualenv that
# scripts/install.sh creates (re-running it is cheap when nothing changed).

VENV ?= .venv
PYTHON := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install install-test demo test bench lint clean arm64-check

install:
	bash scripts/install.sh --venv $(VENV)

install-test:
	bash scripts/install.sh --test --venv $(VENV)

demo: install
	$(VENV)/bin/ehc-edge demo

test:
	bash scripts/test.sh $(PYTEST_ARGS)

# The box on arm64 Debian 12 and 13 under qemu-user (as root; trees cached in /var/cache/ehc-arm64).
arm64-check:
	bash scripts/arm64-check.sh

bench: install-test
	$(PYTHON) bench/uplink.py
	$(PYTHON) bench/chaos.py
	$(PYTHON) bench/central.py
	$(PYTHON) bench/decode.py
	$(PYTHON) bench/station.py
	$(PYTHON) bench/idcard.py
	$(PYTHON) bench/verify.py
	$(PYTHON) bench/face.py
	$(PYTHON) bench/mrz.py
	$(PYTHON) bench/ocr.py
	$(PYTHON) bench/privacy.py

lint: install-test
	bash scripts/lint.sh

clean:
	rm -rf $(VENV) build dist .pytest_cache .hypothesis
	find . -path ./.git -prune -o \( -name '*.egg-info' -o -name __pycache__ \) -prune -exec rm -rf {} +

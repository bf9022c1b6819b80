# acmems: `make test` and `make demo` set up everything they need (idempotently) on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup system venv lint test demo bench reliability clean

setup: system venv

# Debian packages (BIND 9, nginx, curl, wget, openssl) and Pebble 2.10 in .cache/bin.
system:
	@bash scripts/setup-system.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@set -o pipefail; $(PY) -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 \
		| { grep -v '^WARNING: Location' || true; }
	@$(PY) -c 'import acmems, acme, aiohttp, dns, jinja2, psycopg, psycopg_pool, publicsuffixlist, pytest, hypothesis, aiosmtpd, importlinter'
	@touch $@

lint: venv
	$(VENV)/bin/ruff check src tests scripts bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo

test: setup lint
	$(PY) -m pytest -q

demo: setup
	$(PY) scripts/demo.py

# The reliability tests at full length (30 s load, 3 SIGKILL rounds, a longer fuzz pass); `make test`
# runs the same tests shorter. Figures: .cache/reliability-figures.json (docs/reliability.md).
reliability: setup
	ACMEMS_RELIABILITY=full $(PY) -m pytest -q tests/integration/test_faults.py tests/integration/test_bad_input.py
	@cat .cache/reliability-figures.json

# Not part of `make test`: takes about 6 minutes; writes bench/results/<date>.json.
bench: venv
	@bash scripts/setup-system.sh --bench
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache .import_linter_cache .grimp_cache demo-run

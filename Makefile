# ModelWarden: `make demo` runs the main job, `make test` runs the checks and every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install -q -c constraints.txt
# Debian packages the tests need; scripts/system-deps.sh installs the missing ones (as root).
# postgresql: initdb/pg_ctl in /usr/lib/postgresql/15/bin (not on PATH); openjdk-17-jre-headless: PySpark;
# chromium: /usr/bin/chromium for Playwright; prometheus: promtool; openssl: the mail tests'
# self-signed certificates; the rest: WeasyPrint (Pango, HarfBuzz subsetting, a font).
SYSTEM_DEPS := postgresql openjdk-17-jre-headless chromium prometheus openssl \
	libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core

.PHONY: install install-test demo test lint imports typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The stamp files make a second `make` a no-op until pyproject.toml or constraints.txt change.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e '.[test,dev]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test
	./scripts/system-deps.sh $(SYSTEM_DEPS)

demo: install
	$(BIN)/modelwarden demo

# In order: lint, formatting, the layer contracts (pyproject's [tool.importlinter]), types, tests.
test: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy src
	$(BIN)/pytest -q

lint: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

imports: install-test
	$(BIN)/lint-imports

typecheck: install-test
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) warden-data .pytest_cache .ruff_cache .mypy_cache

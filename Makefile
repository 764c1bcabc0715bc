# ferryman: two commands on a fresh machine, `make serve` and `make test`.
# Every target sets up what it needs, idempotently: a stamp file records that
# .venv matches pyproject.toml, and Debian packages are installed only if missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# .venv matches pyproject.toml: with the runtime and build dependencies (serve),
# and with the development tools too (test).
SUM    := $(shell cksum pyproject.toml | cut -d' ' -f1)
RUNTIME_STAMP := $(VENV)/.stamp-runtime-$(SUM)
STAMP  := $(VENV)/.stamp-dev-$(SUM)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Real clients (and nginx, a server ferryman get is tested against) the integration tests
# drive (Debian package: command it provides);
# chromium opens the HTML audit report (playwright drives it, never downloading a browser);
# ab drives the benchmark's HEAD workload in its smoke test;
# postgresql: the catalog's tests run against a real server (tests/postgres.py starts one).
TEST_TOOLS := curl:curl wget:wget aria2:aria2c wrk:wrk chromium:chromium nginx:nginx \
	apache2-utils:ab postgresql:pg_ctlcluster
# Peers of the audit benchmark (bench/audit_bench.py), installed only for it.
BENCH_TOOLS := rclone:rclone
# $(call apt_install,PKG:CMD ...): apt-get install each package whose command is missing.
apt_install = missing=""; for pair in $(1); do \
	  pkg=$${pair%%:*}; cmd=$${pair\#\#*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

.PHONY: serve test setup native native-tools test-tools bench-tools libpq lint typecheck unit fuzz bench bench-tls bench-cache bench-soak bench-audit bench-catalog bench-fleet bench-put clean

setup: $(STAMP)

$(VENV)/bin/python:
	@# Debian's own python3 ships venv without ensurepip: add python3-venv once.
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv >/dev/null && \
	  $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip

$(RUNTIME_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[build]'
	rm -f $(VENV)/.stamp-runtime-*
	touch $@

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[dev,build]'
	rm -f $(VENV)/.stamp-dev-* $(VENV)/.stamp-runtime-*
	touch $@ $(RUNTIME_STAMP)

# The request path compiled with mypyc (src/ferryman/native.py says which modules
# and checks the build against its sources at every start). Rebuilt only when a
# source changed; without a compiler ferryman runs the same code as pure Python.
native: $(RUNTIME_STAMP) native-tools
	$(BIN)/python tools/build_native.py

native-tools:
	@command -v cc >/dev/null 2>&1 || { echo "installing: gcc"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq gcc >/dev/null || true; }
	@$(BIN)/python -c 'import os, sys, sysconfig; \
	  sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' || \
	  { echo "installing: python3-dev"; \
	    $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-dev >/dev/null || true; }

serve: native
	$(BIN)/ferryman serve $(or $(SOURCE),.) $(ARGS)

test-tools: libpq
	@$(call apt_install,$(TEST_TOOLS))

# libpq, which psycopg (a PostgreSQL catalog, the postgresql extra) loads.
libpq:
	@ldconfig -p 2>/dev/null | grep -q 'libpq\.so\.5 ' || { echo "installing: libpq5"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libpq5 >/dev/null; }

bench-tools:
	@$(call apt_install,$(BENCH_TOOLS))

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) native test-tools lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

fuzz: $(STAMP)
	$(BIN)/pip install --quiet atheris
	PYTHONPATH=. $(BIN)/python tests/fuzz/fuzz_parser.py -max_total_time=$(or $(SECONDS),60)

bench: native
	bash bench/run.sh $(if $(QUICK),--quick)

# What HTTPS costs: ferryman and nginx, each over HTTP and HTTPS, 1 KiB and 100 MiB
# (bench.py --tls): a table, and bench/results/tls-latest.json.
bench-tls: native
	bash bench/run.sh --tls $(if $(QUICK),--quick)

# The cache against local files, and cold time to first byte against nginx's proxy_cache.
bench-cache: native
	bash bench/run.sh --cache $(if $(QUICK),--quick)

# The worker's RSS over 100,000 answers of every kind (bench/soak.py; ~6.5 min):
# a table, and bench/results/soak-latest.json. SHORT=1 runs the CI counts.
bench-soak: native test-tools
	$(BIN)/python -m bench.soak $(if $(SHORT),--short)

# ferryman audit beside rclone check and sha256sum -c on the same trees (bench/audit_bench.py;
# ~4 min with QUICK=1): a table, and bench/results/audit-latest.json.
bench-audit: native bench-tools
	$(BIN)/python bench/audit_bench.py $(if $(QUICK),--quick)

# record, lookup and history per second on SQLite and on a throwaway PostgreSQL
# (bench/catalog_bench.py): a table, and bench/results/catalog-latest.json.
bench-catalog: $(STAMP) test-tools
	$(BIN)/python bench/catalog_bench.py $(if $(QUICK),--quick)

# One node against two behind nginx, on one bucket (moto) and one PostgreSQL catalog.
bench-put: native test-tools
	cd bench && ../$(BIN)/python put_bench.py $(if $(QUICK),--quick)

bench-fleet: native test-tools
	cd bench && ../$(BIN)/python fleet_bench.py $(if $(QUICK),--quick)

clean:
	$(PYTHON) tools/build_native.py --clean
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis

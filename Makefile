# hanet: every target installs what it needs, and each can be run again safely.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := iproute2 nftables keepalived haproxy tcpdump iputils-ping curl procps psmisc util-linux python3 python3-venv python3-pip postgresql
STAMP := $(VENV)/.installed-stamp

.PHONY: deps apt venv test test-unit test-root demo lint bench clean

deps: apt venv

# Only calls apt-get when a package is missing, so a second run is quick and offline.
apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

test: deps
	$(BIN)/python -m pytest -p no:cacheprovider tests

test-unit: venv
	$(BIN)/python -m pytest -p no:cacheprovider -m unit tests

demo: deps
	$(BIN)/hanet demo

lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

bench: deps
	$(BIN)/python -m bench.failover --out docs/BENCHMARKS.md
	$(BIN)/python -m bench.scale --out docs/BENCHMARKS.md
	$(BIN)/python -m bench.namespaces --out docs/BENCHMARKS.md
	$(BIN)/python -m bench.node_routers --out docs/BENCHMARKS.md
	$(BIN)/python -m bench.vrrpd_memory --out docs/BENCHMARKS.md
	$(BIN)/python -m bench.wakeup --out docs/BENCHMARKS.md
	$(BIN)/python -m bench.server --out docs/BENCHMARKS.md
	$(BIN)/python -m bench.cloud --out docs/BENCHMARKS.md

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis

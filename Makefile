# Two commands on a fresh machine: `make demo` and `make test`. Both do their own setup.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
# The venv holds exactly requirements/dev.txt (the lock, made by `make lock`); the stamp moves with it.
LOCK := requirements/dev.txt
STAMP := $(VENV)/.installed-$(shell cksum $(LOCK) | cut -d' ' -f1)
# uv, pinned in the lock itself, from the registry by name: it installs the rest of the lock.
UV_VERSION := $(shell sed -n 's/^uv==\([0-9.]*\).*/\1/p' $(LOCK))
# Tests run in random order (pytest-randomly; the seed is printed at the end). Replay an order with
# `make test PYTEST_ARGS=--randomly-seed=N`, or run in file order with `PYTEST_ARGS='-p no:randomly'`.
PYTEST_ARGS ?=

.PHONY: demo test lint unit integration bench setup system clean docs docs-gen dist k8s-config-hash screenshots \
	lock upgrade lock-check

$(PY):
	$(PYTHON) -m venv $(VENV)

# Exactly the lock, never a fresh resolution: `uv pip sync` installs the pinned versions with their
# hashes and removes anything else; the project itself goes in editable, with the locked hatchling.
$(STAMP): $(LOCK) requirements/build.txt pyproject.toml | $(PY)
	@$(PYTHON) scripts/lock.py check
	$(PY) -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	$(UV) pip sync -q --python $(PY) --require-hashes $(LOCK)
	$(UV) pip install -q --python $(PY) --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	scripts/setup-system.sh demo
	$(VENV)/bin/bridge demo

test: lock-check $(STAMP)
	scripts/setup-system.sh test
	mkdir -p .demo  # the demo's folder, named by config/demo.yaml (the docs build runs its rules cases)
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -q -p randomly $(PYTEST_ARGS)

lint: $(STAMP)
	mkdir -p .demo
	$(VENV)/bin/ruff check bridge tests bench scripts docs/hooks.py
	$(VENV)/bin/mypy
	$(VENV)/bin/yamllint -s deploy .yamllint.yaml
	$(VENV)/bin/hadolint deploy/Dockerfile
	$(VENV)/bin/kubernetes-validate --strict --quiet $(filter-out deploy/k8s/kustomization.yaml,$(wildcard deploy/k8s/*.yaml))
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# The documentation site (mkdocs.yml, docs/): served with live reload on http://127.0.0.1:8001/.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve -a 127.0.0.1:8001

# Rewrite the generated pages (configuration reference, troubleshooting, the demo's rules) from the code.
docs-gen: $(STAMP)
	$(PY) scripts/gen_docs.py

# The lock and pyproject.toml agree (offline; a clear message and exit 1 when they don't).
lock-check:
	@$(PYTHON) scripts/lock.py check

# Re-resolve the lock after editing dependencies in pyproject.toml (keeps every version it can).
lock: | $(PY)
	$(PY) -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	$(PYTHON) scripts/lock.py lock $(UV)

# The newest releases pyproject.toml allows, installed, then the whole suite on them.
upgrade: | $(PY)
	$(PY) -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	$(PYTHON) scripts/lock.py lock $(UV) --upgrade
	$(MAKE) --no-print-directory test

unit: $(STAMP)
	$(PY) -m pytest -q -p randomly $(PYTEST_ARGS) tests/unit

bench: $(STAMP)
	scripts/setup-system.sh bench
	$(PY) bench/bench_credentials.py
	$(PY) bench/bench_saml.py
	$(PY) bench/bench_load.py --seconds 10 --users 1000
	$(PY) bench/bench_rules.py
	$(PY) bench/bench_portal.py
	$(PY) bench/bench_cli_startup.py
	$(PY) bench/bench_bulkhead.py
	$(PY) bench/bench_redis_failover.py
	$(PY) bench/bench_sso.py
	$(PY) bench/bench_scaleout.py --seconds 8 --soak-minutes 2 --warmup 15 --sample 30
	$(PY) bench/bench_chains.py
	$(PY) bench/bench_chains_served.py
	$(PY) bench/bench_exchange_served.py

# The wheel and sdist in dist/ (templates, static and gunicorn.conf.py inside the wheel), checked
# with `twine check` (metadata and README render). uv, hatchling and twine are the lock's.
dist: $(STAMP)
	rm -rf dist
	$(UV) build -q --no-build-isolation --python $(PY) --out-dir dist .
	$(VENV)/bin/twine check --strict dist/*

# After editing bridge.yaml in deploy/k8s/configmap.yaml: the pod template's hash, so the pods roll.
k8s-config-hash: $(STAMP)
	$(PY) scripts/k8s_config_hash.py

# The screenshots in docs/images/ (README and docs pages): portal (desktop, phone, dark), credentials, device approval.
screenshots: $(STAMP)
	scripts/setup-system.sh test
	BRIDGE_SCREENSHOTS=1 $(PY) -m pytest -q tests/e2e/test_screenshots.py

clean:
	rm -rf $(VENV) .demo site tests/peers/node_modules .pytest_cache .mypy_cache .ruff_cache dist

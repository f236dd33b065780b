# Two commands on a fresh machine: `make demo` and `make test`. Both do their own setup.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
# Tests run in random order (pytest-randomly; the seed is printed at the end). Replay an order with
# `make test PYTEST_ARGS=--randomly-seed=N`, or run in file order with `PYTEST_ARGS='-p no:randomly'`.
PYTEST_ARGS ?=

.PHONY: demo test lint unit integration bench setup system clean docs docs-gen dist k8s-config-hash screenshots

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	scripts/setup-system.sh demo
	$(VENV)/bin/bridge demo

test: $(STAMP)
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

unit: $(STAMP)
	$(PY) -m pytest -q -p randomly $(PYTEST_ARGS) tests/unit

bench: $(STAMP)
	scripts/setup-system.sh bench
	$(PY) bench/bench_credentials.py
	$(PY) bench/bench_saml.py
	$(PY) bench/bench_load.py
	$(PY) bench/bench_rules.py
	$(PY) bench/bench_portal.py
	$(PY) bench/bench_cli_startup.py
	$(PY) bench/bench_bulkhead.py
	$(PY) bench/bench_redis_failover.py
	$(PY) bench/bench_sso.py
	$(PY) bench/bench_scaleout.py

# The wheel and sdist in dist/ (templates, static and gunicorn.conf.py inside the wheel), checked
# with `twine check` (metadata and README render). build and twine come into the venv on demand.
DIST_PY ?= $(PY)
dist: | $(PY)
	$(DIST_PY) -m pip install -q build twine
	rm -rf dist
	$(DIST_PY) -m build --outdir dist .
	$(DIST_PY) -m twine check --strict dist/*

# After editing bridge.yaml in deploy/k8s/configmap.yaml: the pod template's hash, so the pods roll.
k8s-config-hash: $(STAMP)
	$(PY) scripts/k8s_config_hash.py

# The screenshots in docs/images/ (README and docs pages): portal (desktop, phone, dark), credentials, device approval.
screenshots: $(STAMP)
	scripts/setup-system.sh test
	BRIDGE_SCREENSHOTS=1 $(PY) -m pytest -q tests/e2e/test_screenshots.py

clean:
	rm -rf $(VENV) .demo site tests/peers/node_modules .pytest_cache .mypy_cache .ruff_cache dist

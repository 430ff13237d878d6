#!/usr/bin/env bash
# Install (or upgrade) the platform userstream runs on, in order, each as its own Helm release:
#   cert-manager -> Strimzi -> spark-operator -> k8ssandra-operator -> CloudNativePG -> Airflow.
# Idempotent: `helm upgrade --install --wait` of each chart, versions from versions.env, values from
# k8s/platform/<name>.values.yaml. charts/userstream is installed after this (its custom resources
# need the operators' webhooks to be ready).
#
#   k8s/platform/install.sh            all of them
#   k8s/platform/install.sh strimzi    only the named releases
#
# Settings (environment):
#   HELM, KUBECTL          default .cache/bin/helm, .cache/bin/kubectl
#   KUBE_CONTEXT           kubeconfig context every helm and kubectl call uses (default: the current one)
#   TIMEOUT                helm --timeout of each release (default DEPLOY_TIMEOUT of versions.env)
#   NAMESPACE              namespace of charts/userstream and its data plane (default userstream)
#   AIRFLOW_NAMESPACE      namespace of the airflow release (default airflow): Airflow never shares a
#                          namespace with the data plane's Secrets
#   IMAGE_TAG              tag of the userstream images (default: k8s/tools/image_tag.py, by content)
#   AIRFLOW_IMAGE_REPOSITORY, INGEST_IMAGE_REPOSITORY   default userstream-airflow, userstream-ingest
#   AIRFLOW_LOGS_ACCESS_MODE  access mode of the task-log volume (default ReadWriteMany; kind: ReadWriteOnce)
#   AIRFLOW_LOGS_STORAGE_CLASS, AIRFLOW_LOGS_SIZE       default: the cluster's default class, 5Gi
#   CHART_SOURCE           repo (default: the charts' repositories) or go-module: where no chart
#                          repository or container registry is reachable (the project's own cluster),
#                          spark-operator's chart and CloudNativePG's release manifest come from their Go
#                          modules (the module proxy) and run the images built here (make images):
#   SPARK_OPERATOR_IMAGE   with go-module: default docker.io/library/userstream-spark-operator:<version>
#   CLOUDNATIVE_PG_IMAGE   with go-module: default docker.io/library/userstream-cloudnative-pg:<version>
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/k8s/platform"
HELM="${HELM:-$ROOT/.cache/bin/helm}"
KUBECTL="${KUBECTL:-$ROOT/.cache/bin/kubectl}"

# shellcheck disable=SC1091
set -a; source "$ROOT/versions.env"; set +a
TIMEOUT="${TIMEOUT:-$DEPLOY_TIMEOUT}"
NAMESPACE="${NAMESPACE:-userstream}"
AIRFLOW_NAMESPACE="${AIRFLOW_NAMESPACE:-airflow}"
KUBE_CONTEXT="${KUBE_CONTEXT:-}"
AIRFLOW_IMAGE_REPOSITORY="${AIRFLOW_IMAGE_REPOSITORY:-userstream-airflow}"
INGEST_IMAGE_REPOSITORY="${INGEST_IMAGE_REPOSITORY:-userstream-ingest}"
AIRFLOW_LOGS_ACCESS_MODE="${AIRFLOW_LOGS_ACCESS_MODE:-ReadWriteMany}"
AIRFLOW_LOGS_STORAGE_CLASS="${AIRFLOW_LOGS_STORAGE_CLASS:-}"
AIRFLOW_LOGS_SIZE="${AIRFLOW_LOGS_SIZE:-5Gi}"
CHART_SOURCE="${CHART_SOURCE:-repo}"
SPARK_OPERATOR_IMAGE="${SPARK_OPERATOR_IMAGE:-docker.io/library/userstream-spark-operator:${SPARK_OPERATOR_VERSION}}"
CLOUDNATIVE_PG_IMAGE="${CLOUDNATIVE_PG_IMAGE:-docker.io/library/userstream-cloudnative-pg:${CLOUDNATIVE_PG_VERSION}}"

for tool in "$HELM" "$KUBECTL"; do
  [[ -x "$tool" ]] || { echo "install.sh: $tool not found: run 'make tools'" >&2; exit 1; }
done
case "$CHART_SOURCE" in
  repo | go-module) ;;
  *) echo "install.sh: CHART_SOURCE='$CHART_SOURCE': expected repo or go-module" >&2; exit 2 ;;
esac
case "$AIRFLOW_LOGS_ACCESS_MODE" in
  ReadWriteMany | ReadWriteOnce) ;;
  *) echo "install.sh: AIRFLOW_LOGS_ACCESS_MODE='$AIRFLOW_LOGS_ACCESS_MODE': expected ReadWriteMany or ReadWriteOnce" >&2; exit 2 ;;
esac
if [[ -z "${IMAGE_TAG:-}" ]]; then
  IMAGE_TAG="$(python3 "$ROOT/k8s/tools/image_tag.py")"
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# Every call goes to the same cluster: KUBE_CONTEXT when set, else the current context.
helm_() {
  if [[ -n "$KUBE_CONTEXT" ]]; then "$HELM" --kube-context "$KUBE_CONTEXT" "$@"; else "$HELM" "$@"; fi
}
kubectl_() {
  if [[ -n "$KUBE_CONTEXT" ]]; then "$KUBECTL" --context "$KUBE_CONTEXT" "$@"; else "$KUBECTL" "$@"; fi
}

# release  name  namespace  chart (oci://... or a name with --repo URL in the extra args)  version  values-file  extra-args...
release() {
  local name="$1" ns="$2" chart="$3" version="$4" values="$5"; shift 5
  echo "==> $name $chart $version (namespace $ns)"
  helm_ upgrade --install "$name" "$chart" --version "$version" \
    --namespace "$ns" --create-namespace --values "$HERE/$values" \
    --wait --timeout "$TIMEOUT" "$@"
}

# cert-manager and Strimzi publish their charts as OCI artifacts; their classic HTTP repositories
# are deprecated (cert-manager docs "Installing with Helm"; Strimzi 1.2.0 docs, "Deploying the
# Cluster Operator using Helm": oci://quay.io/strimzi-helm/strimzi-kafka-operator).
CERT_MANAGER_CHART="oci://quay.io/jetstack/charts/cert-manager"
STRIMZI_CHART="oci://quay.io/strimzi-helm/strimzi-kafka-operator"

install_cert_manager() {
  # cert-manager's CRDs are templates (crds.enabled in cert-manager.values.yaml): upgraded with it.
  release cert-manager cert-manager "$CERT_MANAGER_CHART" "v${CERT_MANAGER_VERSION}" cert-manager.values.yaml
}
install_strimzi() {
  # Strimzi's chart keeps its CRDs in crds/, which Helm installs once and never upgrades (Helm docs,
  # "Custom Resource Definitions": no upgrade or delete of crds/). Apply the pinned release's CRDs
  # first, so that an upgrade of the operator never runs against the previous release's schemas.
  echo "==> strimzi CRDs ${STRIMZI_VERSION}"
  helm_ show crds "$STRIMZI_CHART" --version "${STRIMZI_VERSION}" |
    kubectl_ apply --server-side --force-conflicts --field-manager=userstream-install -f -
  release strimzi strimzi "$STRIMZI_CHART" "${STRIMZI_VERSION}" strimzi.values.yaml
}
# The folder of a Go module at a version, downloaded through the module proxy (go mod download).
go_module_dir() {
  command -v go >/dev/null || { echo "install.sh: CHART_SOURCE=go-module needs Go (go mod download)" >&2; exit 1; }
  local dir
  dir="$(cd "$WORK" && GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
  [[ -d "$dir" ]] || { echo "install.sh: go mod download $1 gave no folder" >&2; exit 1; }
  echo "$dir"
}

# "registry/repository:tag" -> the three --set values the spark-operator chart builds its image from
# (spark-operator v2.5.2 charts/spark-operator-chart/templates/_helpers.tpl, "spark-operator.image").
spark_operator_image_args() {
  local image="$1" registry rest
  registry="${image%%/*}"; rest="${image#*/}"
  echo "--set" "image.registry=$registry" "--set" "image.repository=${rest%:*}" "--set" "image.tag=${rest##*:}"
}

install_spark_operator() {
  if [[ "$CHART_SOURCE" == go-module ]]; then
    # the chart ships in the operator's Go module (spark-operator v2.5.2: charts/spark-operator-chart)
    local chart
    chart="$(go_module_dir "github.com/kubeflow/spark-operator/v2@v${SPARK_OPERATOR_VERSION}")/charts/spark-operator-chart"
    # shellcheck disable=SC2046
    release spark-operator spark-operator "$chart" "${SPARK_OPERATOR_VERSION}" spark-operator.values.yaml \
      $(spark_operator_image_args "$SPARK_OPERATOR_IMAGE")
    return
  fi
  release spark-operator spark-operator spark-operator "${SPARK_OPERATOR_VERSION}" spark-operator.values.yaml \
    --repo https://kubeflow.github.io/spark-operator
}
install_k8ssandra_operator() {
  release k8ssandra-operator k8ssandra-operator k8ssandra-operator "${K8SSANDRA_OPERATOR_VERSION}" \
    k8ssandra-operator.values.yaml --repo https://helm.k8ssandra.io/stable \
    --set "image.tag=v${K8SSANDRA_OPERATOR_VERSION}"
}
install_cloudnative_pg() {
  if [[ "$CHART_SOURCE" == go-module ]]; then
    # The operator's own release manifest (cloudnative-pg v1.30.0 releases/cnpg-1.30.0.yaml: CRDs,
    # RBAC, webhooks, the Deployment in cnpg-system), its image replaced by the one built here in both
    # places it is named (the container and OPERATOR_IMAGE_NAME, which the instances' bootstrap uses).
    local manifest upstream="ghcr.io/cloudnative-pg/cloudnative-pg:${CLOUDNATIVE_PG_VERSION}"
    manifest="$(go_module_dir "github.com/cloudnative-pg/cloudnative-pg@v${CLOUDNATIVE_PG_VERSION}")/releases/cnpg-${CLOUDNATIVE_PG_VERSION}.yaml"
    grep -q "$upstream" "$manifest" || { echo "install.sh: $manifest does not name $upstream" >&2; exit 1; }
    echo "==> cnpg $manifest (namespace cnpg-system, image $CLOUDNATIVE_PG_IMAGE)"
    # imagePullPolicy Always would pull what was built here and never pushed: IfNotPresent
    sed -e "s#${upstream}#${CLOUDNATIVE_PG_IMAGE}#g" -e "s#imagePullPolicy: Always#imagePullPolicy: IfNotPresent#g" \
      "$manifest" >"$WORK/cnpg.yaml"
    kubectl_ apply --server-side --force-conflicts --field-manager=userstream-install -f "$WORK/cnpg.yaml" >/dev/null
    kubectl_ -n cnpg-system rollout status deployment/cnpg-controller-manager --timeout "$TIMEOUT"
    return
  fi
  release cnpg cnpg-system cloudnative-pg "${CLOUDNATIVE_PG_CHART_VERSION}" cloudnative-pg.values.yaml \
    --repo https://cloudnative-pg.github.io/charts
}

airflow_logs_claim() {
  # Task logs outlive the KubernetesExecutor's worker pods on this claim (airflow.values.yaml,
  # logs.persistence.existingClaim). The Airflow chart's own claim is always ReadWriteMany (chart
  # 1.22.0 templates/logs-persistent-volume-claim.yaml), which kind's local-path storage cannot
  # provide; with ReadWriteOnce every Airflow pod follows the volume onto one node.
  local class=""
  [[ -z "$AIRFLOW_LOGS_STORAGE_CLASS" ]] || class="  storageClassName: $AIRFLOW_LOGS_STORAGE_CLASS"
  kubectl_ apply -n "$AIRFLOW_NAMESPACE" -f - <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: airflow-logs
  labels:
    app.kubernetes.io/part-of: userstream
    app.kubernetes.io/component: airflow-logs
spec:
  accessModes: [$AIRFLOW_LOGS_ACCESS_MODE]
$class
  resources:
    requests:
      storage: $AIRFLOW_LOGS_SIZE
EOF
}

install_airflow() {
  kubectl_ create namespace "$AIRFLOW_NAMESPACE" --dry-run=client -o yaml | kubectl_ apply -f - >/dev/null
  airflow_logs_claim
  # With useHelmHooks false (airflow.values.yaml) the migration and user Jobs are release objects
  # with fixed names (chart 1.22.0 templates/jobs/*-job.yaml): a Job's pod template is immutable, so
  # a finished Job of the previous revision must go before an upgrade that changes the image.
  kubectl_ -n "$AIRFLOW_NAMESPACE" delete job airflow-run-airflow-migrations airflow-create-user \
    --ignore-not-found --wait=true
  # The DAGs launch the ingestion pods with the image of the same build (USERSTREAM_DAG_INGEST_IMAGE)
  # in the namespace of charts/userstream (USERSTREAM_DAG_NAMESPACE)
  local image_values="$WORK/airflow-image.values.yaml"
  cat >"$image_values" <<EOF
extraEnv: |
  - name: USERSTREAM_DAG_INGEST_IMAGE
    value: "${INGEST_IMAGE_REPOSITORY}:${IMAGE_TAG}"
  - name: USERSTREAM_DAG_NAMESPACE
    value: "${NAMESPACE}"
EOF
  release airflow "$AIRFLOW_NAMESPACE" airflow "${AIRFLOW_CHART_VERSION}" airflow.values.yaml \
    --repo https://airflow.apache.org --values "$image_values" \
    --set "images.airflow.repository=${AIRFLOW_IMAGE_REPOSITORY}" --set "images.airflow.tag=${IMAGE_TAG}" \
    --set "defaultAirflowRepository=${AIRFLOW_IMAGE_REPOSITORY}" --set "defaultAirflowTag=${IMAGE_TAG}"
}

ORDER=(cert-manager strimzi spark-operator k8ssandra-operator cloudnative-pg airflow)
selected=("$@")
[[ ${#selected[@]} -gt 0 ]] || selected=("${ORDER[@]}")
for want in "${selected[@]}"; do
  [[ " ${ORDER[*]} " == *" $want "* ]] || { echo "install.sh: unknown release '$want' (one of: ${ORDER[*]})" >&2; exit 2; }
done

# The namespace of our chart exists before the operators watch it.
kubectl_ create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl_ apply -f - >/dev/null

for name in "${ORDER[@]}"; do
  for want in "${selected[@]}"; do
    if [[ "$want" == "$name" ]]; then
      "install_${name//-/_}"
    fi
  done
done
echo "platform ready: install charts/userstream next (release userstream, namespace $NAMESPACE," \
  "airflow.namespace=$AIRFLOW_NAMESPACE, image tags $IMAGE_TAG)"

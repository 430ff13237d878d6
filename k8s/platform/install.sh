#!/usr/bin/env bash
# Install (or upgrade) the platform userstream runs on, in order, each as its own Helm release:
#   cert-manager -> Strimzi -> spark-operator -> k8ssandra-operator -> CloudNativePG -> Airflow.
# Idempotent: `helm upgrade --install --wait` of each chart by repository URL, versions from
# versions.env, values from k8s/platform/<name>.values.yaml. charts/userstream is installed after
# this (its custom resources need the operators' webhooks to be ready).
#
#   k8s/platform/install.sh            all of them
#   k8s/platform/install.sh strimzi    only the named releases
#
# Settings (environment): HELM, KUBECTL (default: .cache/bin/helm, .cache/bin/kubectl),
# AIRFLOW_IMAGE_REPOSITORY, AIRFLOW_IMAGE_TAG (the userstream-airflow image), TIMEOUT (default 10m).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/k8s/platform"
HELM="${HELM:-$ROOT/.cache/bin/helm}"
KUBECTL="${KUBECTL:-$ROOT/.cache/bin/kubectl}"
TIMEOUT="${TIMEOUT:-10m}"
NAMESPACE="userstream"

# shellcheck disable=SC1091
set -a; source "$ROOT/versions.env"; set +a
AIRFLOW_IMAGE_REPOSITORY="${AIRFLOW_IMAGE_REPOSITORY:-userstream-airflow}"
AIRFLOW_IMAGE_TAG="${AIRFLOW_IMAGE_TAG:-0.1.0}"

for tool in "$HELM" "$KUBECTL"; do
  [[ -x "$tool" ]] || { echo "install.sh: $tool not found: run 'make tools'" >&2; exit 1; }
done

# release  namespace  repository-url  chart  version  values-file  extra-args...
release() {
  local name="$1" ns="$2" repo="$3" chart="$4" version="$5" values="$6"; shift 6
  echo "==> $name $chart $version (namespace $ns)"
  "$HELM" upgrade --install "$name" "$chart" --repo "$repo" --version "$version" \
    --namespace "$ns" --create-namespace --values "$HERE/$values" \
    --wait --timeout "$TIMEOUT" "$@"
}

install_cert_manager() {
  release cert-manager cert-manager https://charts.jetstack.io cert-manager "v${CERT_MANAGER_VERSION}" \
    cert-manager.values.yaml
}
install_strimzi() {
  release strimzi strimzi https://strimzi.io/charts/ strimzi-kafka-operator "${STRIMZI_VERSION}" \
    strimzi.values.yaml
}
install_spark_operator() {
  release spark-operator spark-operator https://kubeflow.github.io/spark-operator spark-operator \
    "${SPARK_OPERATOR_VERSION}" spark-operator.values.yaml
}
install_k8ssandra_operator() {
  release k8ssandra-operator k8ssandra-operator https://helm.k8ssandra.io/stable k8ssandra-operator \
    "${K8SSANDRA_OPERATOR_VERSION}" k8ssandra-operator.values.yaml \
    --set "image.tag=v${K8SSANDRA_OPERATOR_VERSION}"
}
install_cloudnative_pg() {
  release cnpg cnpg-system https://cloudnative-pg.github.io/charts cloudnative-pg \
    "${CLOUDNATIVE_PG_CHART_VERSION}" cloudnative-pg.values.yaml
}
install_airflow() {
  release airflow "$NAMESPACE" https://airflow.apache.org airflow "${AIRFLOW_CHART_VERSION}" \
    airflow.values.yaml \
    --set "images.airflow.repository=${AIRFLOW_IMAGE_REPOSITORY}" --set "images.airflow.tag=${AIRFLOW_IMAGE_TAG}" \
    --set "defaultAirflowRepository=${AIRFLOW_IMAGE_REPOSITORY}" --set "defaultAirflowTag=${AIRFLOW_IMAGE_TAG}"
}

ORDER=(cert-manager strimzi spark-operator k8ssandra-operator cloudnative-pg airflow)
selected=("$@")
[[ ${#selected[@]} -gt 0 ]] || selected=("${ORDER[@]}")
for want in "${selected[@]}"; do
  [[ " ${ORDER[*]} " == *" $want "* ]] || { echo "install.sh: unknown release '$want' (one of: ${ORDER[*]})" >&2; exit 2; }
done

# The namespace of our chart and Airflow exists before the operators watch it.
"$KUBECTL" create namespace "$NAMESPACE" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null

for name in "${ORDER[@]}"; do
  for want in "${selected[@]}"; do
    if [[ "$want" == "$name" ]]; then
      "install_${name//-/_}"
    fi
  done
done
echo "platform ready: install charts/userstream next (release userstream, namespace $NAMESPACE)"

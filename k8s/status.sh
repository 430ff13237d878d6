#!/usr/bin/env bash
# `make status`: the SparkApplication's state, the stream's Kafka lag and the rows in Cassandra.
# Settings (environment): KUBECTL (kubectl), KUBE_CONTEXT (current context), NAMESPACE (userstream),
# RELEASE (userstream).
set -uo pipefail
KUBECTL=${KUBECTL:-kubectl}
NAMESPACE=${NAMESPACE:-userstream}
RELEASE=${RELEASE:-userstream}
APP="$RELEASE-stream"
KUBE_CONTEXT=${KUBE_CONTEXT:-}
k() { "$KUBECTL" ${KUBE_CONTEXT:+--context "$KUBE_CONTEXT"} -n "$NAMESPACE" "$@"; }

echo "== SparkApplication $NAMESPACE/$APP"
if ! k get sparkapplication "$APP" >/dev/null 2>&1; then
  echo "   not found: deploy first (make deploy)"; exit 1
fi
state=$(k get sparkapplication "$APP" -o jsonpath='{.status.applicationState.state}')
error=$(k get sparkapplication "$APP" -o jsonpath='{.status.applicationState.errorMessage}')
driver=$(k get sparkapplication "$APP" -o jsonpath='{.status.driverInfo.podName}')
executors=$(k get sparkapplication "$APP" -o jsonpath='{range .status.executorState.*}{@}{" "}{end}')
echo "   state: ${state:-UNKNOWN}${error:+ ($error)}"
echo "   driver: ${driver:-none}  executors: ${executors:-none}"
k get pods -l "sparkoperator.k8s.io/app-name=$APP" -o wide 2>/dev/null | sed 's/^/   /'

echo "== Kafka lag (topic end offsets minus the query's checkpoint)"
if [ "$state" = "RUNNING" ] && [ -n "$driver" ]; then
  k exec -i "$driver" -c spark-kubernetes-driver -- /opt/userstream/venv/bin/python - \
    < "$(dirname "$0")/stream_lag.py" 2>&1 | sed 's/^/   /'
else
  echo "   the driver is not running: no lag to read"
fi

echo "== Cassandra rows"
pod=$(k get pods -l "cassandra.datastax.com/cluster=$RELEASE-cassandra" -o jsonpath='{.items[0].metadata.name}' 2>/dev/null)
if [ -z "$pod" ]; then
  echo "   no Cassandra pod yet"
else
  # the read-only role the chart creates (SELECT on the table), never the admin role
  user=$(k get secret "$RELEASE-cassandra-reader" -o jsonpath='{.data.username}' | base64 -d)
  pass=$(k get secret "$RELEASE-cassandra-reader" -o jsonpath='{.data.password}' | base64 -d)
  keyspace=$(k get configmap "$RELEASE-settings" -o jsonpath='{.data.USERSTREAM_CASSANDRA_KEYSPACE}' 2>/dev/null)
  table=$(k get configmap "$RELEASE-settings" -o jsonpath='{.data.USERSTREAM_CASSANDRA_TABLE}' 2>/dev/null)
  k exec "$pod" -c cassandra -- cqlsh -u "$user" -p "$pass" \
    -e "SELECT count(*) FROM ${keyspace:-spark_streams}.${table:-created_users};" 2>&1 | sed 's/^/   /'
fi
echo
echo "next: watch the app with 'kubectl -n $NAMESPACE get sparkapplication -w'; run an ingestion from the"
echo "      Airflow UI (DAG users_ingest) or 'make e2e'; logs: kubectl -n $NAMESPACE logs ${driver:-<driver pod>}"

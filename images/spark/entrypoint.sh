#!/bin/bash
# Entrypoint of the userstream Spark image (written for userstream; not a copy of apache/spark's).
#
# Spark's Kubernetes backend starts driver and executor pods of this image with the container
# arguments `driver ...` or `executor` and describes everything else in environment variables
# (names read in Spark's spark-kubernetes_2.13 jar, checked again for 4.1.3, which pyspark ships:
# org.apache.spark.deploy.k8s.Constants and the options KubernetesExecutorBackend parses):
#   driver   -> spark-submit in client deploy mode inside the driver pod, bound to the pod's
#               address (SPARK_DRIVER_BIND_ADDRESS); the remaining arguments are spark-submit's.
#   executor -> the executor JVM, org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend,
#               configured by SPARK_DRIVER_URL, SPARK_EXECUTOR_ID, SPARK_EXECUTOR_CORES,
#               SPARK_EXECUTOR_MEMORY, SPARK_APPLICATION_ID, SPARK_EXECUTOR_POD_IP,
#               SPARK_EXECUTOR_POD_NAME, SPARK_RESOURCE_PROFILE_ID and the JVM options
#               SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ... (in that order).
#   anything else is run as given (e.g. `bash`, `spark-submit --version`).
# It writes nothing to the image's filesystem: a read-only root filesystem works.
set -euo pipefail

: "${SPARK_HOME:?SPARK_HOME must point at the Spark installation}"

# The classpath both roles share: the image's jars, then what the pod adds.
classpath="${SPARK_CLASSPATH:+${SPARK_CLASSPATH}:}${SPARK_HOME}/jars/*"
if [ -n "${SPARK_EXTRA_CLASSPATH:-}" ]; then
  classpath="${classpath}:${SPARK_EXTRA_CLASSPATH}"
fi
if [ -n "${HADOOP_CONF_DIR:-}" ]; then
  classpath="${HADOOP_CONF_DIR}:${classpath}"
fi
if [ -n "${SPARK_CONF_DIR:-}" ]; then
  classpath="${SPARK_CONF_DIR}:${classpath}"
fi

# SPARK_JAVA_OPT_<n> in numeric order of <n>, each one argument (values may hold spaces).
java_options=()
while IFS= read -r name; do
  java_options+=("${!name}")
done < <(compgen -e | sed -n 's/^SPARK_JAVA_OPT_\([0-9][0-9]*\)$/\1 &/p' | sort -n | cut -d' ' -f2)

role="${1:-}"
case "${role}" in
  driver)
    shift
    : "${SPARK_DRIVER_BIND_ADDRESS:?the driver pod sets SPARK_DRIVER_BIND_ADDRESS}"
    exec "${SPARK_HOME}/bin/spark-submit" \
      --deploy-mode client \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS}" \
      --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS}" \
      "$@"
    ;;
  executor)
    shift
    : "${SPARK_DRIVER_URL:?}" "${SPARK_EXECUTOR_ID:?}" "${SPARK_EXECUTOR_CORES:?}"
    : "${SPARK_APPLICATION_ID:?}" "${SPARK_EXECUTOR_POD_IP:?}" "${SPARK_EXECUTOR_MEMORY:?}"
    exec java "${java_options[@]}" \
      "-Xms${SPARK_EXECUTOR_MEMORY}" "-Xmx${SPARK_EXECUTOR_MEMORY}" \
      -cp "${classpath}" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "${SPARK_DRIVER_URL}" \
      --executor-id "${SPARK_EXECUTOR_ID}" \
      --cores "${SPARK_EXECUTOR_CORES}" \
      --app-id "${SPARK_APPLICATION_ID}" \
      --hostname "${SPARK_EXECUTOR_POD_IP}" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
      --podName "${SPARK_EXECUTOR_POD_NAME:-$(hostname)}" \
      "$@"
    ;;
  *)
    exec "$@"
    ;;
esac

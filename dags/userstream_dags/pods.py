"""The pieces of the pods the DAGs launch, built from the settings' ``dag_*`` fields.

Secrets are referenced by name and key (``secretKeyRef`` and a Secret volume); their values never
pass through Airflow.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from kubernetes.client import models as k8s

from userstream.settings import Settings
from userstream_dags.config import chart_objects

KAFKA_CA_VOLUME = "kafka-ca"
# Where the pods find the Kafka CA. The source is the chart: its settings ConfigMap, which the pods
# load, names this file as USERSTREAM_KAFKA_SSL_CAFILE (userstream.kafkaCaDir in
# charts/userstream/templates/_helpers.tpl, the CA Secret's key mounted as ca.crt), so the pods
# mount the CA here and set nothing; tests/chart (test_dag_config_derives_the_names_the_chart_renders)
# keeps the two equal.
KAFKA_CA_FILE = PurePosixPath("/etc/userstream/kafka-ca/ca.crt")
TMP_VOLUME = "tmp"


def labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/part-of": "userstream",
        "app.kubernetes.io/managed-by": "airflow",
    }


def pod_security_context(settings: Settings) -> k8s.V1PodSecurityContext:
    return k8s.V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=settings.dag_run_as_user,
        run_as_group=settings.dag_run_as_user,
        fs_group=settings.dag_run_as_user,
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def container_security_context() -> k8s.V1SecurityContext:
    return k8s.V1SecurityContext(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
    )


def ingest_resources(settings: Settings) -> k8s.V1ResourceRequirements:
    return k8s.V1ResourceRequirements(
        requests={"cpu": settings.dag_ingest_cpu_request, "memory": settings.dag_ingest_memory_request},
        limits={"cpu": settings.dag_ingest_cpu_limit, "memory": settings.dag_ingest_memory_limit},
    )


def _secret_env(name: str, secret: str, key: str) -> k8s.V1EnvVar:
    return k8s.V1EnvVar(
        name=name,
        value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name=secret, key=key)),
    )


def ingest_env(settings: Settings) -> list[k8s.V1EnvVar]:
    """Environment of the ingestion pod on top of the settings ConfigMap (which says where the
    Kafka CA is, :data:`KAFKA_CA_FILE`)."""
    secret = chart_objects(settings).kafka_user_secret
    if settings.dag_kafka_username_key:  # a platform's Kafka (the chart's external mode)
        username = _secret_env("USERSTREAM_KAFKA_USERNAME", secret, settings.dag_kafka_username_key)
    else:  # a Strimzi KafkaUser: its name is the user name
        username = k8s.V1EnvVar(name="USERSTREAM_KAFKA_USERNAME", value=secret)
    return [
        username,
        _secret_env("USERSTREAM_KAFKA_PASSWORD", secret, settings.dag_kafka_password_key),
        _secret_env(
            "USERSTREAM_POSTGRES_DSN", chart_objects(settings).postgres_secret, settings.dag_postgres_dsn_key
        ),
    ]


def ingest_volumes(settings: Settings) -> list[k8s.V1Volume]:
    """Volumes of the ingestion pod: /tmp, and the Kafka CA with a TLS listener."""
    return ([kafka_ca_volume(settings)] if settings.dag_kafka_tls else []) + [tmp_volume()]


def ingest_mounts(settings: Settings) -> list[k8s.V1VolumeMount]:
    ca = k8s.V1VolumeMount(name=KAFKA_CA_VOLUME, mount_path=str(KAFKA_CA_FILE.parent), read_only=True)
    return ([ca] if settings.dag_kafka_tls else []) + [tmp_mount()]


def health_env(settings: Settings) -> list[k8s.V1EnvVar]:
    """Environment of the stream's health check on top of the settings ConfigMap: the chart's
    health KafkaUser (Describe on the topic and the progress group only), the same way
    :func:`ingest_env` finds the ingestion's."""
    secret = chart_objects(settings).kafka_health_secret
    if settings.dag_kafka_username_key:  # a platform's Kafka (the chart's external mode)
        username = _secret_env("USERSTREAM_KAFKA_USERNAME", secret, settings.dag_kafka_username_key)
    else:  # a Strimzi KafkaUser: its name is the user name
        username = k8s.V1EnvVar(name="USERSTREAM_KAFKA_USERNAME", value=secret)
    return [username, _secret_env("USERSTREAM_KAFKA_PASSWORD", secret, settings.dag_kafka_password_key)]


def kafka_ca_volume(settings: Settings) -> k8s.V1Volume:
    """The CA Secret's key as the file the settings ConfigMap names, whatever the key's name."""
    return k8s.V1Volume(
        name=KAFKA_CA_VOLUME,
        secret=k8s.V1SecretVolumeSource(
            secret_name=chart_objects(settings).kafka_ca_secret,
            items=[k8s.V1KeyToPath(key=settings.dag_kafka_ca_key, path=KAFKA_CA_FILE.name)],
            default_mode=0o444,
        ),
    )


def tmp_volume() -> k8s.V1Volume:
    return k8s.V1Volume(name=TMP_VOLUME, empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="64Mi"))


def tmp_mount() -> k8s.V1VolumeMount:
    return k8s.V1VolumeMount(name=TMP_VOLUME, mount_path="/tmp")  # noqa: S108 - an emptyDir


def common_operator_kwargs(settings: Settings, component: str) -> dict[str, Any]:
    """KubernetesPodOperator arguments every userstream pod shares."""
    objects = chart_objects(settings)
    return {
        "namespace": settings.dag_namespace,
        "image": settings.dag_ingest_image,
        "image_pull_policy": settings.dag_image_pull_policy,
        "service_account_name": objects.service_account,
        "automount_service_account_token": False,
        "in_cluster": settings.dag_in_cluster,
        "kubernetes_conn_id": settings.dag_kubernetes_conn_id,
        "labels": labels(component),
        # the non-secret USERSTREAM_* settings of the pods
        "env_from": [
            k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name=objects.settings_configmap))
        ],
        "security_context": pod_security_context(settings),
        "container_security_context": container_security_context(),
        "get_logs": True,
        "on_finish_action": "delete_succeeded_pod",
        "log_events_on_failure": True,
    }


def check_resources() -> k8s.V1ResourceRequirements:
    return k8s.V1ResourceRequirements(
        requests={"cpu": "100m", "memory": "128Mi"},
        limits={"cpu": "500m", "memory": "256Mi"},
    )

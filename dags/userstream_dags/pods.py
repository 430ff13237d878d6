"""The pieces of the pods the DAGs launch, built from :class:`DagConfig`.

Secrets are referenced by name and key (``secretKeyRef`` and a Secret volume); their values never
pass through Airflow.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import models as k8s

from userstream_dags.config import DagConfig, chart_fullname

KAFKA_CA_VOLUME = "kafka-ca"
TMP_VOLUME = "tmp"


def labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/part-of": "userstream",
        "app.kubernetes.io/managed-by": "airflow",
    }


def pod_security_context(config: DagConfig) -> k8s.V1PodSecurityContext:
    return k8s.V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=config.run_as_user,
        run_as_group=config.run_as_user,
        fs_group=config.run_as_user,
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def container_security_context() -> k8s.V1SecurityContext:
    return k8s.V1SecurityContext(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
    )


def ingest_resources(config: DagConfig) -> k8s.V1ResourceRequirements:
    return k8s.V1ResourceRequirements(
        requests={"cpu": config.ingest_cpu_request, "memory": config.ingest_memory_request},
        limits={"cpu": config.ingest_cpu_limit, "memory": config.ingest_memory_limit},
    )


def settings_env_from(config: DagConfig) -> list[k8s.V1EnvFromSource]:
    return [k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name=config.settings_configmap))]


def _secret_env(name: str, secret: str, key: str) -> k8s.V1EnvVar:
    return k8s.V1EnvVar(
        name=name,
        value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name=secret, key=key)),
    )


def ingest_env(config: DagConfig) -> list[k8s.V1EnvVar]:
    """Environment of the ingestion pod on top of the settings ConfigMap."""
    if config.kafka_username_key:  # a platform's Kafka (the chart's external mode)
        username = _secret_env(
            "USERSTREAM_KAFKA_USERNAME", config.kafka_user_secret, config.kafka_username_key
        )
    else:  # a Strimzi KafkaUser: its name is the user name
        username = k8s.V1EnvVar(name="USERSTREAM_KAFKA_USERNAME", value=config.kafka_username)
    env = [
        username,
        _secret_env("USERSTREAM_KAFKA_PASSWORD", config.kafka_user_secret, config.kafka_password_key),
    ]
    if config.kafka_tls:
        env.append(k8s.V1EnvVar(name="USERSTREAM_KAFKA_SSL_CAFILE", value=config.kafka_ca_file))
    env.append(_secret_env("USERSTREAM_POSTGRES_DSN", config.postgres_secret, config.postgres_dsn_key))
    return env


def ingest_volumes(config: DagConfig) -> list[k8s.V1Volume]:
    """Volumes of the ingestion pod: /tmp, and the Kafka cluster CA with a TLS listener."""
    return ([kafka_ca_volume(config)] if config.kafka_tls else []) + [tmp_volume()]


def ingest_mounts(config: DagConfig) -> list[k8s.V1VolumeMount]:
    return ([kafka_ca_mount(config)] if config.kafka_tls else []) + [tmp_mount()]


def health_env(config: DagConfig) -> list[k8s.V1EnvVar]:
    """Environment of the stream's health check on top of the settings ConfigMap: the chart's
    ``<fullname>-health`` KafkaUser (Describe on the topic and the progress group only; Strimzi
    names its Secret after the user), and how long a record may wait unprocessed."""
    user = f"{chart_fullname(config.release)}-health"
    env = [
        k8s.V1EnvVar(name="USERSTREAM_KAFKA_USERNAME", value=user),
        _secret_env("USERSTREAM_KAFKA_PASSWORD", user, config.kafka_password_key),
        k8s.V1EnvVar(name="USERSTREAM_HEALTH_MAX_WAIT_MINUTES", value=str(config.freshness_max_age_minutes)),
    ]
    if config.kafka_tls:
        env.append(k8s.V1EnvVar(name="USERSTREAM_KAFKA_SSL_CAFILE", value=config.kafka_ca_file))
    return env


def kafka_ca_volume(config: DagConfig) -> k8s.V1Volume:
    return k8s.V1Volume(
        name=KAFKA_CA_VOLUME,
        secret=k8s.V1SecretVolumeSource(
            secret_name=config.kafka_ca_secret,
            items=[k8s.V1KeyToPath(key=config.kafka_ca_key, path=config.kafka_ca_key)],
            default_mode=0o444,
        ),
    )


def kafka_ca_mount(config: DagConfig) -> k8s.V1VolumeMount:
    return k8s.V1VolumeMount(name=KAFKA_CA_VOLUME, mount_path=config.kafka_ca_dir, read_only=True)


def tmp_volume() -> k8s.V1Volume:
    return k8s.V1Volume(name=TMP_VOLUME, empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="64Mi"))


def tmp_mount() -> k8s.V1VolumeMount:
    return k8s.V1VolumeMount(name=TMP_VOLUME, mount_path="/tmp")  # noqa: S108 - an emptyDir


def common_operator_kwargs(config: DagConfig, component: str) -> dict[str, Any]:
    """KubernetesPodOperator arguments every userstream pod shares."""
    return {
        "namespace": config.namespace,
        "image": config.ingest_image,
        "image_pull_policy": config.image_pull_policy,
        "service_account_name": config.service_account,
        "automount_service_account_token": False,
        "in_cluster": config.in_cluster,
        "kubernetes_conn_id": config.kubernetes_conn_id,
        "labels": labels(component),
        "env_from": settings_env_from(config),
        "security_context": pod_security_context(config),
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

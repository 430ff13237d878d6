"""The whole platform on the project's own cluster, as a user would set it up without Docker.

- Kafka and Cassandra: the local stack's real servers (SCRAM-SHA-512 with ACLs; Cassandra roles),
  a stack of their own for this run (state under the cluster's folder, ports apart from a stack
  the user may run), listening also on the host end of the cluster's link (10.234.0.1), where pods
  reach them: the chart's external mode (charts/userstream/ci/local-cluster-values.yaml).
- The Spark operator (helm, its chart from its Go module) and CloudNativePG (its release manifest)
  through k8s/platform/install.sh with CHART_SOURCE=go-module, on images built here.
- charts/userstream with the local-cluster profile; the credentials' Secrets made from the stack's
  generated credentials, exactly those the profile names.
- Airflow from PyPI runs the users_ingest DAG (`airflow dags test`) with the real
  KubernetesPodOperator against this cluster, as the ServiceAccount the Airflow chart would run its
  workers as (airflow/airflow-worker, a token kubeconfig): the chart's RBAC and admission policy apply.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kind_support import NAMESPACE, REPO, E2EError

from userstream.cluster import layout
from userstream.contract.ids import record_id
from userstream.ingest.sources.synthetic import generate
from userstream.local.credentials import client_settings
from userstream.local.credentials import load as load_credentials
from userstream.local.run import topic_messages
from userstream.local.stack import LocalStack
from userstream.settings import Settings

IMAGES = ["ingest", "spark", "spark-operator", "cloudnative-pg", "postgres"]
PROFILE = REPO / "charts" / "userstream" / "ci" / "local-cluster-values.yaml"
SECRETS = {
    # Secret -> (kafka or cassandra, principal)
    "userstream-kafka-ingest": ("kafka", "userstream-ingest"),
    "userstream-kafka-stream": ("kafka", "userstream-stream"),
    "userstream-cassandra-admin": ("cassandra", "userstream-admin"),
    "userstream-cassandra-writer": ("cassandra", "userstream_writer"),
    "userstream-cassandra-reader": ("cassandra", "userstream_reader"),
}
DAG_ENV = {
    "USERSTREAM_DAG_KAFKA_USER_SECRET": "userstream-kafka-ingest",
    "USERSTREAM_DAG_KAFKA_USERNAME_KEY": "username",
    "USERSTREAM_DAG_KAFKA_PASSWORD_KEY": "password",
    "USERSTREAM_DAG_KAFKA_TLS": "false",
    "USERSTREAM_DAG_IN_CLUSTER": "false",
}
# charts/userstream/templates/streaming/checkpoint-pvc.yaml, release `userstream`
CHECKPOINT_CLAIM = "userstream-stream-checkpoints"
BROKEN_RATE = 0.01  # the chart's USERSTREAM_SYNTHETIC_BROKEN_RATE default (settings.py)


def data_plane_settings(base: Settings, cluster_dir: Path) -> Settings:
    return base.model_copy(
        update={
            "state_dir": cluster_dir / "data-plane",
            "local_external_address": layout.HOST_ADDRESS,
            "kafka_bootstrap_servers": ["127.0.0.1:19092"],
            "local_kafka_controller_port": 19093,
            "local_cassandra_storage_port": 17000,
            "cassandra_contact_points": [layout.HOST_ADDRESS],
            "checkpoint_location": str(cluster_dir / "data-plane" / "unused-checkpoint"),
        }
    )


def expected_users(seed: int, records: int) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """The ids of the valid and of the broken users a synthetic run of ``seed`` ingests."""
    valid: set[uuid.UUID] = set()
    broken: set[uuid.UUID] = set()
    for index in range(records):
        document, kind = generate(seed, index, BROKEN_RATE)
        (broken if kind else valid).add(record_id(document))
    return valid, broken


@dataclass
class LocalPlatform:
    cluster: Any  # LocalClusterProvider
    settings: Settings
    airflow_home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="userstream-airflow-")))

    # --- bring-up ----------------------------------------------------------------------------------
    # e2e_platform.Platform: start() before install(), teardown() after them, even after a failure
    def start(self) -> None:
        """An empty data plane and no stream checkpoint, as in a fresh clone: the session's data is
        its own. Topics an earlier session left would be read again by this session's stream, its
        dead letters landing among this session's; and the checkpoint the chart keeps across
        uninstalls (helm.sh/resource-policy: keep) would name offsets the emptied topics never had,
        so the stream would stop on data loss."""
        self.cluster.kubectl(
            "delete",
            "pvc",
            CHECKPOINT_CLAIM,
            "--namespace",
            NAMESPACE,
            "--ignore-not-found",
            "--timeout=180s",
        )
        stack = LocalStack(self.settings)
        stack.down(["kafka", "cassandra"])
        shutil.rmtree(self.settings.state_dir, ignore_errors=True)
        stack.up(["kafka", "cassandra"])

    def teardown(self) -> None:
        try:
            self.cluster.helm("uninstall", "userstream", "--namespace", NAMESPACE, "--wait", timeout=600)
        finally:
            LocalStack(self.settings).down(["kafka", "cassandra"])

    def install(self) -> None:
        self.cluster.load_images(IMAGES)
        env = {**self.cluster.env, "CHART_SOURCE": "go-module", "TIMEOUT": "10m", "IMAGE_TAG": self.image_tag}
        subprocess.run(
            ["bash", "k8s/platform/install.sh", "spark-operator", "cloudnative-pg"],
            cwd=REPO,
            env=env,
            check=True,
            timeout=1200,
        )
        self.write_secrets()
        self.cluster.helm(
            "upgrade", "--install", "userstream", "charts/userstream", "--namespace", NAMESPACE,
            "-f", str(PROFILE), "--set", f"image.ingest.tag={self.image_tag}",
            "--set", f"image.spark.tag={self.image_tag}", "--wait", "--timeout", "15m",
        )  # fmt: skip
        self.prepare_airflow()

    @property
    def image_tag(self) -> str:
        from userstream.cluster import images

        return images.image_tag("ingest")

    def write_secrets(self) -> None:
        found = load_credentials(self.settings.state_dir)
        if found is None:
            raise E2EError(f"the data plane wrote no credentials under {self.settings.state_dir}")
        self.cluster.kubectl_stdin(
            json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
            "apply",
            "-f",
            "-",
        )
        for name, (server, principal) in SECRETS.items():
            password = found.kafka[principal] if server == "kafka" else found.cassandra[principal]
            secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "type": "Opaque",
                "stringData": {"username": principal, "password": password},
            }
            self.cluster.kubectl_stdin(json.dumps(secret), "apply", "-f", "-")

    # --- Airflow -----------------------------------------------------------------------------------
    def prepare_airflow(self) -> None:
        """Airflow's worker identity in the cluster (what the Airflow chart would create), a token
        kubeconfig for it, and Airflow's metadata database."""
        for obj in (
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "airflow"}},
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "airflow-worker", "namespace": "airflow"},
            },
        ):
            self.cluster.kubectl_stdin(json.dumps(obj), "apply", "-f", "-")
        token = self.cluster.kubectl(
            "create", "token", "airflow-worker", "-n", "airflow", "--duration=3h"
        ).strip()
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "userstream",
                    "cluster": {
                        "server": self.cluster.cluster.layout.api_url,
                        "certificate-authority": str(self.cluster.cluster.pki.ca_cert),
                    },
                }
            ],
            "users": [{"name": "airflow-worker", "user": {"token": token}}],
            "contexts": [{"name": "airflow", "context": {"cluster": "userstream", "user": "airflow-worker"}}],
            "current-context": "airflow",
        }
        path = self.airflow_home / "kubeconfig"
        path.write_text(json.dumps(kubeconfig))
        path.chmod(0o600)
        subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
            env=self.airflow_env,
            check=True,
            capture_output=True,
            timeout=600,
        )

    @property
    def airflow_env(self) -> dict[str, str]:
        connection = {
            "conn_type": "kubernetes",
            "extra": {"kube_config_path": str(self.airflow_home / "kubeconfig"), "in_cluster": False},
        }
        return {
            **os.environ,
            **DAG_ENV,
            "USERSTREAM_DAG_INGEST_IMAGE": f"userstream-ingest:{self.image_tag}",
            "AIRFLOW_HOME": str(self.airflow_home / "home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
            "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(connection),
        }

    def run_dag(self, records: int, seed: int) -> str:
        """`airflow dags test users_ingest`: one real DAG run; returns its log (the task log included)."""
        conf = json.dumps({"source": "synthetic", "records": records, "seed": str(seed)})
        result = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "dags", "test", "users_ingest", "-c", conf],
            env=self.airflow_env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        log = result.stdout + result.stderr
        if result.returncode != 0 or not re.search(r"Marking run <DagRun users_ingest .*> successful", log):
            raise E2EError(
                f"users_ingest run (seed {seed}) failed (exit {result.returncode}):\n{log[-4000:]}"
            )
        return log

    # --- reading what landed -------------------------------------------------------------------------
    def stored_ids(self) -> list[uuid.UUID]:
        from userstream.storage.client import CassandraConfig, connect

        reader = client_settings(self.settings, "checks")
        config = CassandraConfig.from_settings(reader)
        cluster, session = connect(config)
        try:
            rows = session.execute(f"SELECT id FROM {config.keyspace}.{config.table}", timeout=120)
            return [row.id for row in rows]
        finally:
            cluster.shutdown()

    def dead_letters(self) -> list[tuple[str, str]]:
        """(key, reason) of every record on the dead-letter topic, read up to its end offsets."""
        admin = client_settings(self.settings, "checks")
        return [
            ((record.key or b"").decode(), dict(record.headers or []).get("dlq.reason", b"").decode())
            for record in topic_messages(admin, admin.kafka_dlq_topic)
        ]

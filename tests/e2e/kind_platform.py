"""The whole platform on kind (Docker), as `make deploy` sets it up.

- Images built with docker and loaded into the kind nodes; cert-manager, Strimzi, the Spark
  operator, K8ssandra, CloudNativePG and the official Airflow chart installed by
  k8s/platform/install.sh; charts/userstream with its kind profile (charts/userstream/ci/kind-values.yaml).
- Airflow: the chart's API server through ``kubectl port-forward``, driven with its REST API
  (kind_support.AirflowClient: /api/v2, a JWT from /auth/token).
- Cassandra is read as the chart's least-privilege reader role (Secret userstream-cassandra-reader),
  with cqlsh in the K8ssandra Cassandra pod.
- Dead letters are read by a Kafka console consumer in a small pod of the brokers' own image, as a
  KafkaUser this session creates that may only read the dead-letter topic (no KafkaUser of the chart
  may: the stream only writes it, charts/userstream/templates/kafka/users.yaml).

None of this can run without Docker and the image registries; it is exercised by
.github/workflows/e2e.yaml on a hosted runner.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Any

from kind_support import NAMESPACE, REPO, AirflowClient, Cluster, E2EError, wait_for

from userstream.cluster.images import image_tag

IMAGES = ["ingest", "spark", "airflow"]
AIRFLOW_NAMESPACE = "airflow"  # k8s/platform/install.sh: Airflow never shares the data plane's namespace
DEPLOY_TIMEOUT = next(
    line.split("=", 1)[1].strip()
    for line in (REPO / "versions.env").read_text(encoding="utf-8").splitlines()
    if line.startswith("DEPLOY_TIMEOUT=")
)
DAG_ID = "users_ingest"
TASK_ID = "ingest_users"  # dags/users_ingest.py
SETTINGS = "userstream-settings"  # the chart's ConfigMap of USERSTREAM_* settings
READER_SECRET = "userstream-cassandra-reader"  # charts/userstream/templates/cassandra/role-secrets.yaml
CASSANDRA_SELECTOR = "cassandra.datastax.com/cluster=userstream-cassandra"
CHECKS = "userstream-e2e-checks"  # the KafkaUser, its Secret, its consumer groups' prefix and the pod
CHECKS_PROPERTIES = "/tmp/checks.properties"
KAFKA_BIN = "/opt/kafka/bin"  # Strimzi's Kafka image
# Separators of the console consumer's output (Kafka's DefaultMessageFormatter: headers, key separator,
# key, line separator; print.value=false): control characters no header value or key contains.
KEY_SEPARATOR, HEADER_SEPARATOR, LINE_SEPARATOR, NULL_LITERAL = "\x1e", "\x1f", "\x1d", "\x1a"
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def parse_dead_letters(output: str) -> list[tuple[str, str]]:
    """(key, dlq.reason) of each record the console consumer printed with the separators above."""
    letters = []
    for line in output.split(LINE_SEPARATOR):
        if not line.strip():
            continue
        headers_text, separator, key = line.rpartition(KEY_SEPARATOR)
        if not separator:
            raise E2EError(f"a console consumer line without its key separator: {line[:300]!r}")
        headers = {}
        if headers_text != "NO_HEADERS":
            for header in headers_text.split(HEADER_SEPARATOR):
                name, _, value = header.partition(":")
                headers[name] = value
        letters.append(("" if key == NULL_LITERAL else key, headers.get("dlq.reason", "")))
    return letters


def parse_cqlsh_ids(output: str) -> list[uuid.UUID]:
    """The ids of ``SELECT id FROM ...`` as cqlsh prints it, checked against its "(N rows)" line."""
    ids = [uuid.UUID(found) for found in UUID.findall(output)]
    count = re.search(r"\((\d+) rows?\)", output)
    if count is None or int(count.group(1)) != len(ids):
        raise E2EError(f"cqlsh printed {len(ids)} ids, not the row count it reports: {output[-500:]!r}")
    return ids


@dataclass
class KindPlatform:
    cluster: Cluster
    username: str = field(default_factory=lambda: os.environ.get("E2E_AIRFLOW_USERNAME", "admin"))
    password: str = field(default_factory=lambda: os.environ.get("E2E_AIRFLOW_PASSWORD", "admin"))
    forwards: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    client: AirflowClient | None = None

    # --- bring-up ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Nothing runs beside a kind cluster: the data plane is the operators' (install)."""

    def install(self) -> None:
        tag = image_tag("ingest")
        self.cluster.load_images(IMAGES)
        self.cluster.run(
            "env", f"IMAGE_TAG={tag}", "AIRFLOW_LOGS_ACCESS_MODE=ReadWriteOnce",
            f"KUBE_CONTEXT=kind-{self.cluster.name}", "bash", "k8s/platform/install.sh",
        )  # fmt: skip
        self.cluster.helm(
            "upgrade", "--install", "userstream", "charts/userstream",
            "--namespace", NAMESPACE, "--create-namespace",
            "-f", "charts/userstream/ci/kind-values.yaml",
            "--set", f"image.ingest.tag={tag}",
            "--set", f"image.spark.tag={tag}",
            # k8s/kind-config.yaml has two workers: the journey asserts one executor on each
            "--set", "streaming.executor.antiAffinity=required",
            "--wait", "--timeout", DEPLOY_TIMEOUT,
        )  # fmt: skip
        self.cluster.wait_condition("kafka/userstream-kafka", "Ready", 900)
        self.cluster.wait_condition("clusters.postgresql.cnpg.io/userstream-staging", "Ready", 900)
        self.cluster.wait_condition("cassandradatacenter/dc1", "Ready", 1200)
        self.cluster.wait_condition("k8ssandracluster/userstream-cassandra", "CassandraInitialized", 600)
        self.start_checks()
        self.connect_airflow()

    def teardown(self) -> None:
        """Close the port-forward and remove what this session added beside the chart. The cluster
        itself goes with the `cluster` fixture (or stays, with the releases, with --keep-cluster)."""
        self.forwards.close()
        for kind in ("pod", "kafkauser"):
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                self.cluster.kubectl(
                    "delete", kind, CHECKS, "-n", NAMESPACE, "--ignore-not-found", "--wait=false", timeout=120
                )

    @property
    def settings(self) -> dict[str, str]:
        """The chart's USERSTREAM_* settings (where Kafka and Cassandra are, topic, keyspace, table)."""
        return dict(self.cluster.kubectl_json("get", "configmap", "-n", NAMESPACE, SETTINGS)["data"])

    # --- Airflow -----------------------------------------------------------------------------------
    def connect_airflow(self) -> None:
        self.cluster.kubectl(
            "rollout", "status", "-n", AIRFLOW_NAMESPACE, "deployment/airflow-api-server", "--timeout=600s",
            timeout=660,
        )  # fmt: skip
        port = self.forwards.enter_context(
            self.cluster.port_forward("svc/airflow-api-server", 8080, namespace=AIRFLOW_NAMESPACE)
        )
        client = wait_for(
            "Airflow's API to issue a token",
            lambda: AirflowClient(f"http://127.0.0.1:{port}", self.username, self.password),
            timeout_s=300,
        )
        wait_for(f"Airflow to parse dags/{DAG_ID}.py", lambda: client.find_dag(DAG_ID), 300)
        errors = client.import_errors()
        if errors:
            raise E2EError(f"Airflow could not import the DAGs: {json.dumps(errors)[:2000]}")
        client.unpause(DAG_ID)
        self.client = client

    @property
    def airflow(self) -> AirflowClient:
        if self.client is None:
            raise E2EError("Airflow is not connected: install() did not finish")
        return self.client

    def run_dag(self, records: int, seed: int) -> str:
        """Trigger users_ingest through the REST API, wait for the run, return its task's log."""
        airflow = self.airflow
        run_id = airflow.trigger(DAG_ID, {"source": "synthetic", "records": records, "seed": str(seed)})

        def finished() -> str | None:
            state = airflow.run_state(DAG_ID, run_id)
            return state if state in {"success", "failed"} else None

        state = wait_for(
            f"DAG run {run_id} of {DAG_ID} (seed {seed})", finished, timeout_s=1200, interval_s=5
        )
        try:
            log = airflow.task_log(DAG_ID, run_id, TASK_ID)
        except E2EError as exc:
            log = f"(no task log: {exc})"
        if state != "success":
            raise E2EError(
                f"{DAG_ID} run {run_id} (seed {seed}) {state}: tasks {airflow.task_states(DAG_ID, run_id)}"
                f"\n{log[-4000:]}"
            )
        return log

    # --- reading what landed -------------------------------------------------------------------------
    def stored_ids(self) -> list[uuid.UUID]:
        """``SELECT id`` with cqlsh in the Cassandra pod, as the reader role, to the pod's own address
        (the chart's NetworkPolicy lets Cassandra pods reach each other on every port)."""
        settings = self.settings
        found = self.cluster.kubectl_json("get", "pods", "-n", NAMESPACE, "-l", CASSANDRA_SELECTOR)["items"]
        pods = [
            p for p in found if p.get("status", {}).get("phase") == "Running" and p["status"].get("podIP")
        ]
        if not pods:
            raise E2EError(f"no running Cassandra pod ({CASSANDRA_SELECTOR})")
        pod = pods[0]
        table = f"{settings['USERSTREAM_CASSANDRA_KEYSPACE']}.{settings['USERSTREAM_CASSANDRA_TABLE']}"
        output = self.cluster.kubectl(
            "exec", "-n", NAMESPACE, pod["metadata"]["name"], "-c", "cassandra", "--",
            "cqlsh", pod["status"]["podIP"], settings["USERSTREAM_CASSANDRA_PORT"],
            "-u", self.cluster.secret_value(READER_SECRET, "username"),
            "-p", self.cluster.secret_value(READER_SECRET, "password"),
            "--request-timeout=120",
            "-e", f"SELECT id FROM {table};",
            timeout=300,
        )  # fmt: skip
        return parse_cqlsh_ids(output)

    def start_checks(self) -> None:
        """The KafkaUser that may read the dead-letter topic and a pod of the brokers' image that
        speaks to Kafka as that user. Labelled as a userstream client, the one kind of pod the
        listener's NetworkPolicy (the Kafka resource's networkPolicyPeers) admits."""
        settings = self.settings
        kafka = self.cluster.kubectl_json("get", "kafka", "-n", NAMESPACE)["items"]
        if len(kafka) != 1:
            raise E2EError(f"expected one Kafka resource in {NAMESPACE}, found {len(kafka)}")
        kafka_name = kafka[0]["metadata"]["name"]
        user = {
            "apiVersion": "kafka.strimzi.io/v1",
            "kind": "KafkaUser",
            "metadata": {
                "name": CHECKS,
                "namespace": NAMESPACE,
                "labels": {"strimzi.io/cluster": kafka_name},
            },
            "spec": {
                "authentication": {"type": "scram-sha-512"},
                "authorization": {
                    "type": "simple",
                    "acls": [
                        {
                            "resource": {
                                "type": "topic",
                                "name": settings["USERSTREAM_KAFKA_DLQ_TOPIC"],
                                "patternType": "literal",
                            },
                            "operations": ["Read", "Describe"],
                        },
                        {
                            "resource": {"type": "group", "name": CHECKS, "patternType": "prefix"},
                            "operations": ["Read"],
                        },
                    ],
                },
            },
        }
        self.cluster.kubectl_stdin(json.dumps(user), "apply", "-f", "-")
        self.cluster.wait_condition(f"kafkauser/{CHECKS}", "Ready", 300)

        broker_selector = f"strimzi.io/cluster={kafka_name},strimzi.io/broker-role=true"
        brokers = self.cluster.kubectl_json("get", "pods", "-n", NAMESPACE, "-l", broker_selector)["items"]
        if not brokers:
            raise E2EError(f"no broker pod of Kafka {kafka_name}")
        image = next(c["image"] for c in brokers[0]["spec"]["containers"] if c["name"] == "kafka")
        protocol = settings["USERSTREAM_KAFKA_SECURITY_PROTOCOL"]
        properties = [
            f"security.protocol={protocol}",
            f"sasl.mechanism={settings['USERSTREAM_KAFKA_SASL_MECHANISM']}",
            "enable.auto.commit=false",
        ]
        volumes: list[dict[str, Any]] = []
        mounts: list[dict[str, Any]] = []
        if protocol == "SASL_SSL":
            # Strimzi's cluster CA (Secret <kafka>-cluster-ca-cert, key ca.crt), as the chart's clients
            # trust it; Kafka clients read a PEM trust store since Kafka 2.7 (KIP-651)
            properties += ["ssl.truststore.type=PEM", "ssl.truststore.location=/etc/kafka-ca/ca.crt"]
            volumes.append({"name": "kafka-ca", "secret": {"secretName": f"{kafka_name}-cluster-ca-cert"}})
            mounts.append({"name": "kafka-ca", "mountPath": "/etc/kafka-ca", "readOnly": True})
        # the password stays in the Secret: the pod writes the client properties from its environment
        script = (
            '{ printf "%s\\n" "$CLIENT_PROPERTIES"; printf "sasl.jaas.config=%s\\n" "$SASL_JAAS_CONFIG"; }'
            f" > {CHECKS_PROPERTIES} || exit 1; trap 'exit 0' TERM; sleep infinity & wait"
        )
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": CHECKS,
                "namespace": NAMESPACE,
                "labels": {
                    "app.kubernetes.io/part-of": "userstream",
                    "app.kubernetes.io/component": "e2e-checks",
                },
            },
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [
                    {
                        "name": "checks",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["/bin/bash", "-c", script],
                        "env": [
                            {"name": "CLIENT_PROPERTIES", "value": "\n".join(properties)},
                            {
                                "name": "SASL_JAAS_CONFIG",
                                "valueFrom": {"secretKeyRef": {"name": CHECKS, "key": "sasl.jaas.config"}},
                            },
                        ],
                        "volumeMounts": mounts,
                        "resources": {
                            "requests": {"cpu": "50m", "memory": "256Mi"},
                            "limits": {"memory": "512Mi"},
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
                "volumes": volumes,
            },
        }
        # a pod's spec is immutable: one left by an earlier session (--keep-cluster) is replaced
        self.cluster.kubectl("delete", "pod", CHECKS, "-n", NAMESPACE, "--ignore-not-found", timeout=180)
        self.cluster.kubectl_stdin(json.dumps(pod), "create", "-f", "-")
        self.cluster.wait_condition(f"pod/{CHECKS}", "Ready", 300)

    def checks(self, *command: str, timeout: float = 300) -> str:
        return self.cluster.kubectl("exec", "-n", NAMESPACE, CHECKS, "--", *command, timeout=timeout)

    def dead_letter_count(self, topic: str, bootstrap: str) -> int:
        """Records on the topic now: latest minus earliest offset, summed over its partitions."""

        def offsets(time: str) -> int:
            output = self.checks(
                f"{KAFKA_BIN}/kafka-get-offsets.sh", "--bootstrap-server", bootstrap,
                "--command-config", CHECKS_PROPERTIES, "--topic", topic, "--time", time,
            )  # fmt: skip
            # one line per partition: <topic>:<partition>:<offset>
            lines = [line for line in output.splitlines() if line.startswith(f"{topic}:")]
            return sum(int(line.rsplit(":", 1)[1]) for line in lines)

        return offsets("-1") - offsets("-2")

    def dead_letters(self) -> list[tuple[str, str]]:
        """(key, reason) of every record on the dead-letter topic: as many records as its offsets say
        it holds, read from the beginning by a consumer group of its own."""
        settings = self.settings
        topic = settings["USERSTREAM_KAFKA_DLQ_TOPIC"]
        bootstrap = settings["USERSTREAM_KAFKA_BOOTSTRAP_SERVERS"]
        total = self.dead_letter_count(topic, bootstrap)
        if total == 0:
            return []
        properties = {
            "print.headers": "true",
            "print.key": "true",
            "print.value": "false",
            "key.separator": KEY_SEPARATOR,
            "headers.separator": HEADER_SEPARATOR,
            "line.separator": LINE_SEPARATOR,
            "null.literal": NULL_LITERAL,
        }
        # Kafka 4.3 (versions.env KAFKA_VERSION) tools: --formatter-property and --command-config
        # (the older --property and --consumer.config are deprecated); --timeout-ms ends the read
        # without an error (ConsoleConsumer.process) should fewer records arrive than counted
        output = self.checks(
            f"{KAFKA_BIN}/kafka-console-consumer.sh", "--bootstrap-server", bootstrap,
            "--command-config", CHECKS_PROPERTIES, "--topic", topic, "--from-beginning",
            "--group", f"{CHECKS}-{uuid.uuid4().hex}", "--max-messages", str(total), "--timeout-ms", "60000",
            *(arg for item in properties.items() for arg in ("--formatter-property", "=".join(item))),
        )  # fmt: skip
        letters = parse_dead_letters(output)
        if len(letters) != total:
            raise E2EError(f"read {len(letters)} of the {total} records on {topic}")
        return letters

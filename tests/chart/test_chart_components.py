"""What each component of charts/userstream renders, asserted on paths (one class per component)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from chart_helpers import CHART, VERSIONS, by_kind, jpath, one, render_chart, render_error

pytestmark = pytest.mark.chart

KIND_VALUES = CHART / "ci" / "kind-values.yaml"

# The smallest external-mode values (tests/chart/test_chart_external.py covers that mode).
EXTERNAL_KAFKA = {
    "enabled": False,
    "external": {
        "bootstrapServers": "k1:9093,k2:9093",
        "users": {"ingest": {"secretName": "kafka-ingest"}, "stream": {"secretName": "kafka-stream"}},
    },
}
EXTERNAL_CASSANDRA = {
    "enabled": False,
    "external": {
        "contactPoints": "c1,c2",
        "localDatacenter": "dc1",
        "adminSecret": {"name": "cass-admin"},
        "writerSecret": {"name": "cass-writer"},
        "readerSecret": {"name": "cass-reader"},
    },
}


class TestSettingsConfigMap:
    def _data(self, values: dict | None = None) -> dict[str, str]:
        docs = render_chart(values, show_only=["templates/settings-configmap.yaml"])
        return one(docs, "ConfigMap", "userstream-settings")["data"]

    def test_every_key_is_a_userstream_setting(self) -> None:
        from userstream.settings import ENV_PREFIX, Settings

        fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
        data = self._data()
        assert set(data) <= fields, f"not settings fields: {sorted(set(data) - fields)}"

    def test_no_secret_in_the_configmap(self) -> None:
        for key in self._data():
            assert not re.search("PASSWORD|DSN|USERNAME", key), key

    def test_settings_load_from_the_configmap(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The ConfigMap plus the Secret-backed variables give valid settings for the ingestion."""
        from userstream.settings import load_settings

        for key, value in self._data().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("USERSTREAM_KAFKA_USERNAME", "userstream-ingest")
        monkeypatch.setenv("USERSTREAM_KAFKA_PASSWORD", "from-a-secret")
        settings = load_settings()
        assert settings.kafka_bootstrap_servers == ["userstream-kafka-kafka-bootstrap.userstream.svc:9093"]
        assert settings.kafka_security_protocol == "SASL_SSL"
        assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
        assert str(settings.kafka_ssl_cafile) == "/etc/userstream/kafka-ca/ca.crt"
        assert settings.cassandra_contact_points == ["userstream-cassandra-dc1-service.userstream.svc"]
        assert settings.replication == {"class": "NetworkTopologyStrategy", "dc1": "3"}
        assert settings.checkpoint_location == "/var/lib/userstream/checkpoints/users_stream"

    def test_plaintext_listener(self) -> None:
        data = self._data({"kafka": {"listener": {"tls": False}}})
        assert data["USERSTREAM_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert data["USERSTREAM_KAFKA_BOOTSTRAP_SERVERS"].endswith(":9092")
        assert "USERSTREAM_KAFKA_SSL_CAFILE" not in data

    def test_replication_follows_the_datacenter(self) -> None:
        data = self._data({"cassandra": {"datacenter": "east", "size": 5, "replicationFactor": 5}})
        assert data["USERSTREAM_CASSANDRA_REPLICATION"] == "NetworkTopologyStrategy:east=5"
        assert data["USERSTREAM_CASSANDRA_LOCAL_DC"] == "east"
        assert data["USERSTREAM_CASSANDRA_CONTACT_POINTS"].startswith("userstream-cassandra-east-service.")

    def test_extra_env(self) -> None:
        assert (
            self._data({"settings": {"extraEnv": {"USERSTREAM_SYNTHETIC_SEED": 7}}})[
                "USERSTREAM_SYNTHETIC_SEED"
            ]
            == "7"
        )

    def test_external_services(self) -> None:
        data = self._data({"kafka": EXTERNAL_KAFKA, "cassandra": EXTERNAL_CASSANDRA})
        assert data["USERSTREAM_KAFKA_BOOTSTRAP_SERVERS"] == "k1:9093,k2:9093"
        assert data["USERSTREAM_CASSANDRA_CONTACT_POINTS"] == "c1,c2"


class TestKafka:
    def test_kraft_cluster(self) -> None:
        docs = render_chart(show_only=["templates/kafka/kafka.yaml"])
        kafka = one(docs, "Kafka", "userstream-kafka")
        assert kafka["apiVersion"] == "kafka.strimzi.io/v1"
        assert jpath(kafka, "spec.kafka.version") == VERSIONS["KAFKA_VERSION"]
        assert "zookeeper" not in kafka["spec"]
        listener = jpath(kafka, "spec.kafka.listeners.0")
        assert listener["authentication"] == {"type": "scram-sha-512"}
        assert (listener["port"], listener["tls"]) == (9093, True)
        assert jpath(kafka, "spec.kafka.authorization.type") == "simple"
        assert jpath(kafka, "spec.kafka.config")["auto.create.topics.enable"] is False
        pool = one(docs, "KafkaNodePool")
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == "userstream-kafka"
        assert sorted(pool["spec"]["roles"]) == ["broker", "controller"]
        assert pool["spec"]["replicas"] == 3

    def test_single_node_replication(self) -> None:
        docs = render_chart(values_files=[KIND_VALUES], show_only=["templates/kafka/kafka.yaml"])
        config = jpath(one(docs, "Kafka"), "spec.kafka.config")
        assert config["offsets.topic.replication.factor"] == 1
        assert config["min.insync.replicas"] == 1

    def test_listener_admits_only_userstream_clients(self) -> None:
        kafka = one(render_chart(show_only=["templates/kafka/kafka.yaml"]), "Kafka")
        peers = jpath(kafka, "spec.kafka.listeners.0.networkPolicyPeers")
        assert peers[0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/part-of": "userstream"}

    def test_topics(self) -> None:
        topics = by_kind(render_chart(show_only=["templates/kafka/topics.yaml"]), "KafkaTopic")
        by_name = {t["spec"]["topicName"]: t for t in topics}
        assert set(by_name) == {"users_created", "users_created.dlq"}
        for topic in topics:
            assert re.fullmatch(r"[a-z0-9-]+", topic["metadata"]["name"])
            assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "userstream-kafka"
            assert topic["spec"]["replicas"] == 3

    def test_users_get_least_privilege(self) -> None:
        users = {u["metadata"]["name"]: u for u in render_chart(show_only=["templates/kafka/users.yaml"])}
        assert set(users) == {"userstream-ingest", "userstream-stream", "userstream-health"}
        for user in users.values():
            assert user["spec"]["authentication"] == {"type": "scram-sha-512"}

        def acls(name: str) -> set[tuple[str, str, str, str]]:
            return {
                (
                    a["resource"]["type"],
                    a["resource"]["name"],
                    a["resource"].get("patternType", "literal"),
                    op,
                )
                for a in users[name]["spec"]["authorization"]["acls"]
                for op in a["operations"]
            }

        assert acls("userstream-ingest") == {
            ("topic", "users_created", "literal", "Write"),
            ("topic", "users_created", "literal", "Describe"),
        }
        assert acls("userstream-stream") == {
            ("topic", "users_created", "literal", "Read"),
            ("topic", "users_created", "literal", "Describe"),
            ("group", "spark-kafka-source", "prefix", "Read"),
            ("group", "userstream-stream-progress", "literal", "Read"),
            ("topic", "users_created.dlq", "literal", "Write"),
            ("topic", "users_created.dlq", "literal", "Describe"),
        }
        assert acls("userstream-health") == {
            ("topic", "users_created", "literal", "Describe"),
            ("group", "userstream-stream-progress", "literal", "Describe"),
        }

    def test_disabled(self) -> None:
        docs = render_chart({"kafka": EXTERNAL_KAFKA})
        assert not [d for d in docs if d["apiVersion"].startswith("kafka.strimzi.io/")]


class TestCassandra:
    def test_k8ssandra_cluster(self) -> None:
        docs = render_chart(show_only=["templates/cassandra/k8ssandracluster.yaml"])
        cluster = one(docs, "K8ssandraCluster", "userstream-cassandra")
        assert cluster["apiVersion"] == "k8ssandra.io/v1alpha1"
        assert cluster["spec"]["auth"] is True
        assert jpath(cluster, "spec.cassandra.serverVersion") == VERSIONS["CASSANDRA_VERSION"]
        assert re.fullmatch(r"5\.0\.\d+", VERSIONS["CASSANDRA_VERSION"])
        dc = jpath(cluster, "spec.cassandra.datacenters.0")
        assert (dc["metadata"]["name"], dc["size"]) == ("dc1", 3)

    def test_disabled(self) -> None:
        docs = render_chart({"cassandra": EXTERNAL_CASSANDRA})
        assert not by_kind(docs, "K8ssandraCluster")


class TestPostgres:
    def test_cloudnative_pg_cluster(self) -> None:
        docs = render_chart(show_only=["templates/postgres/cluster.yaml"])
        cluster = one(docs, "Cluster", "userstream-staging")
        assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
        assert jpath(cluster, "spec.bootstrap.initdb") == {"database": "userstream", "owner": "userstream"}
        image = cluster["spec"]["imageName"]
        assert image == VERSIONS["POSTGRES_IMAGE"]
        # a full version and OS variant, not the deprecated rolling major tag (`:18`, bullseye based)
        tag = image.rsplit(":", 1)[1]
        assert tag.startswith(VERSIONS["POSTGRES_MAJOR"] + ".")
        assert re.fullmatch(r"\d+\.\d+-(system|minimal|standard)-[a-z]+", tag), tag

    def test_rolling_major_tag_is_refused(self) -> None:
        error = render_error({"postgres": {"imageName": "ghcr.io/cloudnative-pg/postgresql:18"}})
        assert "imageName" in error

    def test_disabled(self) -> None:
        assert (
            render_chart(
                {"postgres": {"enabled": False, "external": {"dsnSecret": {"name": "staging-dsn"}}}},
                show_only=["templates/postgres/cluster.yaml"],
            )
            == []
        )


class TestStreaming:
    def _app(self, values: dict | None = None, files: tuple[Path, ...] = ()) -> dict:
        docs = render_chart(
            values, values_files=files, show_only=["templates/streaming/sparkapplication.yaml"]
        )
        return one(docs, "SparkApplication", "userstream-stream")

    def test_application(self) -> None:
        app = self._app()
        spec = app["spec"]
        assert (spec["type"], spec["mode"]) == ("Python", "cluster")
        assert spec["mainApplicationFile"] == "local:///opt/userstream/spark-apps/users_stream.py"
        assert spec["sparkVersion"] == VERSIONS["SPARK_VERSION"]
        assert spec["image"] == "userstream-spark:0.1.0"
        # an unbounded stream: restarted after a clean exit and after any number of failures, with
        # the operator's linear back-off (spark-operator v2.5.2 pkg/util/sparkapplication.go)
        assert spec["restartPolicy"]["type"] == "Always"
        assert "onFailureRetries" not in spec["restartPolicy"]
        assert spec["restartPolicy"]["onFailureRetryInterval"] >= 10
        assert spec["restartPolicy"]["onSubmissionFailureRetryInterval"] >= 10
        assert spec["executor"]["instances"] >= 2
        assert spec["driver"]["serviceAccount"] == "userstream-spark"
        for role in ("driver", "executor"):
            assert {"cores", "memory", "coreLimit"} <= set(spec[role])

    def test_images_from_values(self) -> None:
        app = self._app(
            {"image": {"spark": {"repository": "reg/spark", "tag": "abc", "pullPolicy": "Never"}}}
        )
        assert (app["spec"]["image"], app["spec"]["imagePullPolicy"]) == ("reg/spark:abc", "Never")

    def test_executors_spread_over_nodes(self) -> None:
        anti = jpath(self._app(), "spec.executor.affinity.podAntiAffinity")
        term = anti["requiredDuringSchedulingIgnoredDuringExecution"][0]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert term["labelSelector"]["matchLabels"] == {
            "sparkoperator.k8s.io/app-name": "userstream-stream",
            "spark-role": "executor",
        }
        preferred = jpath(self._app(files=(KIND_VALUES,)), "spec.executor.affinity.podAntiAffinity")
        assert "preferredDuringSchedulingIgnoredDuringExecution" in preferred

    def test_checkpoint_on_a_claim(self) -> None:
        docs = render_chart(show_only=["templates/streaming/checkpoint-pvc.yaml"])
        claim = one(docs, "PersistentVolumeClaim", "userstream-stream-checkpoints")
        # the defaults ask for what every StorageClass provides (kind's local-path has no RWX)
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        app = self._app()
        volumes = {v["name"]: v for v in app["spec"]["volumes"]}
        assert volumes["checkpoint"]["persistentVolumeClaim"]["claimName"] == "userstream-stream-checkpoints"
        mounts = {m["name"]: m["mountPath"] for m in app["spec"]["driver"]["volumeMounts"]}
        assert mounts["checkpoint"] == "/var/lib/userstream/checkpoints"
        assert "checkpoint" not in {m["name"] for m in app["spec"]["executor"]["volumeMounts"]}
        cloud = self._app(files=(CHART / "ci" / "cloud-values.yaml",))
        for role in ("driver", "executor"):
            assert "checkpoint" in {m["name"] for m in cloud["spec"][role]["volumeMounts"]}, role
            assert mounts["tmp"] == "/tmp"

    def test_kind_profile_mounts_the_checkpoint_in_the_driver_only(self) -> None:
        app = self._app(files=(KIND_VALUES,))
        assert "checkpoint" in {m["name"] for m in app["spec"]["driver"]["volumeMounts"]}
        assert "checkpoint" not in {m["name"] for m in app["spec"]["executor"]["volumeMounts"]}

    def test_env_from_configmap_and_secrets(self) -> None:
        app = self._app()
        for role in ("driver", "executor"):
            pod = app["spec"][role]
            assert pod["envFrom"] == [{"configMapRef": {"name": "userstream-settings"}}]
            env = {e["name"]: e for e in pod["env"]}
            assert env["USERSTREAM_KAFKA_USERNAME"]["value"] == "userstream-stream"
            assert env["USERSTREAM_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
                "name": "userstream-stream",
                "key": "password",
            }
            # the stream writes as the least-privilege writer role, never as the superuser
            assert env["USERSTREAM_CASSANDRA_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
                "name": "userstream-cassandra-writer",
                "key": "password",
            }
            assert env["USERSTREAM_CASSANDRA_USERNAME"]["valueFrom"]["secretKeyRef"] == {
                "name": "userstream-cassandra-writer",
                "key": "username",
            }
        ca = {v["name"]: v for v in app["spec"]["volumes"]}["kafka-ca"]
        assert ca["secret"]["secretName"] == "userstream-kafka-cluster-ca-cert"

    def test_prometheus_metrics(self) -> None:
        monitoring = self._app()["spec"]["monitoring"]
        assert monitoring["exposeDriverMetrics"] is True
        assert monitoring["prometheus"]["port"] == 8090
        assert self._app({"streaming": {"metrics": {"enabled": False}}})["spec"]["monitoring"] == {
            "exposeDriverMetrics": False,
            "exposeExecutorMetrics": False,
        }

    def test_metrics_config_is_mounted_wherever_spark_is_told_to_load_it(self) -> None:
        """spark-operator v2.5.2 sets spark.metrics.conf for driver and executors alike but mounts its
        own ConfigMap only where metrics are exposed (the driver): the chart's file, named by
        monitoring.metricsPropertiesFile, is mounted in both roles."""
        docs = render_chart()
        app = one(docs, "SparkApplication", "userstream-stream")
        path = app["spec"]["monitoring"]["metricsPropertiesFile"]
        folder, _, name = path.rpartition("/")
        volume = {v["name"]: v for v in app["spec"]["volumes"]}["spark-metrics"]
        config = one(docs, "ConfigMap", volume["configMap"]["name"])
        assert "*.sink.jmx.class" in config["data"][name]
        assert app["spec"]["monitoring"]["exposeExecutorMetrics"] is False
        for role in ("driver", "executor"):
            mounts = {m["name"]: m["mountPath"] for m in app["spec"][role]["volumeMounts"]}
            assert mounts["spark-metrics"] == folder, role
        off = render_chart({"streaming": {"metrics": {"enabled": False}}})
        assert not [d for d in by_kind(off, "ConfigMap") if d["metadata"]["name"].endswith("-metrics")]

    def test_disabled(self) -> None:
        docs = render_chart({"streaming": {"enabled": False}})
        assert not by_kind(docs, "SparkApplication")
        assert not by_kind(docs, "PersistentVolumeClaim")


class TestMigrateJob:
    def _job(self) -> dict:
        return one(render_chart(show_only=["templates/migrate/cassandra-migrate-job.yaml"]), "Job")

    def test_helm_hook(self) -> None:
        annotations = self._job()["metadata"]["annotations"]
        assert set(annotations["helm.sh/hook"].split(",")) == {"post-install", "post-upgrade"}
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]

    def test_runs_the_migration_with_the_ingest_image(self) -> None:
        pod = self._job()["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["image"] == "userstream-ingest:0.1.0"
        assert container["args"] == ["cassandra", "migrate", "--wait-seconds", "1500"]
        assert pod["serviceAccountName"] == "userstream-ingest"
        assert pod["automountServiceAccountToken"] is False
        env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
        assert env["USERSTREAM_CASSANDRA_USERNAME"] == {
            "name": "userstream-cassandra-superuser",
            "key": "username",
        }
        # the superuser creates the clients' roles, whose names and passwords come from their Secrets
        assert env["USERSTREAM_CASSANDRA_WRITER_ROLE"] == {
            "name": "userstream-cassandra-writer",
            "key": "username",
        }
        assert env["USERSTREAM_CASSANDRA_WRITER_PASSWORD"] == {
            "name": "userstream-cassandra-writer",
            "key": "password",
        }
        assert env["USERSTREAM_CASSANDRA_READER_ROLE"] == {
            "name": "userstream-cassandra-reader",
            "key": "username",
        }

    def test_only_the_migration_uses_the_superuser(self) -> None:
        users = set()
        for doc in render_chart():
            text = str(doc)
            if "userstream-cassandra-superuser" in text:
                users.add(f"{doc['kind']}/{doc['metadata']['name']}")
        assert users == {"Job/userstream-cassandra-migrate"}

    def test_the_wait_for_cql_and_the_job_end_inside_helms_timeout(self) -> None:
        """One timeout everywhere: Helm waits for this hook for DEPLOY_TIMEOUT (versions.env)."""
        job = self._job()
        wait = int(job["spec"]["template"]["spec"]["containers"][0]["args"][-1])
        deadline = job["spec"]["activeDeadlineSeconds"]
        helm_timeout = VERSIONS["DEPLOY_TIMEOUT"]
        assert helm_timeout.endswith("m")
        assert wait < deadline < int(helm_timeout[:-1]) * 60
        assert job["spec"]["backoffLimit"] <= 2, "the wait is explicit, not Job back-off"

    def test_role_secrets_are_generated_not_configured(self) -> None:
        show = ["templates/cassandra/role-secrets.yaml"]
        first, second = (
            render_chart(show_only=show),
            render_chart({"nameOverride": ""}, show_only=show),
        )
        assert {d["metadata"]["name"] for d in first} == {
            "userstream-cassandra-writer",
            "userstream-cassandra-reader",
        }
        import base64

        for a, b in zip(first, second, strict=True):
            assert a["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
            assert len(base64.b64decode(a["data"]["password"])) >= 32
            assert a["data"]["password"] != b["data"]["password"], "a random password, not a value"
        roles = {base64.b64decode(d["data"]["username"]).decode() for d in first}
        assert roles == {"userstream_writer", "userstream_reader"}

    def test_disabled(self) -> None:
        docs = render_chart(
            {"migrate": {"enabled": False}}, show_only=["templates/migrate/cassandra-migrate-job.yaml"]
        )
        assert docs == []


class TestRbac:
    def test_service_accounts(self) -> None:
        docs = render_chart(show_only=["templates/rbac/serviceaccounts.yaml"])
        assert one(docs, "ServiceAccount", "userstream-ingest")["automountServiceAccountToken"] is False
        assert one(docs, "ServiceAccount", "userstream-spark")["automountServiceAccountToken"] is True

    def test_ingest_has_no_api_rights(self) -> None:
        for binding in by_kind(render_chart(), "RoleBinding"):
            assert "userstream-ingest" not in {s["name"] for s in binding["subjects"]}

    def test_spark_driver_role(self) -> None:
        docs = render_chart(show_only=["templates/rbac/spark-driver-role.yaml"])
        rules = one(docs, "Role", "userstream-spark-driver")["rules"]
        resources = {r for rule in rules for r in rule["resources"]}
        assert resources == {"pods", "services", "configmaps", "persistentvolumeclaims"}
        assert all(rule["apiGroups"] == [""] for rule in rules)
        assert not any("*" in rule["verbs"] for rule in rules)
        binding = one(docs, "RoleBinding")
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "userstream-spark", "namespace": "userstream"}
        ]

    def test_airflow_pod_launcher(self) -> None:
        docs = render_chart(show_only=["templates/rbac/airflow-pod-launcher.yaml"])
        role = one(docs, "Role", "userstream-airflow-pod-launcher")
        grants = {
            (g, r): set(rule["verbs"])
            for rule in role["rules"]
            for g in rule["apiGroups"]
            for r in rule["resources"]
        }
        assert grants == {
            ("", "pods"): {"create", "get", "list", "watch", "delete", "patch"},
            ("", "pods/log"): {"get"},
            ("", "events"): {"list"},
            ("sparkoperator.k8s.io", "sparkapplications"): {"get", "list"},
        }
        subjects = one(docs, "RoleBinding")["subjects"]
        assert {s["name"] for s in subjects} == {"airflow-worker", "airflow-scheduler", "airflow-triggerer"}
        # Airflow runs in a namespace of its own, never beside the data plane's Secrets
        assert {s["namespace"] for s in subjects} == {"airflow"}

    def test_pods_airflow_creates_here_are_limited_by_an_admission_policy(self) -> None:
        docs = render_chart(show_only=["templates/rbac/airflow-pod-policy.yaml"])
        policy = one(docs, "ValidatingAdmissionPolicy")
        binding = one(docs, "ValidatingAdmissionPolicyBinding")
        assert binding["spec"]["policyName"] == policy["metadata"]["name"]
        assert binding["spec"]["validationActions"] == ["Deny"]
        assert binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "userstream"
        }
        condition = policy["spec"]["matchConditions"][0]["expression"]
        for account in ("airflow-worker", "airflow-scheduler", "airflow-triggerer"):
            assert f"system:serviceaccount:airflow:{account}" in condition
        allowed = next(v for v in policy["spec"]["variables"] if v["name"] == "allowedSecrets")
        assert allowed["expression"] == (
            '["userstream-ingest","userstream-health","userstream-kafka-cluster-ca-cert",'
            '"userstream-staging-app"]'
        )
        assert "superuser" not in str(policy)
        assert (
            render_chart(
                {"airflow": {"podPolicy": {"enabled": False}}},
                show_only=["templates/rbac/airflow-pod-policy.yaml"],
            )
            == []
        )

    def test_pod_exec_only_on_request(self) -> None:
        docs = render_chart(
            {"airflow": {"allowPodExec": True}}, show_only=["templates/rbac/airflow-pod-launcher.yaml"]
        )
        assert "pods/exec" in {r for rule in one(docs, "Role")["rules"] for r in rule["resources"]}


class TestNetworkPolicies:
    def _policies(self, values: dict | None = None) -> dict[str, dict]:
        docs = render_chart(values, show_only=["templates/network/networkpolicies.yaml"])
        return {d["metadata"]["name"]: d for d in docs}

    def test_default_deny_ingress(self) -> None:
        deny = self._policies()["userstream-default-deny-ingress"]
        assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}

    def test_cassandra_admits_clients_on_cql_only(self) -> None:
        policy = self._policies()["userstream-cassandra"]
        assert policy["spec"]["podSelector"]["matchLabels"] == {
            "cassandra.datastax.com/cluster": "userstream-cassandra"
        }
        client_rule = policy["spec"]["ingress"][0]
        assert client_rule["ports"] == [{"protocol": "TCP", "port": 9042}]
        selector = client_rule["from"][0]["podSelector"]
        assert selector["matchLabels"] == {"app.kubernetes.io/part-of": "userstream"}
        operator_rule = policy["spec"]["ingress"][2]
        assert operator_rule["from"][0]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "k8ssandra-operator"
        }

    def test_postgres_admits_clients_and_operator(self) -> None:
        policy = self._policies()["userstream-staging"]
        ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule.get("ports", [])]
        assert set(ports) == {5432, 8000}

    def test_strimzi_operator_reaches_the_broker_ports_it_uses(self) -> None:
        """Strimzi 1.2.0 (KafkaCluster.java): control plane 9090, replication 9091, Kafka agent 8443."""
        policy = self._policies()["userstream-kafka-operator"]
        ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
        assert ports == {9090, 9091, 8443}

    def test_metrics_scrape(self) -> None:
        policy = self._policies()["userstream-stream"]
        scrape = policy["spec"]["ingress"][1]
        assert scrape["ports"] == [{"protocol": "TCP", "port": 8090}]

    def test_no_airflow_policy_here_airflow_has_its_own_namespace(self) -> None:
        assert not [name for name in self._policies() if "airflow" in name]

    def test_disabled(self) -> None:
        assert self._policies({"networkPolicy": {"enabled": False}}) == {}


class TestCheckValues:
    @pytest.mark.parametrize(
        ("values", "message"),
        [
            ({"streaming": {"executor": {"instances": 0}}}, "at least 1 executor"),
            (
                {"cassandra": {"size": 1, "replicationFactor": 3}},
                "replicationFactor (3) is larger than cassandra.size",
            ),
            ({"streaming": {"metrics": {"enabled": True, "port": 0}}}, "needs streaming.metrics.port"),
            ({"kafka": {"dlqTopic": {"name": "users_created"}}}, "must differ"),
            ({"kafka": {"nodePool": {"replicas": 1}}}, "has 3 replicas but kafka.nodePool.replicas is 1"),
            ({"kafka": {"enabled": False}}, "/kafka/external/bootstrapServers"),
            (
                {"streaming": {"checkpoint": {"accessMode": "ReadWriteOnce", "mountInExecutors": True}}},
                "ReadWriteOnce cannot be mounted",
            ),
            (
                {"migrate": {"cqlWaitSeconds": 1800, "activeDeadlineSeconds": 1700}},
                "must be larger than migrate.cqlWaitSeconds",
            ),
        ],
    )
    def test_bad_combinations_fail(self, values: dict, message: str) -> None:
        assert message in render_error(values)


class TestNotes:
    def test_notes_tell_what_to_do_next(self) -> None:
        from chart_helpers import run_helm

        out = run_helm(
            "install", "userstream", str(CHART), "--namespace", "userstream", "--dry-run=client",
        )  # fmt: skip
        notes = out.split("NOTES:", 1)[1]
        assert "kubectl get sparkapplication -n userstream" in notes
        assert "kubectl port-forward svc/airflow-api-server 8080:8080 -n airflow" in notes
        assert "make airflow-ui" in notes
        assert "secret userstream-cassandra-reader" in notes
        assert "superuser" not in notes
        assert "cqlsh" in notes


def test_the_health_check_reads_kafka_as_the_health_user_the_chart_creates() -> None:
    """The health check's Secret (dags/userstream_dags/config.py) is the chart's health KafkaUser."""
    import sys

    sys.path.insert(0, str(CHART.parents[1] / "dags"))
    from userstream.settings import load_settings
    from userstream_dags.config import chart_objects

    users = {d["metadata"]["name"] for d in render_chart() if d["kind"] == "KafkaUser"}
    health = chart_objects(load_settings()).kafka_health_secret
    assert health in users
    assert health.endswith("-health")


@pytest.mark.parametrize("release", ["userstream", "etl", "userstream-b"])
def test_dag_config_derives_the_names_the_chart_renders(release: str) -> None:
    """USERSTREAM_DAG_RELEASE gives the DAGs the names of a chart installed under any release name,
    and the DAGs mount the Kafka CA where the chart's settings say it is."""
    import sys

    import yaml
    from chart_helpers import run_helm

    sys.path.insert(0, str(CHART.parents[1] / "dags"))
    from userstream.settings import load_settings
    from userstream_dags import pods
    from userstream_dags.config import chart_objects

    docs = [d for d in yaml.safe_load_all(run_helm("template", release, str(CHART), "-n", "userstream")) if d]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    objects = chart_objects(load_settings(dag_release=release))
    assert ("ServiceAccount", objects.service_account) in names
    assert ("ConfigMap", objects.settings_configmap) in names
    assert ("KafkaUser", objects.kafka_user_secret) in names
    assert ("KafkaUser", objects.kafka_health_secret) in names
    assert ("SparkApplication", objects.spark_application) in names
    assert ("Cluster", objects.postgres_secret.removesuffix("-app")) in names
    assert ("Kafka", objects.kafka_ca_secret.removesuffix("-cluster-ca-cert")) in names
    settings = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == objects.settings_configmap
    )
    assert settings["data"]["USERSTREAM_KAFKA_SSL_CAFILE"] == str(pods.KAFKA_CA_FILE)


def test_dag_defaults_are_the_charts() -> None:
    """The DAGs' settings default to what the chart deploys. charts/userstream/values.yaml (and the
    ingest image's Dockerfile for the uid, skaffold.yaml for the release) is the source: Helm cannot
    read Python, so the equal defaults of src/userstream/settings.py are held to it here."""
    import yaml

    from userstream.settings import Settings

    dag = Settings()
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    ingest = values["image"]["ingest"]
    assert dag.dag_ingest_image == f"{ingest['repository']}:{ingest['tag']}"
    assert dag.dag_image_pull_policy == ingest["pullPolicy"]
    uid = dag.dag_run_as_user
    assert values["podSecurityContext"] == {"runAsUser": uid, "runAsGroup": uid, "fsGroup": uid}
    dockerfile = (CHART.parents[1] / "images" / "ingest" / "Dockerfile").read_text(encoding="utf-8")
    assert f"\nUSER {uid}:{uid}\n" in dockerfile
    # the Secret keys: the external mode's defaults are the operators' keys (Strimzi's KafkaUser and
    # cluster CA Secrets, CloudNativePG's app Secret)
    kafka = values["kafka"]["external"]
    assert kafka["users"]["ingest"]["passwordKey"] == dag.dag_kafka_password_key
    assert kafka["caSecret"]["key"] == dag.dag_kafka_ca_key
    assert values["postgres"]["external"]["dsnSecret"]["key"] == dag.dag_postgres_dsn_key
    skaffold = yaml.safe_load((CHART.parents[1] / "skaffold.yaml").read_text(encoding="utf-8"))
    release = next(r for r in skaffold["deploy"]["helm"]["releases"] if r["chartPath"] == "charts/userstream")
    assert (release["name"], release["namespace"]) == (dag.dag_release, dag.dag_namespace)

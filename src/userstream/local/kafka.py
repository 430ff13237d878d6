"""Kafka in KRaft mode: one process that is both broker and controller."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

from userstream import access
from userstream.errors import UserstreamError
from userstream.local import artifacts, credentials, processes
from userstream.local.component import Component, NotReady, Port
from userstream.settings import Settings
from userstream.versions import version

LOG4J_CONFIG = Path(__file__).with_name("kafka-log4j2.properties")
NODE_ID = 1


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID, base64url without padding (22 characters)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


def _jaas(module: str, **options: str) -> str:
    """A JAAS configuration line (values are generated URL-safe tokens: nothing to escape)."""
    pairs = " ".join(f'{key}="{value}"' for key, value in options.items())
    return f"{module} required {pairs};"


def render_server_properties(
    *,
    host: str,
    port: int,
    controller_port: int,
    log_dirs: Path,
    admin: str,
    admin_password: str,
    external: tuple[str, int] | None = None,
    node_id: int = NODE_ID,
) -> str:
    """server.properties of a single combined broker+controller with a static quorum.

    Every listener authenticates: LOCAL (loopback) and the optional EXTERNAL one with
    SCRAM-SHA-512, the CONTROLLER listener with PLAIN and a static admin entry: SCRAM credentials
    live in the metadata log that the controller itself serves, so the controller listener takes a
    mechanism that needs no metadata (the layout a Kafka committer gives in KAFKA-15513; the keys
    are Kafka 4.3's ``sasl.mechanism.controller.protocol`` and ``listener.name.<l>.<mech>.sasl.jaas.config``).
    The admin is the broker's own principal on both and the only super user; every other principal
    gets exactly the ACLs of the access definition (StandardAuthorizer, nothing allowed without an
    ACL).
    """
    listeners = [f"LOCAL://{host}:{port}", f"CONTROLLER://{host}:{controller_port}"]
    advertised = [f"LOCAL://{host}:{port}"]
    protocols = ["CONTROLLER:SASL_PLAINTEXT", "LOCAL:SASL_PLAINTEXT"]
    if external is not None:
        listeners.insert(1, f"EXTERNAL://{external[0]}:{external[1]}")
        advertised.append(f"EXTERNAL://{external[0]}:{external[1]}")
        protocols.append("EXTERNAL:SASL_PLAINTEXT")
    scram_login = _jaas(
        "org.apache.kafka.common.security.scram.ScramLoginModule", username=admin, password=admin_password
    )
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": f"{node_id}@{host}:{controller_port}",
        "listeners": ",".join(listeners),
        "advertised.listeners": ",".join(advertised),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "LOCAL",
        "listener.security.protocol.map": ",".join(protocols),
        # authentication: SCRAM-SHA-512 for clients, PLAIN (static admin) for the controller
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": _jaas(
            "org.apache.kafka.common.security.plain.PlainLoginModule",
            username=admin,
            password=admin_password,
            **{f"user_{admin}": admin_password},
        ),
        "listener.name.local.sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.local.scram-sha-512.sasl.jaas.config": scram_login,
        # authorization: KRaft's StandardAuthorizer (org.apache.kafka.metadata.authorizer)
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{admin}",
        "allow.everyone.if.no.acl.found": "false",
    }
    if external is not None:
        settings["listener.name.external.sasl.enabled.mechanisms"] = "SCRAM-SHA-512"
        settings["listener.name.external.scram-sha-512.sasl.jaas.config"] = scram_login
    settings.update(
        {
            "log.dirs": str(log_dirs),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            # one broker: every internal topic has a single replica, and few partitions start faster
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.retention.hours": "24",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
    )
    lines = ["# Generated by `userstream local up`; edits are overwritten.\n"]
    lines.extend(f"{key}={value}\n" for key, value in settings.items())
    return "".join(lines)


SCRAM_ITERATIONS = 8192


def scram_format_argument(name: str, password: str, *, salt: bytes | None = None) -> str:
    """A ``kafka-storage format --add-scram`` value carrying a salted password, not the password.

    Kafka 4.3's ScramParser (apache/kafka, metadata/src/main/java/org/apache/kafka/metadata/storage/
    ScramParser.java) reads ``salt`` and ``saltedpassword`` as standard Base64 and derives the
    stored and server keys itself; the salted password is PBKDF2-HMAC-SHA-512 (RFC 5802 Hi()).
    So the clear password never appears on a command line.
    """
    salt = salt if salt is not None else os.urandom(24)
    salted = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, SCRAM_ITERATIONS)
    return (
        f"SCRAM-SHA-512=[name={name},iterations={SCRAM_ITERATIONS},"
        f'salt="{base64.b64encode(salt).decode()}",saltedpassword="{base64.b64encode(salted).decode()}"]'
    )


def acl_objects(bindings: list[access.AclBinding]) -> list[Any]:
    """kafka-python ACL objects (ALLOW from any host) of the definition's bindings."""
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    resource_types = {
        "topic": ResourceType.TOPIC,
        "group": ResourceType.GROUP,
        "cluster": ResourceType.CLUSTER,
        "transactionalId": ResourceType.TRANSACTIONAL_ID,
    }
    patterns = {"literal": ACLResourcePatternType.LITERAL, "prefix": ACLResourcePatternType.PREFIXED}
    objects = []
    for binding in bindings:
        # "IdempotentWrite" -> IDEMPOTENT_WRITE, "Describe" -> DESCRIBE
        operation = "".join("_" + c if c.isupper() and i else c for i, c in enumerate(binding.operation))
        objects.append(
            ACL(
                principal=f"User:{binding.principal}",
                host="*",
                operation=ACLOperation[operation.upper()],
                permission_type=ACLPermissionType.ALLOW,
                resource_pattern=ResourcePattern(
                    resource_types[binding.resource_type], binding.name, patterns[binding.pattern_type]
                ),
            )
        )
    return objects


class KafkaServer(Component):
    name = "kafka"
    start_timeout_s = 90.0

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.settings.kafka_bootstrap_servers[0].rpartition(":")
        return host, int(port)

    @property
    def address(self) -> str:
        host, port = self.host_port
        return f"{host}:{port}"

    @property
    def version(self) -> str:
        return version("KAFKA_VERSION")

    @property
    def external(self) -> tuple[str, int] | None:
        """The optional extra SASL listener (USERSTREAM_LOCAL_EXTERNAL_ADDRESS), e.g. for pods."""
        address = self.settings.local_external_address
        return (address, self.settings.local_kafka_external_port) if address else None

    def ports(self) -> list[Port]:
        host, port = self.host_port
        ports = [
            Port(host, port, "Kafka", "USERSTREAM_KAFKA_BOOTSTRAP_SERVERS"),
            Port(
                host,
                self.settings.local_kafka_controller_port,
                "the Kafka controller",
                "USERSTREAM_LOCAL_KAFKA_CONTROLLER_PORT",
            ),
        ]
        if self.external:
            ports.append(
                Port(*self.external, "Kafka (external listener)", "USERSTREAM_LOCAL_KAFKA_EXTERNAL_PORT")
            )
        return ports

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def marker(self) -> str:
        return str(self.config_file)

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def classpath(self) -> str:
        folder = artifacts.kafka_artifacts().folder(self.cache_dir)
        return f"{folder}/*"

    def java_command(self, main: str, *args: str) -> list[str]:
        return [
            processes.find_java(),
            "-Xms256m",
            "-Xmx512m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            "-cp",
            self.classpath(),
            main,
            *args,
        ]

    def check_prerequisites(self) -> None:
        host, _ = self.host_port
        if host not in credentials.LOOPBACK:
            raise UserstreamError(
                f"the local stack serves Kafka on this machine, but USERSTREAM_KAFKA_BOOTSTRAP_SERVERS "
                f"starts with {self.address}: use 127.0.0.1:<port>"
            )
        processes.find_java()

    @property
    def auth_marker(self) -> Path:
        """Written once the storage was formatted with the admin's SCRAM credential."""
        return self.home / "scram-admin"

    def credentials(self) -> credentials.LocalCredentials:
        return credentials.ensure(self.state_dir, access.load_definition())

    def admin_settings(self) -> Settings:
        """This stack's settings as its admin (the super user of the local tools)."""
        password = self.credentials().kafka_password(credentials.ADMIN)
        update = credentials.kafka_client_update(credentials.ADMIN, password)
        return self.settings.model_copy(update=update)

    def prepare(self) -> None:
        host, port = self.host_port
        host = "127.0.0.1" if host == "localhost" else host
        self.home.mkdir(parents=True, exist_ok=True)
        found = self.credentials()
        admin_password = found.kafka_password(credentials.ADMIN)
        processes.write_private(
            self.config_file,
            render_server_properties(
                host=host,
                port=port,
                controller_port=self.settings.local_kafka_controller_port,
                log_dirs=self.data_dir,
                admin=credentials.ADMIN,
                admin_password=admin_password,
                external=self.external,
            ),
        )
        if (self.data_dir / "meta.properties").is_file():
            if not self.auth_marker.is_file():
                raise UserstreamError(
                    f"the Kafka storage in {self.data_dir} was formatted before the local stack had "
                    f"authentication, so it holds no admin credential: remove {self.home} (local data "
                    "only) and run `userstream local up` again"
                )
            return
        id_file = self.home / "cluster.id"
        if not id_file.is_file():
            id_file.write_text(new_cluster_id() + "\n", encoding="utf-8")
        cluster_id = id_file.read_text(encoding="utf-8").strip()
        command = self.java_command(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.config_file),
            "--add-scram",
            scram_format_argument(credentials.ADMIN, admin_password),
            "--ignore-formatted",
        )
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise UserstreamError(
                f"formatting the Kafka storage in {self.data_dir} failed:\n"
                f"{(result.stdout + result.stderr).strip()[-2000:]}\n"
                f"likely fix: remove {self.home} (local data only) and run `userstream local up` again"
            )
        self.auth_marker.write_text(credentials.ADMIN + "\n", encoding="utf-8")

    def command(self) -> list[str]:
        return self.java_command("kafka.Kafka", str(self.config_file))

    def admin_client(self, **extra: Any) -> Any:
        from kafka.admin import KafkaAdminClient

        return KafkaAdminClient(
            bootstrap_servers=self.address,
            client_id="userstream-local-admin",
            **self.admin_settings().kafka_client_options(),
            **extra,
        )

    def probe(self) -> str:
        from kafka.errors import KafkaConfigurationError, KafkaError

        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        try:
            admin = self.admin_client(request_timeout_ms=5000, bootstrap_timeout_ms=3000)
        except KafkaConfigurationError as exc:
            raise UserstreamError(f"Kafka client settings rejected: {exc}") from None
        except (KafkaError, OSError, ValueError) as exc:
            raise NotReady(f"{type(exc).__name__}: {exc}") from None
        try:
            admin.list_topics()
            admin.describe_cluster()
        except (KafkaError, OSError) as exc:
            raise NotReady(f"{type(exc).__name__}: {exc}") from None
        finally:
            admin.close()
        return self.version

    def after_ready(self) -> None:
        self.apply_access(self.settings)

    def apply_access(self, names: Settings) -> list[access.AclBinding]:
        """As admin: SCRAM credentials of the definition's users, their ACLs for the topics
        ``names`` uses, and those topics. Idempotent (an existing ACL or topic is left alone)."""
        from kafka.admin import NewTopic, UserScramCredentialUpsertion
        from kafka.errors import TopicAlreadyExistsError

        definition = access.for_settings(names)
        found = self.credentials()
        bindings = access.acl_bindings(definition)
        admin = self.admin_client(request_timeout_ms=30000)
        try:
            upserts = [
                UserScramCredentialUpsertion(
                    access.principal(key),
                    "SCRAM-SHA-512",
                    found.kafka_password(access.principal(key)),
                    iterations=SCRAM_ITERATIONS,
                )
                for key in definition.kafka_users
            ]
            answers = admin.alter_user_scram_credentials(upserts)
            failed = {user: error for user, error in answers.items() if error}
            if failed:
                raise UserstreamError(f"Kafka refused the SCRAM credentials of {failed}")
            result = admin.create_acls(acl_objects(bindings))
            if result.get("failed"):
                raise UserstreamError(f"Kafka refused ACLs: {result['failed']}")
            existing = set(admin.list_topics())
            for topic in (names.kafka_topic, names.kafka_dlq_topic):
                if topic in existing:
                    continue
                new = NewTopic(
                    topic,
                    num_partitions=names.kafka_topic_partitions,
                    replication_factor=names.kafka_topic_replication_factor,
                )
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics([new])
        finally:
            admin.close()
        return bindings

    def likely_fix(self, log_text: str) -> str:
        if "Address already in use" in log_text:
            return (
                "another program holds the Kafka port: stop it or change USERSTREAM_KAFKA_BOOTSTRAP_SERVERS"
            )
        if "Invalid cluster.id" in log_text or "inconsistent" in log_text.lower():
            return f"the storage in {self.data_dir} belongs to another cluster: remove {self.home} and retry"
        if "OutOfMemoryError" in log_text:
            return "the broker ran out of heap (-Xmx512m): free memory or reduce the load"
        return super().likely_fix(log_text)

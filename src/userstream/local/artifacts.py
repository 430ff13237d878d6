"""Jars of the local stack, resolved with Maven from the versions pinned in ``versions.env``.

Each :class:`ArtifactSet` becomes a small pom (packaging ``pom``, only dependencies) that
``mvn dependency:copy-dependencies`` resolves into one folder under ``<cache_dir>/jars/``. A stamp
file in that folder records the pom it came from; as long as the pom is unchanged, the folder is
reused and Maven is not run again. A fetch goes to a temporary folder first and is renamed into
place only when it succeeded, so a broken fetch never leaves a half-filled folder behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from userstream.errors import PrerequisiteError, UserstreamError
from userstream.versions import version

MAVEN_SETTINGS = Path(__file__).with_name("maven-settings.xml")
STAMP_NAME = ".userstream-artifacts.json"
MVN_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Dependency:
    """One Maven coordinate, optionally with ``group:artifact`` exclusions."""

    group: str
    artifact: str
    version: str
    exclusions: tuple[str, ...] = ()

    @property
    def coordinate(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"


@dataclass(frozen=True)
class ArtifactSet:
    """A folder of jars: what it is for and the dependencies that fill it."""

    name: str
    purpose: str
    dependencies: tuple[Dependency, ...]

    def folder(self, cache_dir: Path) -> Path:
        return jars_root(cache_dir) / self.name


def jars_root(cache_dir: Path) -> Path:
    return cache_dir / "jars"


def kafka_artifacts() -> ArtifactSet:
    scala = version("SCALA_BINARY_VERSION")
    log4j = version("LOG4J_VERSION")
    return ArtifactSet(
        name="kafka",
        purpose=f"Kafka {version('KAFKA_VERSION')} broker (KRaft)",
        dependencies=(
            Dependency("org.apache.kafka", f"kafka_{scala}", version("KAFKA_VERSION")),
            # Kafka 4.x is built against the SLF4J 1.7 API (its pom pins slf4j-api 1.7.36), so
            # the log4j2 binding is the SLF4J 1.x one; log4j-slf4j2-impl would not be found.
            Dependency("org.apache.logging.log4j", "log4j-slf4j-impl", log4j),
            Dependency("org.apache.logging.log4j", "log4j-core", log4j),
        ),
    )


def cassandra_artifacts() -> ArtifactSet:
    return ArtifactSet(
        name="cassandra",
        purpose=f"Cassandra {version('CASSANDRA_VERSION')} server",
        dependencies=(Dependency("org.apache.cassandra", "cassandra-all", version("CASSANDRA_VERSION")),),
    )


# Jars that pyspark already carries in pyspark/jars (same or newer versions): a second copy on
# the classpath would only risk a version clash.
_PYSPARK_PROVIDED = (
    "org.apache.hadoop:hadoop-client-runtime",
    "org.apache.hadoop:hadoop-client-api",
    "org.slf4j:slf4j-api",
    "com.google.code.findbugs:jsr305",
    "org.lz4:lz4-java",
    "org.xerial.snappy:snappy-java",
    "com.github.luben:zstd-jni",
    "org.apache.spark:spark-tags_{scala}",
    "org.scala-lang:scala-library",
    "org.scala-lang.modules:scala-parallel-collections_{scala}",
)


def spark_kafka_artifacts() -> ArtifactSet:
    scala = version("SCALA_BINARY_VERSION")
    token_provider = f"org.apache.spark:spark-token-provider-kafka-0-10_{scala}"
    provided = tuple(entry.format(scala=scala) for entry in _PYSPARK_PROVIDED)
    return ArtifactSet(
        name="spark-kafka",
        purpose=f"Spark {version('SPARK_VERSION')} Kafka source and sink",
        dependencies=(
            Dependency(
                "org.apache.spark",
                f"spark-sql-kafka-0-10_{scala}",
                version("SPARK_VERSION"),
                exclusions=(token_provider, *provided),
            ),
            # Pinned separately: see SPARK_KAFKA_TOKEN_PROVIDER_VERSION in versions.env
            Dependency(
                "org.apache.spark",
                f"spark-token-provider-kafka-0-10_{scala}",
                version("SPARK_KAFKA_TOKEN_PROVIDER_VERSION"),
                exclusions=("org.apache.kafka:kafka-clients", *provided),
            ),
        ),
    )


def all_artifact_sets() -> tuple[ArtifactSet, ...]:
    return (kafka_artifacts(), cassandra_artifacts(), spark_kafka_artifacts())


def render_pom(artifacts: ArtifactSet) -> str:
    """A dependencies-only pom for one artifact set (deterministic: the stamp hashes it)."""
    deps = []
    for dep in artifacts.dependencies:
        exclusions = ""
        if dep.exclusions:
            items = []
            for entry in dep.exclusions:
                group, _, artifact = entry.partition(":")
                items.append(
                    "        <exclusion>\n"
                    f"          <groupId>{escape(group)}</groupId>\n"
                    f"          <artifactId>{escape(artifact)}</artifactId>\n"
                    "        </exclusion>\n"
                )
            exclusions = "      <exclusions>\n" + "".join(items) + "      </exclusions>\n"
        deps.append(
            "    <dependency>\n"
            f"      <groupId>{escape(dep.group)}</groupId>\n"
            f"      <artifactId>{escape(dep.artifact)}</artifactId>\n"
            f"      <version>{escape(dep.version)}</version>\n"
            f"{exclusions}"
            "    </dependency>\n"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<!-- Generated by userstream from versions.env: {escape(artifacts.purpose)} -->\n"
        '<project xmlns="http://maven.apache.org/POM/4.0.0"\n'
        '         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"\n'
        '         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 '
        'https://maven.apache.org/xsd/maven-4.0.0.xsd">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>userstream.local</groupId>\n"
        f"  <artifactId>userstream-{escape(artifacts.name)}-jars</artifactId>\n"
        "  <version>0</version>\n"
        "  <packaging>pom</packaging>\n"
        "  <dependencies>\n" + "".join(deps) + "  </dependencies>\n"
        "</project>\n"
    )


def pom_digest(pom: str) -> str:
    return hashlib.sha256(pom.encode("utf-8")).hexdigest()


def read_stamp(folder: Path) -> dict[str, object] | None:
    try:
        data = json.loads((folder / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_fresh(artifacts: ArtifactSet, cache_dir: Path) -> bool:
    """True when the folder holds jars resolved from exactly the pom we would generate now."""
    folder = artifacts.folder(cache_dir)
    stamp = read_stamp(folder)
    if stamp is None or stamp.get("pom_sha256") != pom_digest(render_pom(artifacts)):
        return False
    return any(folder.glob("*.jar"))


def jars(artifacts: ArtifactSet, cache_dir: Path) -> list[Path]:
    return sorted(artifacts.folder(cache_dir).glob("*.jar"))


def replace_folder(built: Path, target: Path, stamp_name: str, stamp: dict[str, Any]) -> None:
    """Write ``stamp`` into ``built`` as ``stamp_name``, then put ``built`` in place of ``target``."""
    (built / stamp_name).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    if target.exists():
        shutil.rmtree(target)
    built.rename(target)


def run_mvn(command: list[str], *, doing: str, failed: str, hint: str = "") -> None:
    """Run mvn; a clear error naming what it was doing on a timeout, and what failed with the tail
    of its output (and ``hint``) on a non-zero exit."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=MVN_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise UserstreamError(
            f"mvn did not {doing} within {MVN_TIMEOUT_S} s: check that the Maven repository is "
            "reachable, then run `userstream local fetch` again"
        ) from None
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise UserstreamError(f"mvn failed to {failed}:\n{tail}" + (f"\n{hint}" if hint else ""))


def find_mvn() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise PrerequisiteError(
            "mvn (Apache Maven 3.6+) is not on PATH: install it (e.g. `apt-get install maven`) "
            "so `userstream local fetch` can resolve the Kafka, Cassandra and Spark connector jars"
        )
    return mvn


def resolve(
    artifacts: ArtifactSet,
    cache_dir: Path,
    *,
    force: bool = False,
    echo: Callable[[str], None] = print,
) -> Path:
    """Make sure ``artifacts`` are in their cache folder; run Maven only when needed."""
    cache_dir = cache_dir.resolve()
    folder = artifacts.folder(cache_dir)
    if not force and is_fresh(artifacts, cache_dir):
        return folder
    mvn = find_mvn()
    pom = render_pom(artifacts)
    jars_root(cache_dir).mkdir(parents=True, exist_ok=True)
    echo(f"resolving {artifacts.purpose} with mvn into {folder} ...")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f".{artifacts.name}-", dir=jars_root(cache_dir)) as tmp:
        work = Path(tmp)
        (work / "pom.xml").write_text(pom, encoding="utf-8")
        output = work / "jars"
        command = [
            mvn,
            "-B",
            "-q",
            "-gs",
            str(MAVEN_SETTINGS),
            "-f",
            str(work / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={output}",
        ]
        run_mvn(
            command,
            doing=f"finish resolving {artifacts.name} jars",
            failed=f"resolve the {artifacts.name} jars "
            f"({', '.join(d.coordinate for d in artifacts.dependencies)})",
            hint="check that the Maven repository is reachable (mvn -v; ~/.m2/settings.xml), "
            "then run `userstream local fetch` again",
        )
        resolved = sorted(p.name for p in output.glob("*.jar"))
        if not resolved:
            raise UserstreamError(f"mvn resolved no jars for {artifacts.name}; see {work / 'pom.xml'}")
        (output / "pom.xml").write_text(pom, encoding="utf-8")
        stamp = {
            "name": artifacts.name,
            "purpose": artifacts.purpose,
            "dependencies": [d.coordinate for d in artifacts.dependencies],
            "pom_sha256": pom_digest(pom),
            "jars": resolved,
            "resolved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        replace_folder(output, folder, STAMP_NAME, stamp)
    echo(f"  {len(resolved)} jars in {time.monotonic() - started:.0f} s")
    return folder


def resolve_all(
    cache_dir: Path,
    *,
    sets: Iterable[ArtifactSet] | None = None,
    force: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Path]:
    return {
        artifacts.name: resolve(artifacts, cache_dir, force=force, echo=echo)
        for artifacts in (sets if sets is not None else all_artifact_sets())
    }

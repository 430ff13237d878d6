"""The stream's Cassandra writer jar, built from source (``spark-apps/cassandra-writer``) with Maven.

The jar (a Java class the Python ``foreachBatch`` calls through py4j, with the Cassandra Java
driver shaded into it) is built into ``<cache_dir>/jars/cassandra-writer`` by ``userstream local
fetch`` (``make artifacts``); the Spark image builds it the same way in a stage of its own
(images/spark/Dockerfile). A stamp in the folder records a digest of the module's sources and of
the versions passed to Maven, so an unchanged module is not built again. The build runs in a
temporary copy of the module: nothing is written into the repository.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from userstream.errors import UserstreamError
from userstream.local.artifacts import MAVEN_SETTINGS, find_mvn, jars_root, replace_folder, run_mvn
from userstream.versions import version

NAME = "cassandra-writer"
JAR_NAME = "userstream-cassandra-writer.jar"
STAMP_NAME = ".userstream-writer.json"
# the module sits in the repository (spark-apps/); an installed package without it cannot build it
MODULE_DIR = Path(__file__).resolve().parents[3] / "spark-apps" / NAME
WRITER_CLASS = "dev.userstream.cassandra.CassandraSink"
CEILING_CLASS = "dev.userstream.cassandra.WriteCeiling"


def maven_properties() -> dict[str, str]:
    """The versions the module is built against (pom.xml properties), from versions.env."""
    return {
        "spark.version": version("SPARK_VERSION"),
        "scala.binary.version": version("SCALA_BINARY_VERSION"),
        "cassandra.driver.version": version("CASSANDRA_JAVA_DRIVER_VERSION"),
    }


def module_files(module: Path = MODULE_DIR) -> list[Path]:
    """The files a build reads: the pom and the sources (never ``target/``)."""
    files = [module / "pom.xml"]
    files += sorted(p for p in (module / "src").rglob("*") if p.is_file())
    return files


def source_digest(module: Path = MODULE_DIR, properties: dict[str, str] | None = None) -> str:
    digest = hashlib.sha256()
    for path in module_files(module):
        digest.update(str(path.relative_to(module)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    digest.update(json.dumps(properties or maven_properties(), sort_keys=True).encode())
    return digest.hexdigest()


def folder(cache_dir: Path) -> Path:
    return jars_root(cache_dir.resolve()) / NAME


def built_jar(cache_dir: Path, module: Path = MODULE_DIR) -> Path | None:
    """The jar in the cache when it was built from exactly the current sources, else None."""
    target = folder(cache_dir)
    try:
        stamp = json.loads((target / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not module.is_dir() or stamp.get("source_sha256") != source_digest(module):
        return None
    jar = target / JAR_NAME
    return jar if jar.is_file() else None


def build(
    cache_dir: Path, *, force: bool = False, echo: Callable[[str], None] = print, module: Path = MODULE_DIR
) -> Path:
    """Build the writer jar into the cache (skipped when the stamp matches); its path."""
    if not module.is_dir():
        raise UserstreamError(
            f"{module} not found: the Cassandra writer is built from the repository's spark-apps/{NAME}; "
            "run from a checkout of the repository, or use the Spark image, which has the jar"
        )
    if not force:
        existing = built_jar(cache_dir, module)
        if existing is not None:
            return existing
    mvn = find_mvn()
    properties = maven_properties()
    target = folder(cache_dir)
    jars_root(cache_dir.resolve()).mkdir(parents=True, exist_ok=True)
    echo(f"building the Cassandra writer ({module.name}) with mvn into {target} ...")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f".{NAME}-", dir=jars_root(cache_dir.resolve())) as tmp:
        work = Path(tmp) / "module"
        shutil.copytree(module, work, ignore=shutil.ignore_patterns("target"))
        command = [
            mvn, "-B", "-q", "-gs", str(MAVEN_SETTINGS), "-f", str(work / "pom.xml"),
            *[f"-D{key}={value}" for key, value in properties.items()],
            "package",
        ]  # fmt: skip
        run_mvn(command, doing="build the Cassandra writer", failed=f"build the Cassandra writer ({module})")
        shaded = [
            p for p in (work / "target").glob("userstream-cassandra-writer-*.jar") if "original" not in p.name
        ]
        if len(shaded) != 1:
            raise UserstreamError(f"mvn built no single writer jar in {work / 'target'}: {shaded}")
        output = Path(tmp) / "out"
        output.mkdir()
        shutil.copy2(shaded[0], output / JAR_NAME)
        stamp = {
            "module": str(module),
            "source_sha256": source_digest(module, properties),
            "properties": properties,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        replace_folder(output, target, STAMP_NAME, stamp)
    echo(f"  {JAR_NAME} in {time.monotonic() - started:.0f} s")
    return target / JAR_NAME

"""One way to build the SparkSession, locally and in the cluster.

The Kafka source and sink are not part of pyspark: their jars (``spark-sql-kafka-0-10`` and its
dependencies) are handed to Spark by path through ``spark.jars`` (never resolved by Spark's own
Ivy at run time). Where they come from:

* ``USERSTREAM_SPARK_JARS_DIR`` (setting ``spark_jars_dir``): a folder of jars, e.g. baked into
  an image;
* otherwise ``<cache_dir>/jars/spark-kafka``, filled by ``userstream local fetch``;
* otherwise, when the connector is already on Spark's own classpath (``$SPARK_HOME/jars`` of an
  image that copied it there), nothing needs to be added.

The stream's Cassandra writer (``spark-apps/cassandra-writer``, Java) is found the same way: in
that folder, else ``<cache_dir>/jars/cassandra-writer`` built by ``userstream local fetch``, else
``$SPARK_HOME/jars`` (the Spark image builds it there).

When the driver was launched by ``spark-submit`` (the Spark operator in the cluster), master and
classpath are already decided by the submission; this module then only names the application and
sets the small SQL defaults.

A local driver logs through ``spark-log4j2.properties`` (beside this module) to its stderr; with
``output`` that stderr and stdout are a file, so what the JVM prints (its log, the JDK's own
warnings) stays out of the command's output.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from userstream.errors import UserstreamError
from userstream.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

KAFKA_CONNECTOR_GLOB = "spark-sql-kafka-0-10_*.jar"
LOG4J_CONFIG = Path(__file__).with_name("spark-log4j2.properties")

# SQL settings of the stream's session, locally and under spark-submit.
# Whole-stage code generation: the stream's plan (parse, validate, clean) makes a processNext()
# bigger than the JVM's 64 KB method limit, so Janino fails and Spark falls back to per-operator
# code (WholeStageCodegenExec.doExecute, Spark 4.1.3); a failed compile is not cached, so every
# micro-batch tried again, about 1.5 s of a core each (measured, docs/pipeline.md Benchmark).
SESSION_SQL_DEFAULTS: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.codegen.wholeStage": "false",
}

LOCAL_DEFAULTS: dict[str, str] = {
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "1g",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.streaming.forceDeleteTempCheckpointLocation": "true",
}


def launched_by_spark_submit() -> bool:
    """True inside a driver started by spark-submit (the JVM exists and gave us its gateway)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def spark_home_jars() -> Path | None:
    home = os.environ.get("SPARK_HOME")
    if home:
        return Path(home) / "jars"
    try:
        import pyspark
    except ImportError:
        return None
    return Path(pyspark.__file__).parent / "jars"


def connector_jars(settings: Settings) -> list[Path]:
    """The jars to add with ``spark.jars`` (empty when Spark already has the connector)."""
    if settings.spark_jars_dir is not None:
        folder = settings.spark_jars_dir
        found = sorted(folder.glob("*.jar"))
        if not any(p.match(KAFKA_CONNECTOR_GLOB) for p in found):
            raise UserstreamError(
                f"USERSTREAM_SPARK_JARS_DIR={folder} holds no {KAFKA_CONNECTOR_GLOB}: point it at the "
                "folder of the Spark Kafka connector jars"
            )
        return found
    from userstream.local.artifacts import is_fresh, spark_kafka_artifacts

    spark_kafka = spark_kafka_artifacts()
    folder = spark_kafka.folder(settings.cache_dir.resolve())
    if is_fresh(spark_kafka, settings.cache_dir.resolve()):
        return sorted(folder.glob("*.jar"))
    builtin = spark_home_jars()
    if builtin is not None and any(builtin.glob(KAFKA_CONNECTOR_GLOB)):
        return []
    raise UserstreamError(
        f"the Spark Kafka connector jars are not in {folder}: run `userstream local fetch` "
        "(or `make artifacts`), or set USERSTREAM_SPARK_JARS_DIR to a folder that has them"
    )


WRITER_JAR_GLOB = "userstream-cassandra-writer*.jar"


def writer_jars(settings: Settings) -> list[Path]:
    """The stream's Cassandra writer jar to add with ``spark.jars`` (empty when Spark has it: in
    ``USERSTREAM_SPARK_JARS_DIR`` or ``$SPARK_HOME/jars`` of the image)."""
    if settings.spark_jars_dir is not None and any(settings.spark_jars_dir.glob(WRITER_JAR_GLOB)):
        return []  # connector_jars adds the whole folder
    from userstream.local import writer_jar

    built = writer_jar.built_jar(settings.cache_dir)
    if built is not None:
        return [built]
    builtin = spark_home_jars()
    if builtin is not None and any(builtin.glob(WRITER_JAR_GLOB)):
        return []
    raise UserstreamError(
        f"the stream's Cassandra writer jar is not built from the current sources in "
        f"{writer_jar.folder(settings.cache_dir)}: run `userstream local fetch` (or `make artifacts`), "
        "which builds spark-apps/cassandra-writer with Maven"
    )


def build_spark_session(
    settings: Settings, app_name: str, *, master: str | None = None, output: Path | None = None
) -> SparkSession:
    """Get (or create) the SparkSession for ``app_name`` with the Kafka connector available.

    ``master`` defaults to ``settings.spark_master`` for local runs; under spark-submit the
    submission's master is kept unless ``master`` is given explicitly. ``output``: a file that
    receives the local driver JVM's stdout and stderr (default: this process's).
    """
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    submitted = launched_by_spark_submit()
    if master is not None or not submitted:
        builder = builder.master(master or settings.spark_master)
    if not submitted:
        # the driver binds to loopback; say so before the JVM starts, so it does not guess an address
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # local Python workers run this interpreter, the one that has userstream installed
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        for key, value in LOCAL_DEFAULTS.items():
            builder = builder.config(key, value)
        # the launcher puts these on the driver JVM's command line (client mode)
        log4j = f"-Dlog4j2.configurationFile={LOG4J_CONFIG}"
        builder = builder.config("spark.driver.extraJavaOptions", log4j)
        jars = connector_jars(settings) + writer_jars(settings)
        if jars:
            builder = builder.config("spark.jars", ",".join(str(p) for p in jars))
        if output is not None:
            _start_driver_jvm(builder, output)
    for key, value in SESSION_SQL_DEFAULTS.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


def _start_driver_jvm(builder: SparkSession.Builder, output: Path) -> None:
    """Start the driver JVM with its stdout and stderr appended to ``output``.

    pyspark 4.1.2 (pyspark/java_gateway.py) starts the JVM in ``launch_gateway(conf, popen_kwargs)``,
    whose ``popen_kwargs`` may redirect its output; ``SparkContext(conf, gateway=...)`` takes such
    a gateway and ``getOrCreate()`` then finds that context active. Nothing to do when this
    process already has a JVM (``SparkContext._gateway``, set by pyspark/core/context.py).
    """
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None:
        return
    conf = SparkConf()
    for key, value in builder._options.items():  # pyspark/sql/session.py Builder keeps them here
        conf.set(key, value)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "ab") as sink:  # the JVM keeps its own copy of the descriptor
        gateway = launch_gateway(conf, popen_kwargs={"stdout": sink, "stderr": sink})  # type: ignore[no-untyped-call]
    SparkContext(conf=conf, gateway=gateway)

"""Integration tier: real Kafka, Cassandra, PostgreSQL and Spark as local processes.

Every test collected under ``tests/integration`` gets the ``integration`` marker from
:func:`pytest_collection_modifyitems` below, so a test module needs no ``pytestmark`` of its own.

Fixtures (the names other test modules rely on):

* ``local_stack`` (session): the running :class:`~userstream.local.stack.LocalStack`. A stack that
  is already up (``userstream local up``) is reused and left running; what the fixture starts
  itself it stops at the end of the session, unless ``USERSTREAM_KEEP_STACK=1``.
* ``stack_settings`` (session): the :class:`~userstream.settings.Settings` of that stack, as its
  admin (Kafka super user, Cassandra superuser), so a test may create its own topics and keyspaces.
* ``settings_as`` (session): ``settings_as(settings, "ingest" | "stream" | "checks" | "admin")``
  gives settings without credentials the local stack's least-privilege principal of that client.
* ``spark`` (session): one local[2] SparkSession with the Kafka connector on its classpath.
* ``unique_names`` (function): a fresh lower-case suffix (``t`` + 10 hex digits) that is valid in
  Kafka topic, CQL and PostgreSQL names, so each test can use its own topics, keyspaces, tables.

When Java 17+ or Maven is truly missing, every test of the tier is skipped with a one-line reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from userstream.errors import PrerequisiteError
from userstream.local import artifacts, processes
from userstream.local.credentials import Client, client_settings
from userstream.local.stack import LocalStack
from userstream.settings import Settings, load_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

HERE = Path(__file__).parent
REPO_ROOT = HERE.parents[1]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


def _settings() -> Settings:
    """Settings from the environment; the state and cache folders default to the repository's."""
    overrides: dict[str, object] = {}
    if "USERSTREAM_STATE_DIR" not in os.environ:
        overrides["state_dir"] = REPO_ROOT / ".local-stack"
    if "USERSTREAM_CACHE_DIR" not in os.environ:
        overrides["cache_dir"] = REPO_ROOT / ".cache"
    return load_settings(**overrides)


def _missing_tools(settings: Settings) -> str | None:
    """A one-line reason when a tool the tier needs is absent from this machine."""
    try:
        processes.find_java()
    except PrerequisiteError as exc:
        return str(exc)
    if not all(artifacts.is_fresh(s, settings.cache_dir) for s in artifacts.all_artifact_sets()):
        try:
            artifacts.find_mvn()
        except PrerequisiteError as exc:
            return str(exc)
    return None


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    settings = _settings()
    reason = _missing_tools(settings)
    if reason:
        pytest.skip(f"integration tier needs Java 17+ and Maven: {reason}")
    stack = LocalStack(settings)
    try:
        stack.up()
    except BaseException:
        stack.down(stack.started)
        raise
    yield stack
    if stack.started and os.environ.get("USERSTREAM_KEEP_STACK") != "1":
        stack.down(stack.started)


@pytest.fixture(scope="session")
def stack_settings(local_stack: LocalStack) -> Settings:
    return client_settings(local_stack.settings, "admin")


@pytest.fixture(scope="session")
def settings_as(local_stack: LocalStack) -> Callable[[Settings, Client], Settings]:
    """Settings (a test's own names) as one client of the local stack, from its credentials."""

    def as_client(settings: Settings, client: Client) -> Settings:
        bare = settings.model_copy(
            update={
                "kafka_security_protocol": "PLAINTEXT",
                "kafka_sasl_mechanism": None,
                "kafka_username": None,
                "kafka_password": None,
                "cassandra_username": None,
                "cassandra_password": None,
            }
        )
        return client_settings(bare, client)

    return as_client


@pytest.fixture(scope="session")
def spark(stack_settings: Settings) -> Iterator[SparkSession]:
    from userstream.stream.spark_session import build_spark_session

    session = build_spark_session(stack_settings, "userstream-integration-tests", master="local[2]")
    yield session
    session.stop()


def unique_suffix() -> str:
    """``t`` + 10 hex digits: valid in topic, CQL (lower-case, starts with a letter) and SQL names."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def unique_names() -> str:
    return unique_suffix()

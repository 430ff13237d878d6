from __future__ import annotations

import copy
import json
from importlib import resources

import jsonschema
import pytest

from userstream import contract
from userstream.contract.ids import record_id
from userstream.ingest.sources.synthetic import generate
from userstream.stream import cleaning


def _envelope(document: dict) -> dict:
    return {
        "schema_version": contract.MESSAGE_SCHEMA_VERSION,
        "id": str(record_id(document)),
        "source": "synthetic",
        "batch_id": "b",
        "fetched_at": "2025-01-01T00:00:00Z",
        "user": document,
    }


def test_reference_cql_is_generated_from_the_table_definition() -> None:
    kept = resources.files(contract).joinpath(contract.TABLE_CQL_FILE).read_text(encoding="utf-8")
    assert kept == contract.render_reference_cql(), (
        "contract/created_users.v1.cql is stale: regenerate it with "
        "python -c 'from userstream import contract; print(contract.render_reference_cql(), end=\"\")'"
    )


def test_every_table_column_reads_a_field_of_the_message_schema() -> None:
    for column in contract.table_definition().columns:
        assert column.clean in cleaning.RULES, column
        for path in column.sources:
            if path.startswith("$"):
                assert path in contract.METADATA_SOURCES
            else:
                contract.schema_node(path)  # raises KeyError when the message has no such field


def test_the_primary_key_and_required_fields_line_up() -> None:
    table = contract.table_definition()
    assert table.primary_key == ("id",)
    required = set(contract.required_paths())
    assert {"id", "user.email", "user.name.first", "user.name.last", "user.dob.date"} <= required
    for name in table.primary_key:
        for path in table.column(name).sources:
            assert path in required


def test_cql_types_and_spark_types_come_from_the_same_columns() -> None:
    table = contract.table_definition()
    ddl = contract.create_table_cql("ks", "tbl")
    for column in table.columns:
        assert f"    {column.name} {column.cql_type}," in ddl
    assert table.column("dob").spark_type_name == "timestamp"
    insert = contract.insert_cql("ks", "tbl")
    assert insert.count("?") == len(table.columns)
    assert insert.startswith("INSERT INTO ks.tbl (id, ")


def test_the_stream_writes_exactly_the_table_schema(spark) -> None:
    from userstream.stream import transforms

    frame = spark.createDataFrame(
        [], "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"
    )
    rows = transforms.valid_rows(transforms.parse(frame, 65536))
    got = [(f.name, f.dataType.simpleString()) for f in rows.schema.fields]
    # the table's columns in their order, each of the Spark type its logical type names
    want = [(c.name, c.spark_type_name) for c in contract.table_definition().columns]
    assert got == want


def test_the_parser_schema_follows_the_message_schema() -> None:
    from pyspark.sql import types as T

    struct = contract.message_spark_schema()
    user = struct["user"].dataType
    assert isinstance(user, T.StructType)
    location = user["location"].dataType
    assert isinstance(location["postcode"].dataType, T.StringType)  # int or string in the API
    assert isinstance(user["dob"].dataType["age"].dataType, T.LongType)
    assert set(struct.fieldNames()) == set(contract.message_schema()["properties"])


def test_a_schema_change_reaches_cql_spark_and_required_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rename one field in the contract: the DDL, the row StructType and the parser all follow."""
    from pyspark.sql import types as T

    table = contract.table_definition()
    renamed = tuple(
        contract.Column("mobile" if c.name == "cell" else c.name, c.type, c.sources, c.clean)
        for c in table.columns
    )
    monkeypatch.setattr(
        contract,
        "table_definition",
        lambda: contract.TableDefinition(table.name, 2, table.primary_key, renamed),
    )
    schema = copy.deepcopy(contract.message_schema())
    schema["properties"]["user"]["properties"]["nickname"] = {"type": "string"}
    schema["properties"]["user"]["required"].append("nickname")
    monkeypatch.setattr(contract, "message_schema", lambda: schema)
    assert "    mobile text," in contract.create_table_cql("ks")
    assert "cell" not in contract.insert_cql("ks")
    assert "mobile" in contract.insert_cql("ks")
    user = contract.message_spark_schema()["user"].dataType
    assert isinstance(user, T.StructType)
    assert "nickname" in user.fieldNames()
    assert "user.nickname" in contract.required_paths()


def test_valid_synthetic_messages_satisfy_the_message_schema_and_broken_ones_do_not() -> None:
    validator = jsonschema.Draft202012Validator(
        contract.message_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    valid = broken = 0
    for index in range(400):
        document, kind = generate(7, index, broken_rate=0.25)
        errors = list(validator.iter_errors(json.loads(json.dumps(_envelope(document)))))
        if kind is None:
            assert errors == [], (index, errors[0].message if errors else None)
            valid += 1
        elif kind in {"missing_field", "wrong_type", "empty_name"}:
            assert errors, (index, kind)
            broken += 1
    assert valid > 250
    assert broken > 20


def test_keyspace_cql_uses_the_configured_replication() -> None:
    cql = contract.create_keyspace_cql("ks", {"class": "NetworkTopologyStrategy", "dc1": "3"})
    assert cql == (
        "CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': '3'}"
    )


def test_contract_files_are_package_data() -> None:
    from importlib import resources

    names = {entry.name for entry in resources.files("userstream.contract").iterdir()}
    assert {"user_message.v1.json", "created_users.v1.json", "created_users.v1.cql"} <= names

from __future__ import annotations

import json
from collections import Counter

import pytest

from userstream.contract.ids import record_id
from userstream.ingest.sources import build_source, plan_pages
from userstream.ingest.sources.synthetic import BROKEN_KINDS, SyntheticSource, generate, generate_user
from userstream.settings import load_settings

API_KEYS = {
    *("gender", "name", "location", "email", "login", "dob"),
    *("registered", "phone", "cell", "id", "picture", "nat"),
}


def test_documents_have_the_api_shape() -> None:
    document = generate_user(42, 0)
    assert set(document) == API_KEYS
    assert set(document["name"]) == {"title", "first", "last"}
    assert set(document["location"]) == {
        "street",
        "city",
        "state",
        "country",
        "postcode",
        "coordinates",
        "timezone",
    }
    assert set(document["location"]["street"]) == {"number", "name"}
    assert set(document["login"]) == {"uuid", "username", "password", "salt", "md5", "sha1", "sha256"}
    assert set(document["dob"]) == {"date", "age"} == set(document["registered"])
    assert set(document["id"]) == {"name", "value"}
    assert set(document["picture"]) == {"large", "medium", "thumbnail"}
    assert document["dob"]["date"].endswith("Z")
    json.dumps(document)


def test_the_api_messiness_is_reproduced() -> None:
    documents = [generate_user(42, index) for index in range(600)]
    postcode_types = {type(d["location"]["postcode"]) for d in documents}
    assert postcode_types == {int, str}
    by_nat: dict[str, set[type]] = {}
    for d in documents:
        by_nat.setdefault(d["nat"], set()).add(type(d["location"]["postcode"]))
    assert all(len(kinds) == 1 for kinds in by_nat.values())  # the type depends on the nationality
    assert any(not (d["name"]["first"] + d["name"]["last"]).isascii() for d in documents)
    assert any(d["id"]["value"] is None for d in documents)
    assert len({d["nat"] for d in documents}) >= 10


def test_same_seed_same_documents_other_seed_other_documents() -> None:
    assert generate_user(42, 17) == generate_user(42, 17)
    assert generate_user(42, 17) != generate_user(43, 17)
    first = [b.documents for b in SyntheticSource(seed=5, broken_rate=0.1).batches(250, 100)]
    again = [b.documents for b in SyntheticSource(seed=5, broken_rate=0.1).batches(250, 100)]
    assert first == again


def test_batches_cover_the_records_with_stable_ids() -> None:
    batches = list(SyntheticSource(seed=5).batches(250, 100))
    assert [len(b.documents) for b in batches] == [100, 100, 50]
    assert [b.batch_id for b in batches] == [
        "synthetic:seed=5:broken=0.01:page=1:size=100",
        "synthetic:seed=5:broken=0.01:page=2:size=100",
        "synthetic:seed=5:broken=0.01:page=3:size=50",
    ]
    ids = {record_id(d) for b in batches for d in b.documents}
    assert len(ids) == 250


def test_the_broken_rate_is_honoured_with_every_kind() -> None:
    kinds = Counter(generate(9, index, 0.2)[1] for index in range(5000))
    broken = sum(count for kind, count in kinds.items() if kind)
    assert 850 < broken < 1150
    assert set(BROKEN_KINDS) <= set(kinds)
    assert all(generate(9, index, 0.0)[1] is None for index in range(200))
    assert all(generate(9, index, 1.0)[1] is not None for index in range(200))


def test_plan_pages() -> None:
    assert plan_pages(0, 10) == []
    assert plan_pages(10, 10) == [(1, 10)]
    assert plan_pages(11, 5) == [(1, 5), (2, 5), (3, 1)]
    with pytest.raises(ValueError):
        plan_pages(5, 0)


def test_build_source_defaults_to_synthetic() -> None:
    settings = load_settings(synthetic_seed=3, synthetic_broken_rate=0.5)
    source = build_source(settings)
    assert isinstance(source, SyntheticSource)
    assert source.seed == 3
    assert source.broken_rate == 0.5

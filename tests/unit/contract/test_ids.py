from __future__ import annotations

import copy
import uuid

from userstream.contract import ids
from userstream.ingest.sources.synthetic import generate_user


def test_same_user_same_id_and_it_is_a_uuid5() -> None:
    document = generate_user(1, 5)
    first = ids.record_id(document)
    assert first == ids.record_id(copy.deepcopy(document))
    assert first.version == 5
    assert first == uuid.uuid5(ids.USERSTREAM_NAMESPACE, f"login.uuid:{document['login']['uuid']}")


def test_the_id_follows_login_uuid_only() -> None:
    document = generate_user(1, 5)
    changed = copy.deepcopy(document)
    changed["email"] = "someone.else@example.com"
    changed["location"]["city"] = "Elsewhere"
    assert ids.record_id(changed) == ids.record_id(document)
    changed["login"]["uuid"] = document["login"]["uuid"].upper()
    assert ids.record_id(changed) == ids.record_id(document)


def test_without_login_uuid_a_stable_hash_of_identifying_fields() -> None:
    document = generate_user(1, 6)
    del document["login"]["uuid"]
    key = ids.natural_key(document)
    assert key.startswith("fields-sha256:")
    reordered = dict(reversed(list(document.items())))
    assert ids.record_id(reordered) == ids.record_id(document)
    other = copy.deepcopy(document)
    other["email"] = "x@example.com"
    assert ids.record_id(other) != ids.record_id(document)
    # non-identifying fields do not change it
    other = copy.deepcopy(document)
    other["picture"] = {}
    assert ids.record_id(other) == ids.record_id(document)


def test_even_a_document_without_identity_gets_a_deterministic_id() -> None:
    assert ids.natural_key({"garbage": [1, 2]}).startswith("document-sha256:")
    assert ids.record_id({"garbage": [1, 2]}) == ids.record_id({"garbage": [1, 2]})
    assert ids.record_id({"garbage": [1, 2]}) != ids.record_id({"garbage": [2, 1]})
    assert ids.record_id({"login": "not-an-object"}) == ids.record_id({"login": "not-an-object"})


def test_different_users_different_ids() -> None:
    generated = {ids.record_id(generate_user(3, index)) for index in range(2000)}
    assert len(generated) == 2000

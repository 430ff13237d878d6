"""Deterministic record ids: the same user always gets the same id.

The id is a UUIDv5 in a fixed userstream namespace. Its name is the source's own identity of the
user, ``login.uuid``, when present. When it is absent (or not a string) the name is a stable hash
of the identifying fields (email, username, name, date of birth, nationality); a document with
none of them (a broken record) is named by the hash of its canonical JSON. A replay, a retry or
a re-fetch therefore maps to the same row instead of minting a new one.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

USERSTREAM_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://userstream.dev/ns/users")

_IDENTIFYING_PATHS = (
    ("email",),
    ("login", "username"),
    ("name", "first"),
    ("name", "last"),
    ("dob", "date"),
    ("nat",),
)


def _get(document: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(document, dict):
            return None
        document = document.get(part)
    return document


def canonical_json(document: Any) -> str:
    return json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def natural_key(document: Any) -> str:
    """The source's identity of a user as a string (``login.uuid:...`` or ``sha256:...``)."""
    login_uuid = _get(document, ("login", "uuid"))
    if isinstance(login_uuid, str) and login_uuid.strip():
        return f"login.uuid:{login_uuid.strip().lower()}"
    fields = {".".join(path): _get(document, path) for path in _IDENTIFYING_PATHS}
    if any(value not in (None, "") for value in fields.values()):
        digest = hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()
        return f"fields-sha256:{digest}"
    digest = hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()
    return f"document-sha256:{digest}"


def record_id(document: Any) -> uuid.UUID:
    """The UUIDv5 of a raw user document."""
    return uuid.uuid5(USERSTREAM_NAMESPACE, natural_key(document))

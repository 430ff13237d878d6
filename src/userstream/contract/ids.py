"""Deterministic record ids: the same user always gets the same id.

The id is a UUIDv5 in a fixed userstream namespace. Its name is the source's own identity of the
user, ``login.uuid``, when present. When it is absent (or not a string) the name is a stable hash
of the identifying fields (email, username, name, date of birth, nationality) when every one of
them is present; a document missing any of them (a broken record) is named by the hash of its
whole canonical JSON, so two broken documents that share a few fields (say only ``nat``) never
collapse into one id. A replay, a retry or a re-fetch therefore maps to the same row instead of
minting a new one.

Text is hashed as UTF-8 with lone surrogates passed through (``surrogatepass``): a document with an
unpaired ``\\ud800`` escape still gets an id, and every other document the id it always had.
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
    if all(_present(value) for value in fields.values()):
        return f"fields-sha256:{_sha256(canonical_json(fields))}"
    return f"document-sha256:{_sha256(canonical_json(document))}"


def _present(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool) and str(value).strip() != ""


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _sha256(text: str) -> str:
    return hashlib.sha256(_utf8(text)).hexdigest()


def record_id_for_key(key: str) -> uuid.UUID:
    """``uuid.uuid5(USERSTREAM_NAMESPACE, key)`` (RFC 9562 section 5.5: SHA-1 of the namespace's
    bytes and the name), with the name's lone surrogates passed through instead of failing."""
    digest = hashlib.sha1(USERSTREAM_NAMESPACE.bytes + _utf8(key), usedforsecurity=False).digest()
    return uuid.UUID(bytes=digest[:16], version=5)


def record_id(document: Any) -> uuid.UUID:
    """The UUIDv5 of a raw user document."""
    return record_id_for_key(natural_key(document))

"""Read the pinned versions from ``versions.env`` at the repository root.

``versions.env`` is the one place that pins every version. Inside an image, where the repository
is not present, the file's path is given by ``USERSTREAM_VERSIONS_FILE``.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]


def versions_file() -> Path:
    explicit = os.environ.get("USERSTREAM_VERSIONS_FILE")
    if explicit:
        return Path(explicit)
    for candidate in (Path.cwd() / "versions.env", _REPO_ROOT / "versions.env"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "versions.env not found: run from the repository root or set USERSTREAM_VERSIONS_FILE"
    )


def parse_versions(text: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"versions.env line {number}: expected KEY=VALUE, got {raw!r}")
        pins[key.strip()] = value.strip()
    return pins


@cache
def pinned() -> dict[str, str]:
    return parse_versions(versions_file().read_text(encoding="utf-8"))


def version(key: str) -> str:
    pins = pinned()
    if key not in pins:
        raise KeyError(f"{key} is not pinned in {versions_file()}")
    return pins[key]

"""The Cassandra writer's Maven module: versions from versions.env, rebuilt only when it changed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from userstream.local import writer_jar


def test_the_pom_defaults_equal_versions_env() -> None:
    pom = (writer_jar.MODULE_DIR / "pom.xml").read_text(encoding="utf-8")
    for key, value in writer_jar.maven_properties().items():
        found = re.search(rf"<{re.escape(key)}>([^<]+)</{re.escape(key)}>", pom)
        assert found is not None, key
        assert found[1] == value, key


def test_the_stamp_follows_the_sources(tmp_path: Path) -> None:
    module = tmp_path / "module"
    shutil.copytree(writer_jar.MODULE_DIR, module, ignore=shutil.ignore_patterns("target"))
    cache = tmp_path / "cache"
    assert writer_jar.built_jar(cache, module) is None  # never built
    folder = writer_jar.folder(cache)
    folder.mkdir(parents=True)
    (folder / writer_jar.JAR_NAME).write_bytes(b"jar")
    stamp = {"source_sha256": writer_jar.source_digest(module)}
    (folder / writer_jar.STAMP_NAME).write_text(json.dumps(stamp), encoding="utf-8")
    assert writer_jar.built_jar(cache, module) == folder / writer_jar.JAR_NAME
    source = next((module / "src").rglob("*.java"))
    source.write_text(source.read_text(encoding="utf-8") + "\n// changed\n", encoding="utf-8")
    assert writer_jar.built_jar(cache, module) is None  # a changed source needs a new build

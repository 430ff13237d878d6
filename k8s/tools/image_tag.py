#!/usr/bin/env python3
"""Print the tag of the userstream images: the project version plus a digest of what they are built from.

    python3 k8s/tools/image_tag.py            e.g. 0.1.0-3f2a9c1d4b5e

The images (images/*/Dockerfile) are built from the repository root minus .dockerignore; what can
change them is the Dockerfiles, the package, the DAGs, the Spark app, pyproject.toml and
versions.env (INPUTS). The digest covers the path and bytes of every file under INPUTS that git
tracks or would track (untracked files not ignored count too), so any edit, committed or not, gives
a new tag, and the same content always gives the same tag: a second `make deploy` after a change
rolls the pods (the chart, the Airflow release and the DAGs' ingest image all use this tag), one
without a change rolls nothing. Without git (a source tarball) every file under INPUTS is hashed.

Standard library only: the Makefile runs it with the system python3 before any virtualenv exists.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INPUTS = ("images", "src", "dags", "spark-apps", "pyproject.toml", "versions.env")
SKIP_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
DIGEST_LENGTH = 12


def _skipped(relative: str) -> bool:
    parts = relative.split("/")
    return bool(SKIP_PARTS.intersection(parts)) or relative.endswith(".pyc") or ".egg-info" in relative


def input_files(root: Path = ROOT) -> list[str]:
    """The files the images are built from, relative to ``root``, sorted."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *INPUTS],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
        names = {name for name in out.decode("utf-8").split("\0") if name}
    except (OSError, subprocess.CalledProcessError):
        names = set()
        for entry in INPUTS:
            path = root / entry
            if path.is_file():
                names.add(entry)
            for folder, _, files in os.walk(path):
                for name in files:
                    names.add((Path(folder) / name).relative_to(root).as_posix())
    return sorted(name for name in names if not _skipped(name) and (root / name).is_file())


def project_version(root: Path = ROOT) -> str:
    match = re.search(r'^version\s*=\s*"([^"]+)"', (root / "pyproject.toml").read_text("utf-8"), re.MULTILINE)
    if not match:
        raise SystemExit("image_tag: no version in pyproject.toml")
    return match.group(1)


def image_tag(root: Path = ROOT) -> str:
    digest = hashlib.sha256()
    for name in input_files(root):
        digest.update(name.encode("utf-8") + b"\0")
        digest.update((root / name).read_bytes())
        digest.update(b"\0")
    return f"{project_version(root)}-{digest.hexdigest()[:DIGEST_LENGTH]}"


if __name__ == "__main__":
    root = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT
    print(image_tag(root))

"""The ingest image built here without Docker (debootstrap base, buildah) runs `userstream --help`.

Needs root and buildah (the base is made with debootstrap); elsewhere it skips with that reason.
The first run makes the base and builds the image (about 2 minutes); later runs reuse the layers.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from userstream.cluster import images

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="building images with buildah here needs root"),
    pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed (Debian: buildah)"),
]


def test_the_ingest_image_built_here_runs_the_cli() -> None:
    results = images.build_images(["ingest"], builder="buildah")
    built = {result.name: result for result in results}
    assert set(built) == {"base", "ingest"}
    ingest = built["ingest"]
    assert ingest.archive is not None
    assert images.normalized_ref(images.archive_ref(ingest.archive) or "") == images.normalized_ref(
        ingest.ref
    )
    paths = images.Paths(images.default_cache_dir())
    assert images.archive_config_digest(ingest.archive) == images.buildah_image_id(paths, ingest.ref)

    buildah = images.buildah_global_args(paths)
    env = images.buildah_env(paths)
    ulimits = [flag for limit in images.ULIMITS for flag in ("--ulimit", limit)]
    container = subprocess.run(
        [*buildah, "from", "--pull=never", *ulimits, ingest.ref],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    try:
        result = subprocess.run(
            [
                *buildah,
                "run",
                # no network: the default one would make a CNI bridge and iptables rules on the host
                "--network",
                "none",
                "--runtime",
                images.CONTAINER_RUNTIME,
                "--isolation",
                "oci",
                container,
                "--",
                "sh",
                "-c",
                "id -u && userstream --help",
            ],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            timeout=120,
        )
    finally:
        subprocess.run([*buildah, "rm", container], capture_output=True, check=False, env=env)
    assert result.returncode == 0, result.stderr
    uid, _, usage = result.stdout.partition("\n")
    assert uid == "10001", "the ingest image runs as its non-root user"
    assert usage.startswith("usage: userstream")

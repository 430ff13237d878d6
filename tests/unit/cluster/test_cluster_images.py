"""Pure logic of userstream.cluster.images: tags, build order and arguments, the command lines,
the host's build-time trust, the Go wrapper module, archive reading and the skip logic."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from userstream.cluster import images
from userstream.errors import PrerequisiteError, UserstreamError
from userstream.versions import parse_versions

REPO = Path(__file__).resolve().parents[3]
PINS = parse_versions((REPO / "versions.env").read_text(encoding="utf-8"))


def test_tags_come_from_versions_env_and_the_project_version() -> None:
    pins = {
        "SPARK_OPERATOR_VERSION": "2.5.2",
        "CLOUDNATIVE_PG_VERSION": "1.30.0",
        "POSTGRES_CNPG_MAJOR": "15",
        "COREDNS_VERSION": "1.15.0",
    }
    assert images.image_ref("ingest", pins, "9.9.9") == "userstream-ingest:9.9.9"
    assert images.image_ref("spark", pins, "9.9.9") == "userstream-spark:9.9.9"
    assert images.image_ref("pause", pins, "9.9.9") == "userstream-pause:9.9.9"
    assert images.image_ref("spark-operator", pins, "9.9.9") == "userstream-spark-operator:2.5.2"
    assert images.image_ref("cloudnative-pg", pins, "9.9.9") == "userstream-cloudnative-pg:1.30.0"
    # CloudNativePG reads the PostgreSQL major from the tag
    assert images.image_ref("postgres", pins, "9.9.9") == "userstream-postgres:15"
    assert images.image_ref("coredns", pins, "9.9.9") == "userstream-coredns:1.15.0"
    assert images.image_tag("ingest") == images.project_version()


def test_every_image_has_its_dockerfile() -> None:
    for spec in images.IMAGES.values():
        assert spec.dockerfile.is_file(), spec.dockerfile
    assert {path.parent.name for path in (REPO / "images").glob("*/Dockerfile")} == set(images.IMAGES)


def test_build_order_puts_bases_first_and_refuses_what_cannot_be_built() -> None:
    assert images.build_order(["spark-operator"], "buildah") == ["spark", "spark-operator"]
    assert images.build_order(["ingest", "pause", "ingest"], "buildah") == ["pause", "ingest"]
    with pytest.raises(UserstreamError, match="docker only"):
        images.build_order(["airflow"], "buildah")
    with pytest.raises(UserstreamError, match="unknown image"):
        images.build_order(["nope"], "buildah")
    assert images.default_images("docker") == ["ingest", "spark", "airflow"]
    assert "airflow" not in images.default_images("buildah")
    assert images.build_order(images.default_images("buildah"), "buildah")[:2] == ["pause", "coredns"]


@pytest.mark.parametrize("name", sorted(images.IMAGES))
def test_build_args_give_every_dockerfile_arg_its_pin(name: str) -> None:
    spec = images.IMAGES[name]
    args = images.build_args(spec, PINS, "0.1.0")
    assert set(args) == set(images.dockerfile_arg_names(spec.dockerfile)) - images.PLATFORM_ARGS
    for key, value in args.items():
        if key == "USERSTREAM_SPARK_IMAGE":
            assert value == "userstream-spark:0.1.0"
        else:
            assert value == PINS[key]


def test_build_args_refuse_an_unpinned_arg(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("ARG NOT_PINNED=1\nFROM scratch\n", encoding="utf-8")
    spec = images.ImageSpec("x", "x", dockerfile)
    with pytest.raises(UserstreamError, match="NOT_PINNED"):
        images.build_args(spec, PINS, "0.1.0")


def test_buildah_command_runs_steps_with_runc_host_network_and_the_sandbox_limits(tmp_path: Path) -> None:
    paths = images.Paths(tmp_path / "cache")
    command = images.buildah_bud_command(
        paths,
        Path("images/ingest/Dockerfile"),
        Path("."),
        "userstream-ingest:0.1.0",
        {"DEBIAN_IMAGE": "debian:bookworm-slim"},
        [(tmp_path / "trust", images.BUILD_TRUST_DIR)],
    )
    text = " ".join(command)
    assert command[:7] == [
        "buildah",
        "--root",
        str(tmp_path / "cache/images/storage/root"),
        "--runroot",
        str(tmp_path / "cache/images/storage/runroot"),
        "--storage-driver",
        "overlay",
    ]
    assert "bud --layers --pull=never --format docker --network host --runtime runc" in text
    assert "--force-rm --ulimit nofile=20000:20000 --ulimit nproc=4096:4096" in text
    assert f"-v {tmp_path}/trust:{images.BUILD_TRUST_DIR}:ro" in text
    assert "--build-arg DEBIAN_IMAGE=debian:bookworm-slim" in text
    assert command[-5:] == ["-f", "images/ingest/Dockerfile", "-t", "userstream-ingest:0.1.0", "."]
    push = images.buildah_push_command(paths, "userstream-ingest:0.1.0", tmp_path / "a.tar")
    assert push[-2:] == [
        "userstream-ingest:0.1.0",
        f"docker-archive:{tmp_path}/a.tar:userstream-ingest:0.1.0",
    ]


def test_docker_command_is_a_plain_docker_build() -> None:
    command = images.docker_build_command(
        Path("images/spark/Dockerfile"), Path("."), "userstream-spark:1", {"A": "b"}
    )
    assert command == [
        "docker",
        "build",
        "-f",
        "images/spark/Dockerfile",
        "-t",
        "userstream-spark:1",
        "--build-arg",
        "A=b",
        ".",
    ]


def test_go_build_command_is_static_niced_and_parallel(tmp_path: Path) -> None:
    command = images.go_build_command(images.SPARK_OPERATOR_BINARY, tmp_path / "out", "v2.5.2", 2)
    assert command[:8] == ["nice", "-n", "19", "go", "build", "-p", "2", "-trimpath"]
    assert "-X k8s.io/component-base/version.gitVersion=v2.5.2" in command[command.index("-ldflags") + 1]
    assert command[-1] == "github.com/kubeflow/spark-operator/v2/cmd/operator"
    assert images.go_env()["CGO_ENABLED"] == "0"
    ldflags = images.go_build_command(images.CLOUDNATIVE_PG_BINARY, tmp_path / "m", "v1.30.0", 2)
    assert "pkg/versions.buildVersion=1.30.0" in " ".join(ldflags)


def test_debootstrap_and_ctr_commands(tmp_path: Path) -> None:
    assert images.debootstrap_command(tmp_path, "http://deb.debian.org/debian") == [
        "debootstrap",
        "--variant=minbase",
        "bookworm",
        str(tmp_path),
        "http://deb.debian.org/debian",
    ]
    assert images.ctr_command(Path("/run/c.sock"), "images", "ls") == [
        "ctr",
        "--address",
        "/run/c.sock",
        "-n",
        "k8s.io",
        "images",
        "ls",
    ]


def test_pip_conf_for_the_build_points_at_the_mounted_bundle() -> None:
    host = "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\nindex-url = https://mirror/simple\n"
    rendered = images.render_build_pip_conf(host, "/dev/t/ca.crt")
    assert "cert = /dev/t/ca.crt" in rendered
    assert "/etc/ssl/certs" not in rendered
    assert "index-url = https://mirror/simple" in rendered
    assert images.render_build_pip_conf(None, "/dev/t/ca.crt") == "[global]\ncert = /dev/t/ca.crt\n"
    assert "cert" not in images.render_build_pip_conf(host, None)
    assert "-Djavax.net.ssl.trustStore=/dev/t/j" in images.render_build_mavenrc("/dev/t/j")


def test_trust_mounts_are_read_from_the_host_and_given_only_where_needed(tmp_path: Path) -> None:
    bundle, pip_conf, cacerts = tmp_path / "ca.crt", tmp_path / "pip.conf", tmp_path / "cacerts"
    bundle.write_text("PEM", encoding="utf-8")
    pip_conf.write_text("[global]\ncert = /x\n", encoding="utf-8")
    cacerts.write_bytes(b"JKS")
    paths = images.Paths(tmp_path / "cache")
    mounts = images.build_trust_mounts(paths, bundle, pip_conf, cacerts)
    targets = [container for _host, container in mounts]
    assert targets == [images.BUILD_TRUST_DIR, "/etc/pip.conf", "/etc/mavenrc"]
    assert (paths.trust / "ca-certificates.crt").read_text(encoding="utf-8") == "PEM"
    assert f"cert = {images.BUILD_TRUST_DIR}/ca-certificates.crt" in (paths.trust / "pip.conf").read_text(
        encoding="utf-8"
    )
    only_pip = images.trust_mounts_for("RUN pip install x", mounts)
    assert [container for _h, container in only_pip] == [images.BUILD_TRUST_DIR, "/etc/pip.conf"]
    assert images.trust_mounts_for("RUN apt-get install postgresql", mounts) == []
    assert len(images.trust_mounts_for("RUN mvn -q && pip wheel .", mounts)) == 3
    # nothing on the host: nothing mounted
    missing = tmp_path / "missing"
    assert images.build_trust_mounts(paths, missing, missing, missing) == []


def test_wrapper_module_requires_exactly_and_copies_upstream_replaces() -> None:
    upstream: dict[str, Any] = {
        "Go": "1.24.10",
        "Replace": [
            {"Old": {"Path": "k8s.io/api"}, "New": {"Path": "k8s.io/api", "Version": "v0.32.5"}},
            {
                "Old": {"Path": "example.com/x", "Version": "v1.0.0"},
                "New": {"Path": "example.com/y", "Version": "v1.1.0"},
            },
            {"Old": {"Path": "example.com/local"}, "New": {"Path": "../local"}},
        ],
    }
    text = images.render_wrapper_go_mod(images.SPARK_OPERATOR_BINARY, "v2.5.2", upstream)
    assert "go 1.24.10" in text
    assert "require github.com/kubeflow/spark-operator/v2 v2.5.2" in text
    assert "\tk8s.io/api => k8s.io/api v0.32.5" in text
    assert "\texample.com/x v1.0.0 => example.com/y v1.1.0" in text
    assert "../local" not in text
    assert "replace" not in images.render_wrapper_go_mod(
        images.CLOUDNATIVE_PG_BINARY, "v1.30.0", {"Go": "1.26.4"}
    )


def test_go_binaries_are_cached_by_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = images.Paths(tmp_path)
    pins = {"SPARK_OPERATOR_VERSION": "2.5.2"}
    built = images.SPARK_OPERATOR_BINARY.path(paths.bin_dir, pins)
    assert built.name == "spark-operator-v2.5.2"
    built.parent.mkdir(parents=True)
    built.write_bytes(b"\x7fELF")
    monkeypatch.setattr(images.shutil, "which", lambda _name: None)  # no Go needed when cached
    assert images.build_go_binary(images.SPARK_OPERATOR_BINARY, paths, pins) == (built, 0.0)
    with pytest.raises(PrerequisiteError, match="Go"):
        images.build_go_binary(images.SPARK_OPERATOR_BINARY, paths, {"SPARK_OPERATOR_VERSION": "2.6.0"})


def test_a_binary_from_this_repository_is_keyed_by_its_source(tmp_path: Path) -> None:
    source = tmp_path / "pause"
    source.mkdir()
    (source / "main.go").write_text("package main\n", encoding="utf-8")
    binary = images.GoBinary(name="pause", package=".", source=source)
    first = binary.version({})
    assert binary.version({}) == first
    (source / "main.go").write_text("package main // changed\n", encoding="utf-8")
    assert binary.version({}) != first


def _docker_archive(path: Path, config_digest: str, tag: str) -> None:
    manifest = json.dumps([{"Config": f"{config_digest}.json", "RepoTags": [tag], "Layers": []}]).encode()
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))


def test_archive_id_and_tag_are_read_from_the_tar(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    _docker_archive(archive, "a" * 64, "userstream-ingest:0.1.0")
    assert images.archive_config_digest(archive) == "a" * 64
    assert images.archive_ref(archive) == "userstream-ingest:0.1.0"
    assert images.archive_config_digest(tmp_path / "missing.tar") is None
    assert images.Paths(tmp_path).archive("userstream-ingest:0.1.0").name == "userstream-ingest_0.1.0.tar"


def test_containerd_names_short_refs_like_docker() -> None:
    assert images.normalized_ref("userstream-ingest:0.1.0") == "docker.io/library/userstream-ingest:0.1.0"
    assert images.normalized_ref("kubeflow/x:1") == "docker.io/kubeflow/x:1"
    assert images.normalized_ref("ghcr.io/a/b:1") == "ghcr.io/a/b:1"
    assert images.normalized_ref("localhost/a:1") == "localhost/a:1"


def test_load_skips_images_containerd_already_has(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    same, changed = tmp_path / "same.tar", tmp_path / "changed.tar"
    _docker_archive(same, "a" * 64, "userstream-ingest:0.1.0")
    _docker_archive(changed, "b" * 64, "userstream-spark:0.1.0")
    present = {"userstream-ingest:0.1.0": "a" * 64, "userstream-spark:0.1.0": "c" * 64}
    imported: list[list[str]] = []
    monkeypatch.setattr(images, "ensure_host_commands", lambda *_args: None)
    monkeypatch.setattr(images, "containerd_config_digest", lambda _socket, ref: present.get(ref))
    monkeypatch.setattr(images, "_run", lambda command, **_kw: imported.append(list(command)) or "")
    results = images.load_into_containerd(Path("/run/c.sock"), [same, changed])
    assert [(result.ref, result.loaded) for result in results] == [
        ("userstream-ingest:0.1.0", False),
        ("userstream-spark:0.1.0", True),
    ]
    assert imported == [["ctr", "--address", "/run/c.sock", "-n", "k8s.io", "images", "import", str(changed)]]


def test_missing_host_commands_fail_with_one_line_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images.shutil, "which", lambda _name: None)
    monkeypatch.setattr(images.os, "geteuid", lambda: 1000)
    with pytest.raises(PrerequisiteError) as error:
        images.ensure_host_commands({"buildah": "buildah", "runc": "runc"}, "to build images")
    message = str(error.value)
    assert "\n" not in message
    assert "buildah" in message
    assert "apt-get install buildah runc" in message


def test_the_base_uses_the_mirror_of_the_hosts_apt(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n",
        encoding="utf-8",
    )
    assert images.host_debian_mirror(tmp_path) == "http://mirror.example/debian"
    other = tmp_path / "other"
    other.mkdir()
    (other / "sources.list").write_text(
        "deb [arch=amd64] http://one.example/debian bookworm main\n", encoding="utf-8"
    )
    assert images.host_debian_mirror(other) == "http://one.example/debian"
    assert images.host_debian_mirror(tmp_path / "none") == images.DEFAULT_DEBIAN_MIRROR
    sources = images.render_debian_sources("http://mirror.example/debian")
    assert "URIs: http://mirror.example/debian-security" in sources


def test_slim_rootfs_drops_docs_caches_and_device_nodes(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    for folder in (
        "usr/share/doc/bash",
        "usr/share/man/man1",
        "var/cache/apt/archives/partial",
        "dev",
        "var/lib/apt/lists",
        "var/log/apt",
        "etc/apt/apt.conf.d",
    ):
        (root / folder).mkdir(parents=True)
    (root / "usr/share/doc/bash/copyright").write_text("c", encoding="utf-8")
    (root / "usr/share/doc/bash/README").write_text("r", encoding="utf-8")
    (root / "usr/share/man/man1/bash.1.gz").write_text("m", encoding="utf-8")
    (root / "var/cache/apt/archives/bash.deb").write_text("d", encoding="utf-8")
    (root / "var/lib/apt/lists/index").write_text("i", encoding="utf-8")
    (root / "var/log/apt/history.log").write_text("h", encoding="utf-8")
    (root / "dev/null").write_text("", encoding="utf-8")
    (root / "etc/apt/sources.list").write_text("deb x bookworm main\n", encoding="utf-8")
    images.slim_rootfs(root, "http://deb.debian.org/debian")
    assert (root / "usr/share/doc/bash/copyright").is_file()
    assert not (root / "usr/share/doc/bash/README").exists()
    assert not any((root / "usr/share/man").iterdir())
    assert not (root / "var/cache/apt/archives/bash.deb").exists()
    assert (root / "var/cache/apt/archives/partial").is_dir()
    assert not any((root / "dev").iterdir())
    assert (root / "var/log/apt").is_dir()
    assert not (root / "var/log/apt/history.log").exists()
    assert not (root / "etc/apt/sources.list").exists()
    assert "bookworm-security" in (root / "etc/apt/sources.list.d/debian.sources").read_text(encoding="utf-8")
    assert "path-exclude /usr/share/doc/*" in (root / "etc/dpkg/dpkg.cfg.d/userstream-slim").read_text(
        encoding="utf-8"
    )


def test_sizes_and_report() -> None:
    assert images.parse_size("77.9 MB") == 77_900_000
    assert images.parse_size("1.2 GB") == 1_200_000_000
    result = images.BuildResult(
        "spark", "userstream-spark:0.1.0", "buildah", 12.4, None, 900_000_000, {"x": 3.0}
    )
    report = images.format_results([result])
    assert "userstream-spark:0.1.0" in report
    assert "900 MB" in report
    assert "x 3 s" in report


def test_the_cli_registers_images_with_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    images.register_images_commands(sub, sockets=lambda: [tmp_path / "node1.sock"])
    calls: dict[str, Any] = {}
    monkeypatch.setattr(
        images, "build_images", lambda names, builder, save: calls.update(names=names, builder=builder) or []
    )
    monkeypatch.setattr(
        images,
        "load_into_containerd",
        lambda socket, tars: calls.setdefault("loaded", []).append(socket) or [],
    )
    args = parser.parse_args(["images", "ingest", "--load"])
    assert args.func(args) == 0
    assert calls == {"names": ["ingest"], "builder": "auto", "loaded": [tmp_path / "node1.sock"]}
    args = parser.parse_args(["images", "--containerd", "/x.sock"])
    calls.clear()
    args.func(args)
    assert calls["loaded"] == [Path("/x.sock")]

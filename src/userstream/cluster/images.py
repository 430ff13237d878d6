"""The container images of userstream and its platform, built from ``images/*/Dockerfile``.

The Dockerfiles are the single source of truth. Where ``docker info`` works they are built with
``docker build`` as any user would; on a machine that reaches only package registries (no container
registry, no Docker engine) they are built by buildah from Debian:

* ``debian:bookworm-slim``, the base every Dockerfile names, is made here with
  ``debootstrap --variant=minbase bookworm`` from the Debian mirror the host's apt uses and
  committed under exactly that name (``docker.io/library/debian:bookworm-slim``), so
  ``FROM debian:bookworm-slim`` resolves to it without a pull;
* ``buildah bud`` runs every ``RUN`` step with runc, host networking and explicit ulimits (the
  sandbox lacks CAP_SYS_RESOURCE: rlimits cannot be raised above nofile 20000);
* the host's trust (an egress proxy's CA in the CA bundle, ``/etc/pip.conf``, Java's cacerts) is
  handed to the ``RUN`` steps as read-only bind mounts at build time only, never written into a
  Dockerfile or an image (see :func:`build_trust_mounts`);
* the operator binaries (Kubeflow Spark operator, CloudNativePG) and the pause binary are built on
  the host with Go from the module proxy and copied in from a staged build context.

All of buildah's storage lives under ``<cache>/images/`` (``--root``/``--runroot``), nothing under
/var/lib/containers. Each built image is also written as a docker-archive tar into
``<cache>/images/`` (tagged ``name:tag``), which :func:`load_into_containerd` imports into a
cluster's containerd.

CLI: ``python -m userstream.cluster.images [build] [NAME ...] [--load SOCKET ...]`` (``make
images``), or ``userstream cluster images`` through :func:`register_images_commands`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from userstream.errors import PrerequisiteError, UserstreamError
from userstream.versions import pinned

REPO_ROOT = Path(__file__).resolve().parents[3]
IMAGES_DIR = REPO_ROOT / "images"

# The sandbox's limits: rlimits cannot be raised (no CAP_SYS_RESOURCE); crun fails on them.
CONTAINER_RUNTIME = "runc"
ULIMITS = ("nofile=20000:20000", "nproc=4096:4096")
BASE_IMAGE = "debian:bookworm-slim"
BASE_IMAGE_FULL = "docker.io/library/debian:bookworm-slim"
DEBIAN_SUITE = "bookworm"
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"
# Where the host's trust files appear inside RUN steps. /dev is a tmpfs in every RUN container, so
# a mount point there never ends up in a layer (mount points elsewhere are left in the image).
BUILD_TRUST_DIR = "/dev/userstream-build-trust"
CONTAINERD_NAMESPACE = "k8s.io"
GO_BUILD_TIMEOUT_S = 3600
BUILD_TIMEOUT_S = 3600

# command -> Debian package that provides it (installed by ensure_host_commands when missing)
BUILDAH_COMMANDS = {"buildah": "buildah", "runc": "runc"}
BASE_COMMANDS = {"debootstrap": "debootstrap"}
CONTAINERD_COMMANDS = {"ctr": "containerd"}


# ---- versions and tags ---------------------------------------------------------------------------


def project_version(repo_root: Path = REPO_ROOT) -> str:
    project: dict[str, Any] = tomllib.loads((repo_root / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"
    ]
    return str(project["version"])


def image_tag(name: str, pins: Mapping[str, str] | None = None, version: str | None = None) -> str:
    """The tag of image ``name``: the one place that decides it.

    The project's own images (and the pause image) carry the project version, which the chart, the
    Airflow values and the DAGs use; the platform images carry the version of what they contain.
    """
    pins = pinned() if pins is None else pins
    if name == "spark-operator":
        return pins["SPARK_OPERATOR_VERSION"].removeprefix("v")
    if name == "cloudnative-pg":
        return pins["CLOUDNATIVE_PG_VERSION"].removeprefix("v")
    if name == "coredns":
        return pins["COREDNS_VERSION"].removeprefix("v")
    if name == "postgres":
        # CloudNativePG reads the PostgreSQL major from the tag (docs/src/container_images.md)
        return pins["POSTGRES_CNPG_MAJOR"]
    return own_images_tag() if version is None else version


def own_images_tag() -> str:
    """The tag of the project's own images: USERSTREAM_IMAGE_TAG (make's IMAGE_TAG), else the version."""
    return os.environ.get("USERSTREAM_IMAGE_TAG") or project_version()


def image_ref(name: str, pins: Mapping[str, str] | None = None, version: str | None = None) -> str:
    return f"{IMAGES[name].repository}:{image_tag(name, pins, version)}"


# ---- what is built -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoBinary:
    """A static Go binary built on the host.

    ``module`` at ``version`` from the module proxy, built through a throwaway wrapper module that
    requires it exactly and copies its ``replace`` directives; or, with ``source``, a module folder
    in this repository (its cache key is a hash of its files).
    """

    name: str
    package: str
    module: str = ""
    version_key: str = ""
    source: Path | None = None
    ldflags: Callable[[str], tuple[str, ...]] = field(default=lambda _version: ())

    def version(self, pins: Mapping[str, str]) -> str:
        if self.source is not None:
            digest = hashlib.sha256()
            for path in sorted(self.source.rglob("*")):
                if path.is_file():
                    digest.update(path.relative_to(self.source).as_posix().encode())
                    digest.update(path.read_bytes())
            return digest.hexdigest()[:12]
        value = pins[self.version_key]
        return value if value.startswith("v") else f"v{value}"

    def path(self, bin_dir: Path, pins: Mapping[str, str]) -> Path:
        return bin_dir / f"{self.name}-{self.version(pins)}"


def _spark_operator_ldflags(version: str) -> tuple[str, ...]:
    # spark-operator v2.5.2 Makefile (LDFLAGS of build-operator)
    return (
        "-s",
        "-w",
        f"-X k8s.io/component-base/version.gitVersion={version}",
        "-X k8s.io/component-base/version.gitTreeState=clean",
    )


def _cloudnative_pg_ldflags(version: str) -> tuple[str, ...]:
    # cloudnative-pg v1.30.0 .goreleaser.yml (build "manager")
    return (
        "-s",
        "-w",
        f"-X github.com/cloudnative-pg/cloudnative-pg/pkg/versions.buildVersion={version[1:]}",
    )


SPARK_OPERATOR_BINARY = GoBinary(
    name="spark-operator",
    module="github.com/kubeflow/spark-operator/v2",
    version_key="SPARK_OPERATOR_VERSION",
    # spark-operator v2.5.2 Makefile, build-operator: go build ... cmd/operator/main.go
    package="github.com/kubeflow/spark-operator/v2/cmd/operator",
    ldflags=_spark_operator_ldflags,
)
CLOUDNATIVE_PG_BINARY = GoBinary(
    name="manager",
    module="github.com/cloudnative-pg/cloudnative-pg",
    version_key="CLOUDNATIVE_PG_VERSION",
    # cloudnative-pg v1.30.0 Makefile, build-manager: go build -o bin/manager ./cmd/manager
    package="github.com/cloudnative-pg/cloudnative-pg/cmd/manager",
    ldflags=_cloudnative_pg_ldflags,
)
COREDNS_BINARY = GoBinary(
    name="coredns",
    module="github.com/coredns/coredns",
    version_key="COREDNS_VERSION",
    # coredns v1.15.0 Makefile: the main package is the module's root
    package="github.com/coredns/coredns",
    ldflags=lambda _version: ("-s", "-w"),
)
PAUSE_BINARY = GoBinary(
    name="pause", package=".", source=IMAGES_DIR / "pause", ldflags=lambda _v: ("-s", "-w")
)


@dataclass(frozen=True)
class ImageSpec:
    """One image: its Dockerfile and what its build context holds."""

    name: str
    repository: str
    dockerfile: Path
    # the repository root is the build context, or (with binaries) a staged folder holding them
    binaries: tuple[GoBinary, ...] = ()
    context: Path = REPO_ROOT
    depends_on: tuple[str, ...] = ()
    # built by the local (buildah) path; the docker path builds every image that a kind cluster uses
    local: bool = True
    docker_default: bool = False


IMAGES: dict[str, ImageSpec] = {
    spec.name: spec
    for spec in (
        # what every node needs first: the pod sandbox and cluster DNS
        ImageSpec("pause", "userstream-pause", IMAGES_DIR / "pause" / "Dockerfile", binaries=(PAUSE_BINARY,)),
        ImageSpec(
            "coredns", "userstream-coredns", IMAGES_DIR / "coredns" / "Dockerfile", binaries=(COREDNS_BINARY,)
        ),
        ImageSpec("ingest", "userstream-ingest", IMAGES_DIR / "ingest" / "Dockerfile", docker_default=True),
        ImageSpec("spark", "userstream-spark", IMAGES_DIR / "spark" / "Dockerfile", docker_default=True),
        # apache/airflow cannot be pulled here: the Airflow image is built with docker only
        ImageSpec(
            "airflow",
            "userstream-airflow",
            IMAGES_DIR / "airflow" / "Dockerfile",
            local=False,
            docker_default=True,
        ),
        ImageSpec(
            "spark-operator",
            "userstream-spark-operator",
            IMAGES_DIR / "spark-operator" / "Dockerfile",
            binaries=(SPARK_OPERATOR_BINARY,),
            depends_on=("spark",),
        ),
        ImageSpec(
            "cloudnative-pg",
            "userstream-cloudnative-pg",
            IMAGES_DIR / "cloudnative-pg" / "Dockerfile",
            binaries=(CLOUDNATIVE_PG_BINARY,),
        ),
        ImageSpec(
            "postgres",
            "userstream-postgres",
            IMAGES_DIR / "postgres" / "Dockerfile",
            context=IMAGES_DIR / "postgres",
        ),
    )
}


def default_images(builder: str) -> list[str]:
    if builder == "docker":
        return [name for name, spec in IMAGES.items() if spec.docker_default]
    return [name for name, spec in IMAGES.items() if spec.local]


def build_order(names: Iterable[str], builder: str) -> list[str]:
    """``names`` with the images they build on first, each once, in IMAGES order."""
    wanted: set[str] = set()

    def add(name: str) -> None:
        if name not in IMAGES:
            raise UserstreamError(f"unknown image {name!r}: choose from {', '.join(IMAGES)}")
        if builder != "docker" and not IMAGES[name].local:
            raise UserstreamError(f"image {name!r} is built with docker only (its base cannot be made here)")
        wanted.add(name)
        for dependency in IMAGES[name].depends_on:
            add(dependency)

    for name in names:
        add(name)
    return [name for name in IMAGES if name in wanted]


_ARG = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?\s*$", re.MULTILINE)


def dockerfile_arg_names(dockerfile: Path) -> list[str]:
    names: list[str] = []
    for name, _default in _ARG.findall(dockerfile.read_text(encoding="utf-8")):
        if name not in names:
            names.append(name)
    return names


# the automatic platform ARGs of Dockerfiles (Docker docs, "Automatic platform ARGs in the global scope")
PLATFORM_ARGS = frozenset(
    {"TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT", "BUILDPLATFORM", "BUILDOS", "BUILDARCH"}
)


def build_args(spec: ImageSpec, pins: Mapping[str, str], version: str) -> dict[str, str]:
    """Every ARG of the Dockerfile, from versions.env (``USERSTREAM_<NAME>_IMAGE``: our own image)."""
    args: dict[str, str] = {}
    for name in dockerfile_arg_names(spec.dockerfile):
        if name in PLATFORM_ARGS:
            continue  # set by the builder itself (docker BuildKit and buildah both do)
        match = re.fullmatch(r"USERSTREAM_([A-Z0-9_]+)_IMAGE", name)
        if match:
            args[name] = image_ref(match.group(1).lower().replace("_", "-"), pins, version)
        elif name in pins:
            args[name] = pins[name]
        else:
            raise UserstreamError(f"{spec.dockerfile}: ARG {name} is not pinned in versions.env")
    return args


# ---- locations -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paths:
    """Everything the image builds keep, under ``<cache>/images``."""

    cache_dir: Path

    @property
    def root(self) -> Path:
        return self.cache_dir / "images"

    @property
    def storage_root(self) -> Path:
        return self.root / "storage" / "root"

    @property
    def storage_runroot(self) -> Path:
        return self.root / "storage" / "runroot"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def go_dir(self) -> Path:
        return self.root / "go"

    @property
    def contexts(self) -> Path:
        return self.root / "context"

    @property
    def trust(self) -> Path:
        return self.root / "build-trust"

    def archive(self, ref: str) -> Path:
        return self.root / (ref.replace("/", "_").replace(":", "_") + ".tar")


def default_cache_dir() -> Path:
    explicit = os.environ.get("USERSTREAM_CACHE_DIR")
    return Path(explicit).resolve() if explicit else REPO_ROOT / ".cache"


# ---- host prerequisites --------------------------------------------------------------------------


def ensure_host_commands(commands: Mapping[str, str], purpose: str) -> None:
    """Install the Debian packages of missing ``commands`` (command -> package) with apt-get.

    Only as root on a machine with apt-get; otherwise a one-line error says what is missing.
    """
    missing = {command: package for command, package in commands.items() if shutil.which(command) is None}
    if not missing:
        return
    packages = sorted(set(missing.values()))
    what = f"{', '.join(missing)} (Debian: {' '.join(packages)}) needed {purpose}"
    if os.geteuid() != 0:
        raise PrerequisiteError(
            f"{what} is missing and only root can install it: apt-get install {' '.join(packages)}"
        )
    if shutil.which("apt-get") is None:
        raise PrerequisiteError(f"{what} is missing and this machine has no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"images: installing {' '.join(packages)} with apt-get", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    result = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=False, env=env
    )
    still = [command for command in missing if shutil.which(command) is None]
    if result.returncode != 0 or still:
        raise PrerequisiteError(f"{what}: apt-get install {' '.join(packages)} failed")


def docker_available(docker: str = "docker") -> bool:
    if shutil.which(docker) is None:
        return False
    result = subprocess.run([docker, "info"], capture_output=True, check=False, timeout=60)
    return result.returncode == 0


def choose_builder(requested: str = "auto") -> str:
    if requested in {"docker", "buildah"}:
        return requested
    if requested != "auto":
        raise UserstreamError(f"unknown builder {requested!r}: auto, docker or buildah")
    return "docker" if docker_available() else "buildah"


# ---- command lines (pure) ------------------------------------------------------------------------


def buildah_global_args(paths: Paths) -> list[str]:
    return [
        "buildah",
        "--root",
        str(paths.storage_root),
        "--runroot",
        str(paths.storage_runroot),
        "--storage-driver",
        "overlay",
    ]


CONTAINERS_CONF = """\
# written by userstream: buildah's network configuration (a CNI lock file even with host networking)
# stays in the image cache instead of /etc/cni on the host
[network]
network_config_dir = "{cni_dir}"
"""


def buildah_env(paths: Paths) -> dict[str, str]:
    # buildah's temporary files (image copies, blobs) go to TMPDIR: keep them in the cache too
    conf = paths.root / "containers.conf"
    text = CONTAINERS_CONF.format(cni_dir=paths.root / "cni")
    if not conf.is_file() or conf.read_text(encoding="utf-8") != text:
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(text, encoding="utf-8")
    return {**os.environ, "TMPDIR": str(paths.tmp), "BUILDAH_ISOLATION": "oci", "CONTAINERS_CONF": str(conf)}


def buildah_bud_command(
    paths: Paths,
    dockerfile: Path,
    context: Path,
    ref: str,
    args: Mapping[str, str],
    mounts: Sequence[tuple[Path, str]] = (),
) -> list[str]:
    command = [
        *buildah_global_args(paths),
        "bud",
        "--layers",
        "--pull=never",
        "--format",
        "docker",
        "--network",
        "host",
        "--runtime",
        CONTAINER_RUNTIME,
        "--isolation",
        "oci",
        # remove the step containers also when a step fails (no mounts or containers left behind)
        "--force-rm",
    ]
    for ulimit in ULIMITS:
        command += ["--ulimit", ulimit]
    for host, container in mounts:
        command += ["-v", f"{host}:{container}:ro"]
    for name, value in args.items():
        command += ["--build-arg", f"{name}={value}"]
    command += ["-f", str(dockerfile), "-t", ref, str(context)]
    return command


def buildah_push_command(paths: Paths, ref: str, archive: Path) -> list[str]:
    return [*buildah_global_args(paths), "push", "--quiet", ref, f"docker-archive:{archive}:{ref}"]


def docker_build_command(
    dockerfile: Path, context: Path, ref: str, args: Mapping[str, str], docker: str = "docker"
) -> list[str]:
    command = [docker, "build", "-f", str(dockerfile), "-t", ref]
    for name, value in args.items():
        command += ["--build-arg", f"{name}={value}"]
    return [*command, str(context)]


def debootstrap_command(target: Path, mirror: str) -> list[str]:
    return ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(target), mirror]


def go_build_command(binary: GoBinary, output: Path, version: str, jobs: int) -> list[str]:
    command = ["nice", "-n", "19", "go", "build", "-p", str(jobs), "-trimpath"]
    ldflags = binary.ldflags(version)
    if ldflags:
        command += ["-ldflags", " ".join(ldflags)]
    return [*command, "-o", str(output), binary.package]


def ctr_command(socket_path: Path, *args: str, namespace: str = CONTAINERD_NAMESPACE) -> list[str]:
    return ["ctr", "--address", str(socket_path), "-n", namespace, *args]


# ---- the host's trust at build time --------------------------------------------------------------

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
HOST_PIP_CONF = Path("/etc/pip.conf")
HOST_JAVA_CACERTS = Path("/etc/ssl/certs/java/cacerts")


def render_build_pip_conf(host_pip_conf: str | None, ca_bundle: str | None) -> str:
    """The host's pip.conf with ``cert`` pointing at the bundle mounted into the RUN step."""
    lines = (host_pip_conf or "").splitlines()
    out: list[str] = []
    replaced = False
    for line in lines:
        if re.match(r"^\s*cert\s*[=:]", line):
            if ca_bundle:
                out.append(f"cert = {ca_bundle}")
                replaced = True
            continue
        out.append(line)
    if ca_bundle and not replaced:
        if not any(line.strip() == "[global]" for line in out):
            out.append("[global]")
        index = next(i for i, line in enumerate(out) if line.strip() == "[global]")
        out.insert(index + 1, f"cert = {ca_bundle}")
    return "\n".join(out) + "\n"


def render_build_mavenrc(java_cacerts: str) -> str:
    # /etc/mavenrc is sourced by Maven's launcher (mvn) before it starts Java
    return f'MAVEN_OPTS="${{MAVEN_OPTS:-}} -Djavax.net.ssl.trustStore={java_cacerts}"\n'


def trust_mounts_for(dockerfile_text: str, mounts: Sequence[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """The trust mounts a Dockerfile needs: pip's config only where it runs pip, mavenrc only for mvn."""
    runs_pip = re.search(r"\bpip\b", dockerfile_text) is not None
    runs_mvn = re.search(r"\bmvn\b", dockerfile_text) is not None
    chosen: list[tuple[Path, str]] = []
    for host, container in mounts:
        if (container == "/etc/pip.conf" and not runs_pip) or (container == "/etc/mavenrc" and not runs_mvn):
            continue
        if container == BUILD_TRUST_DIR and not (runs_pip or runs_mvn):
            continue
        chosen.append((host, container))
    return chosen


def build_trust_mounts(
    paths: Paths,
    ca_bundle: Path = HOST_CA_BUNDLE,
    pip_conf: Path = HOST_PIP_CONF,
    java_cacerts: Path = HOST_JAVA_CACERTS,
) -> list[tuple[Path, str]]:
    """Read-only mounts that give RUN steps the host's trust, at build time only (buildah path).

    The CA bundle and Java's cacerts go to BUILD_TRUST_DIR (inside the RUN container's /dev tmpfs:
    nothing is left in the image). pip and Maven are pointed at them by two small files mounted at
    /etc/pip.conf and /etc/mavenrc, where pip and mvn look; buildah 1.28 leaves those two mount
    points behind as empty files in the image (harmless: an empty pip.conf and mavenrc configure
    nothing). Docker users need none of this: their builds reach the registries directly.
    """
    trust = paths.trust
    trust.mkdir(parents=True, exist_ok=True)
    mounts: list[tuple[Path, str]] = []
    bundle_inside = None
    if ca_bundle.is_file():
        shutil.copyfile(ca_bundle, trust / "ca-certificates.crt")
        bundle_inside = f"{BUILD_TRUST_DIR}/ca-certificates.crt"
    if java_cacerts.is_file():
        shutil.copyfile(java_cacerts, trust / "java-cacerts")
        (trust / "mavenrc").write_text(
            render_build_mavenrc(f"{BUILD_TRUST_DIR}/java-cacerts"), encoding="utf-8"
        )
    if bundle_inside or java_cacerts.is_file():
        mounts.append((trust, BUILD_TRUST_DIR))
    if pip_conf.is_file() or bundle_inside:
        host_text = pip_conf.read_text(encoding="utf-8") if pip_conf.is_file() else None
        (trust / "pip.conf").write_text(render_build_pip_conf(host_text, bundle_inside), encoding="utf-8")
        mounts.append((trust / "pip.conf", "/etc/pip.conf"))
    if java_cacerts.is_file():
        mounts.append((trust / "mavenrc", "/etc/mavenrc"))
    return mounts


# ---- running things ------------------------------------------------------------------------------


def _run(
    command: Sequence[str],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = BUILD_TIMEOUT_S,
    capture: bool = False,
) -> str:
    try:
        result = subprocess.run(
            list(command),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout,
            check=False,
            text=True,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
        )
    except subprocess.TimeoutExpired as exc:
        raise UserstreamError(f"{what}: timed out after {timeout:.0f} s") from exc
    if result.returncode != 0:
        detail = (result.stderr or "").strip().splitlines()[-3:] if capture else []
        raise UserstreamError(f"{what} failed (exit {result.returncode}): {' | '.join(detail) or command[0]}")
    return result.stdout if capture else ""


def buildah_image_id(paths: Paths, ref: str) -> str | None:
    result = subprocess.run(
        [*buildah_global_args(paths), "inspect", "--type", "image", "--format", "{{.FromImageID}}", ref],
        capture_output=True,
        text=True,
        check=False,
        env=buildah_env(paths),
    )
    value = result.stdout.strip()
    return value if result.returncode == 0 and value else None


def host_debian_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive the host's apt uses (deb822 or one-line sources), else deb.debian.org."""
    candidates = [*sorted((sources_dir / "sources.list.d").glob("*.sources")), sources_dir / "sources.list"]
    for path in candidates:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                key, sep, value = line.partition(":")
                if sep and not key.startswith("#"):
                    fields[key.strip().lower()] = value.strip()
            if (
                DEBIAN_SUITE in fields.get("suites", "").split()
                and "deb" in fields.get("types", "deb").split()
            ):
                for uri in fields.get("uris", "").split():
                    if uri.rstrip("/").endswith("/debian"):
                        return uri.rstrip("/")
        for line in text.splitlines():
            parts = re.sub(r"\[[^\]]*\]", " ", line).split()
            debian = len(parts) >= 3 and parts[0] == "deb" and parts[2] == DEBIAN_SUITE
            if debian and parts[1].rstrip("/").endswith("/debian"):
                return parts[1].rstrip("/")
    return DEFAULT_DEBIAN_MIRROR


def render_debian_sources(mirror: str) -> str:
    """/etc/apt/sources.list.d/debian.sources of the base, as the official image has it."""
    security = mirror.rsplit("/", 1)[0] + "/debian-security"
    return (
        "Types: deb\n"
        f"URIs: {mirror}\n"
        f"Suites: {DEBIAN_SUITE} {DEBIAN_SUITE}-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        "\n"
        "Types: deb\n"
        f"URIs: {security}\n"
        f"Suites: {DEBIAN_SUITE}-security\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


# What makes a minbase bootstrap "slim": no documentation, man pages or translations in later
# installs (copyright files stay), apt's caches cleaned after every install. Written for userstream,
# after the behaviour of Debian's official slim images.
SLIM_DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
"""
_APT_CLEAN = (
    "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"
)
SLIM_APT_CLEAN = (
    f'DPkg::Post-Invoke {{ "{_APT_CLEAN}"; }};\n'
    f'APT::Update::Post-Invoke {{ "{_APT_CLEAN}"; }};\n'
    'Dir::Cache::pkgcache "";\n'
    'Dir::Cache::srcpkgcache "";\n'
)


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink()


def slim_rootfs(rootfs: Path, mirror: str) -> None:
    """Trim a debootstrapped tree to what an image needs and configure it like the official one."""
    for folder in (
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
        "usr/share/groff",
        "usr/share/lintian",
        "dev",
        "var/lib/apt/lists",
        "var/cache/apt/archives",
    ):
        target = rootfs / folder
        if target.is_dir():
            for entry in target.iterdir():
                if entry.name not in {"partial", "lock"}:
                    _remove(entry)
    doc = rootfs / "usr/share/doc"
    if doc.is_dir():
        for package in doc.iterdir():
            if package.is_dir() and not package.is_symlink():
                for entry in package.iterdir():
                    if entry.name != "copyright":
                        _remove(entry)
    for log in (rootfs / "var/log").rglob("*"):
        if log.is_file():
            log.unlink()
    for name in (
        "var/cache/apt/pkgcache.bin",
        "var/cache/apt/srcpkgcache.bin",
        "etc/hostname",
        "etc/resolv.conf",
        "etc/apt/sources.list",
    ):
        (rootfs / name).unlink(missing_ok=True)
    (rootfs / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/dpkg/dpkg.cfg.d/userstream-slim").write_text(SLIM_DPKG_EXCLUDES, encoding="utf-8")
    (rootfs / "etc/apt/apt.conf.d/userstream-clean").write_text(SLIM_APT_CLEAN, encoding="utf-8")
    (rootfs / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
        render_debian_sources(mirror), encoding="utf-8"
    )


def ensure_base_image(paths: Paths, mirror: str | None = None) -> float:
    """``debian:bookworm-slim`` in buildah's storage, made with debootstrap (skipped when present).

    Returns the seconds it took (0 when it was there already).
    """
    if buildah_image_id(paths, BASE_IMAGE_FULL):
        return 0.0
    ensure_host_commands({**BUILDAH_COMMANDS, **BASE_COMMANDS}, "to make the base image debian:bookworm-slim")
    if os.geteuid() != 0:
        raise PrerequisiteError("making debian:bookworm-slim with debootstrap needs root")
    mirror = mirror or host_debian_mirror()
    started = time.monotonic()
    paths.tmp.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="debootstrap-", dir=paths.tmp))
    rootfs = work / "rootfs"
    print(f"images: {BASE_IMAGE}: debootstrap --variant=minbase {DEBIAN_SUITE} from {mirror}", flush=True)
    container = ""
    try:
        _run(debootstrap_command(rootfs, mirror), what="debootstrap", capture=True)
        slim_rootfs(rootfs, mirror)
        env = buildah_env(paths)
        buildah = buildah_global_args(paths)
        container = _run(
            [*buildah, "from", "scratch"], what="buildah from scratch", env=env, capture=True
        ).strip()
        mountpoint = _run([*buildah, "mount", container], what="buildah mount", env=env, capture=True).strip()
        try:
            packer = subprocess.Popen(
                ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", "-", "."], stdout=subprocess.PIPE
            )
            unpacker = subprocess.run(
                ["tar", "-C", mountpoint, "--numeric-owner", "-xpf", "-"], stdin=packer.stdout, check=False
            )
            if packer.stdout is not None:
                packer.stdout.close()
            if packer.wait() != 0 or unpacker.returncode != 0:
                raise UserstreamError("copying the debootstrapped tree into the image failed")
        finally:
            _run([*buildah, "umount", container], what="buildah umount", env=env, capture=True)
        _run(
            [
                *buildah,
                "config",
                "--cmd",
                "bash",
                "--os",
                "linux",
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                container,
            ],
            what="buildah config",
            env=env,
            capture=True,
        )
        _run(
            [*buildah, "config", "--cmd", '["bash"]', container], what="buildah config", env=env, capture=True
        )
        _run(
            [*buildah, "commit", "--quiet", "--format", "docker", container, BASE_IMAGE_FULL],
            what="buildah commit",
            env=env,
            capture=True,
        )
    finally:
        if container:
            subprocess.run(
                [*buildah_global_args(paths), "rm", container],
                capture_output=True,
                check=False,
                env=buildah_env(paths),
            )
        shutil.rmtree(work, ignore_errors=True)
    return time.monotonic() - started


# ---- Go binaries ---------------------------------------------------------------------------------


def go_env() -> dict[str, str]:
    # default Go caches (GOCACHE, GOMODCACHE); never download a toolchain
    return {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod -buildvcs=false"}


def render_wrapper_go_mod(binary: GoBinary, version: str, upstream: Mapping[str, Any]) -> str:
    """go.mod of the throwaway module that builds ``binary``: an exact require and upstream's replaces."""
    lines = [f"module userstream.build/{binary.name}", "", f"go {upstream.get('Go') or '1.24'}", ""]
    lines.append(f"require {binary.module} {version}")
    replaces = []
    for replace in upstream.get("Replace") or []:
        old, new = replace["Old"], replace["New"]
        if not new.get("Version"):
            continue  # a replace by a local folder of upstream's tree cannot apply here
        old_spec = old["Path"] + (f" {old['Version']}" if old.get("Version") else "")
        replaces.append(f"\t{old_spec} => {new['Path']} {new['Version']}")
    if replaces:
        lines += ["", "replace (", *replaces, ")"]
    return "\n".join(lines) + "\n"


def build_go_binary(binary: GoBinary, paths: Paths, pins: Mapping[str, str]) -> tuple[Path, float]:
    """Build ``binary`` into ``<cache>/images/bin`` unless it is there (returns path, seconds)."""
    version = binary.version(pins)
    output = binary.path(paths.bin_dir, pins)
    if output.is_file():
        return output, 0.0
    if shutil.which("go") is None:
        raise PrerequisiteError(
            f"Go (>= 1.24, https://go.dev/dl) is needed to build {binary.name} {version} and is not on PATH"
        )
    started = time.monotonic()
    paths.bin_dir.mkdir(parents=True, exist_ok=True)
    env = go_env()
    temporary = output.with_name(output.name + ".tmp")
    jobs = os.cpu_count() or 1
    if binary.source is not None:
        workdir = binary.source
    else:
        info = json.loads(
            _run(
                ["go", "mod", "download", "-json", f"{binary.module}@{version}"],
                what=f"go mod download {binary.module}@{version}",
                env=env,
                capture=True,
                cwd=paths.root,
            )
        )
        upstream = json.loads(
            _run(
                ["go", "mod", "edit", "-json", info["GoMod"]],
                what="go mod edit -json",
                env=env,
                capture=True,
                cwd=paths.root,
            )
        )
        workdir = paths.go_dir / f"{binary.name}-{version}"
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "go.mod").write_text(render_wrapper_go_mod(binary, version, upstream), encoding="utf-8")
    print(f"images: go build {binary.package} ({binary.name} {version})", flush=True)
    _run(
        go_build_command(binary, temporary, version, jobs),
        what=f"go build {binary.name}",
        env=env,
        cwd=workdir,
        timeout=GO_BUILD_TIMEOUT_S,
    )
    temporary.replace(output)
    return output, time.monotonic() - started


# ---- images --------------------------------------------------------------------------------------


@dataclass
class BuildResult:
    name: str
    ref: str
    builder: str
    seconds: float
    archive: Path | None
    size_bytes: int
    binaries: dict[str, float] = field(default_factory=dict)


def stage_context(spec: ImageSpec, paths: Paths, binaries: Mapping[str, Path]) -> Path:
    """The build context of an image made of prebuilt binaries: a folder holding just them."""
    if not spec.binaries:
        return spec.context
    folder = paths.contexts / spec.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, source in binaries.items():
        target = folder / name
        shutil.copyfile(source, target)
        target.chmod(0o755)
    return folder


def archive_config_digest(archive: Path) -> str | None:
    """The image id (config digest) recorded in a docker-archive tar, or None."""
    if not archive.is_file():
        return None
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                return None
            manifest = json.loads(member.read())
    except (tarfile.TarError, KeyError, ValueError, OSError):
        return None
    config = str(manifest[0]["Config"])
    digest = config.removeprefix("blobs/sha256/").removesuffix(".json")
    return digest if re.fullmatch(r"[0-9a-f]{64}", digest) else None


def archive_ref(archive: Path) -> str | None:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            return None
        tags = json.loads(member.read())[0].get("RepoTags") or []
    return str(tags[0]) if tags else None


def build_image(
    spec: ImageSpec,
    builder: str,
    paths: Paths,
    pins: Mapping[str, str],
    version: str,
    mounts: Sequence[tuple[Path, str]] = (),
    save: bool = True,
) -> BuildResult:
    """Build one image; write its docker-archive (with docker only when ``save``)."""
    ref = image_ref(spec.name, pins, version)
    binary_times: dict[str, float] = {}
    binaries: dict[str, Path] = {}
    for binary in spec.binaries:
        binaries[binary.name], binary_times[binary.name] = build_go_binary(binary, paths, pins)
    context = stage_context(spec, paths, binaries)
    args = build_args(spec, pins, version)
    archive = paths.archive(ref)
    print(f"images: building {ref} with {builder}", flush=True)
    started = time.monotonic()
    if builder == "docker":
        _run(docker_build_command(spec.dockerfile, context, ref, args), what=f"docker build {ref}")
        if not save:
            return BuildResult(spec.name, ref, builder, time.monotonic() - started, None, 0, binary_times)
        _run(["docker", "save", "-o", str(archive), ref], what=f"docker save {ref}")
    else:
        env = buildah_env(paths)
        needed = trust_mounts_for(spec.dockerfile.read_text(encoding="utf-8"), mounts)
        _run(
            buildah_bud_command(paths, spec.dockerfile, context, ref, args, needed),
            what=f"buildah bud {ref}",
            env=env,
        )
        image_id = buildah_image_id(paths, ref)
        if image_id is None or archive_config_digest(archive) != image_id:
            temporary = archive.with_name(archive.name + ".tmp")
            temporary.unlink(missing_ok=True)
            _run(
                buildah_push_command(paths, ref, temporary), what=f"buildah push {ref}", env=env, capture=True
            )
            temporary.replace(archive)
    seconds = time.monotonic() - started
    return BuildResult(spec.name, ref, builder, seconds, archive, archive.stat().st_size, binary_times)


def build_images(
    names: Sequence[str] = (),
    builder: str = "auto",
    cache_dir: Path | None = None,
    pins: Mapping[str, str] | None = None,
    version: str | None = None,
    save: bool = True,
) -> list[BuildResult]:
    """Build ``names`` (default: every image of the chosen builder) and write their archives
    (docker-archive tars under ``<cache>/images``; with docker only when ``save``)."""
    builder = choose_builder(builder)
    pins = pinned() if pins is None else pins
    version = own_images_tag() if version is None else version
    paths = Paths(cache_dir or default_cache_dir())
    order = build_order(names or default_images(builder), builder)
    paths.root.mkdir(parents=True, exist_ok=True)
    results: list[BuildResult] = []
    mounts: list[tuple[Path, str]] = []
    if builder == "buildah":
        ensure_host_commands(BUILDAH_COMMANDS, "to build images without Docker")
        if os.geteuid() != 0:
            raise PrerequisiteError(
                "building images with buildah here needs root (the base comes from debootstrap)"
            )
        paths.tmp.mkdir(parents=True, exist_ok=True)
        base_seconds = ensure_base_image(paths)
        results.append(
            BuildResult(
                "base", BASE_IMAGE, builder, base_seconds, None, _buildah_image_size(paths, BASE_IMAGE_FULL)
            )
        )
        mounts = build_trust_mounts(paths)
    for name in order:
        results.append(build_image(IMAGES[name], builder, paths, pins, version, mounts, save))
    return results


def _buildah_image_size(paths: Paths, ref: str) -> int:
    result = subprocess.run(
        [*buildah_global_args(paths), "images", "--json", ref],
        capture_output=True,
        text=True,
        check=False,
        env=buildah_env(paths),
    )
    if result.returncode != 0:
        return 0
    try:
        return parse_size(str(json.loads(result.stdout)[0]["size"]))
    except (ValueError, KeyError, IndexError, TypeError):
        return 0


_UNITS = {"B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}


def parse_size(text: str) -> int:
    """buildah's human size ("77.9 MB") in bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?B)\s*", text.upper())
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


# ---- containerd ----------------------------------------------------------------------------------


def normalized_ref(ref: str) -> str:
    """The name containerd gives a docker-archive's tag (docker.io/library/ for short names)."""
    name = ref.split("@", 1)[0]
    first = name.split("/", 1)[0]
    if "/" not in name:
        return f"docker.io/library/{name}"
    if "." in first or ":" in first or first == "localhost":
        return name
    return f"docker.io/{name}"


def containerd_config_digest(socket_path: Path, ref: str) -> str | None:
    """The config digest (image id) of ``ref`` in containerd, or None when it has no such image."""
    listing = subprocess.run(
        ctr_command(socket_path, "images", "ls", f"name=={normalized_ref(ref)}"),
        capture_output=True,
        text=True,
        check=False,
    )
    rows = [line.split() for line in listing.stdout.splitlines()[1:] if line.strip()]
    if listing.returncode != 0 or not rows:
        return None
    target = next((column for column in rows[0] if column.startswith("sha256:")), None)
    if target is None:
        return None
    content = subprocess.run(
        ctr_command(socket_path, "content", "get", target), capture_output=True, text=True, check=False
    )
    if content.returncode != 0:
        return None
    try:
        digest = str(json.loads(content.stdout)["config"]["digest"])
    except (ValueError, KeyError, TypeError):
        return None
    return digest.removeprefix("sha256:")


@dataclass
class LoadResult:
    archive: Path
    ref: str
    loaded: bool
    seconds: float


def load_into_containerd(
    socket_path: Path | str, tar_paths: Iterable[Path | str], namespace: str = CONTAINERD_NAMESPACE
) -> list[LoadResult]:
    """Import docker-archive tars into the containerd at ``socket_path`` (namespace k8s.io).

    An image already there under the same name with the same id (config digest) is skipped.
    """
    ensure_host_commands(CONTAINERD_COMMANDS, "to load images into containerd")
    socket = Path(socket_path)
    results: list[LoadResult] = []
    for tar in tar_paths:
        archive = Path(tar)
        ref = archive_ref(archive)
        if ref is None:
            raise UserstreamError(f"{archive}: not a docker-archive with a tag")
        started = time.monotonic()
        wanted = archive_config_digest(archive)
        if wanted is not None and containerd_config_digest(socket, ref) == wanted:
            results.append(LoadResult(archive, ref, False, 0.0))
            continue
        _run(
            ctr_command(socket, "images", "import", str(archive), namespace=namespace),
            what=f"ctr images import {archive.name}",
            capture=True,
        )
        results.append(LoadResult(archive, ref, True, time.monotonic() - started))
    return results


def archives(names: Sequence[str] = (), cache_dir: Path | None = None) -> list[Path]:
    """The archives of built images (default: every image of the local builder that has one)."""
    paths = Paths(cache_dir or default_cache_dir())
    selected = names or [name for name, spec in IMAGES.items() if spec.local]
    return [paths.archive(image_ref(name)) for name in selected if paths.archive(image_ref(name)).is_file()]


# ---- report and CLI ------------------------------------------------------------------------------


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.0f} MB" if size else "-"


def format_results(results: Sequence[BuildResult]) -> str:
    lines = [f"{'IMAGE':<40} {'BUILDER':<8} {'BUILD':>8} {'SIZE':>9}  GO BINARIES"]
    for result in results:
        binaries = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in result.binaries.items())
        size = _mb(result.size_bytes)
        lines.append(f"{result.ref:<40} {result.builder:<8} {result.seconds:>6.0f} s {size:>9}  {binaries}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "names", nargs="*", metavar="IMAGE", help=f"default: all the builder can make ({', '.join(IMAGES)})"
    )
    parser.add_argument(
        "--builder",
        choices=("auto", "docker", "buildah"),
        default="auto",
        help="docker when `docker info` works (auto), else buildah",
    )
    parser.add_argument(
        "--load",
        action="store_true",
        help="import the images into containerd (the --containerd sockets, else the cluster's)",
    )
    parser.add_argument(
        "--containerd",
        action="append",
        default=[],
        metavar="SOCKET",
        help="a containerd socket to load into (repeatable; implies --load)",
    )


def run(args: argparse.Namespace, sockets: Callable[[], Sequence[Path]] | None = None) -> int:
    """Build (and with ``--load`` import) the images; ``sockets`` gives a running cluster's containerds."""
    targets = [Path(item) for item in args.containerd]
    if args.load and not targets:
        targets = list(sockets()) if sockets is not None else []
        if not targets:
            raise UserstreamError(
                "--load: no containerd socket given (--containerd SOCKET) and no cluster running"
            )
    started = time.monotonic()
    results = build_images(args.names, args.builder, save=bool(targets) or args.builder == "buildah")
    print(format_results(results))
    print(f"images: built in {time.monotonic() - started:.0f} s")
    tars = [result.archive for result in results if result.archive is not None]
    for socket in targets:
        for loaded in load_into_containerd(socket, tars):
            state = f"imported in {loaded.seconds:.0f} s" if loaded.loaded else "already there (same id)"
            print(f"images: {socket}: {loaded.ref} {state}")
    return 0


def register_images_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    sockets: Callable[[], Sequence[Path]] | None = None,
) -> None:
    """Add ``images`` to a sub-command group (``userstream cluster images [--load]``).

    ``sockets`` returns the containerd sockets of the running cluster: ``--load`` without
    ``--containerd`` imports into those.
    """
    parser = subparsers.add_parser(
        "images", help="build the images (docker, or buildah without Docker) and load them into containerd"
    )
    add_arguments(parser)
    parser.set_defaults(func=lambda args: run(args, sockets))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m userstream.cluster.images", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserstreamError as exc:
        print(f"userstream: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

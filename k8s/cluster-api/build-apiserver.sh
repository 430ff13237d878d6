#!/usr/bin/env bash
# Build kube-apiserver at KUBERNETES_VERSION (versions.env) into .cache/bin/kube-apiserver.
#
# k8s.io/kubernetes is not meant to be required as a module: its go.mod requires every staging module
# (k8s.io/api, k8s.io/apiserver, ...) at v0.0.0 and replaces it with ./staging/src/..., a path that only
# exists in the kubernetes git tree. A throwaway wrapper module, generated here in a temp dir, requires
# k8s.io/kubernetes v1.X.Y and replaces each of those staging modules with its published v0.X.Y tag.
# The list of staging modules is read from k8s.io/kubernetes's own go.mod, never kept by hand.
#
# Idempotent: exits at once when the binary already reports the wanted version (FORCE=1 rebuilds).
# Uses the default Go caches (GOMODCACHE, GOCACHE) so a second build on the same machine is warm.
# Gentle on shared machines: nice 19, one package at a time, one OS thread (override with
# APISERVER_BUILD_PARALLEL=N to use N).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
version=${KUBERNETES_VERSION:-$(sed -n 's/^KUBERNETES_VERSION=//p' "$repo_root/versions.env")}
if [[ ! $version =~ ^1\.([0-9]+)\.([0-9]+)$ ]]; then
  echo "build-apiserver: KUBERNETES_VERSION '$version' in versions.env is not of the form 1.MINOR.PATCH" >&2
  exit 2
fi
minor=${BASH_REMATCH[1]}
staging_version="v0.${minor}.${BASH_REMATCH[2]}"
out=${APISERVER_OUT:-$repo_root/.cache/bin/kube-apiserver}
parallel=${APISERVER_BUILD_PARALLEL:-1}

if [[ ${FORCE:-0} != 1 && -x $out ]] && [[ $("$out" --version 2>/dev/null) == "Kubernetes v$version" ]]; then
  echo "build-apiserver: $out is already Kubernetes v$version"
  exit 0
fi

if ! command -v go >/dev/null; then
  # APISERVER_OPTIONAL=1 (set by `make test`): no Go toolchain only means the cluster API tier skips.
  echo "build-apiserver: 'go' not found: install Go >= 1.24 to build kube-apiserver" >&2
  [[ ${APISERVER_OPTIONAL:-0} == 1 ]] && { echo "build-apiserver: skipped: the cluster API tier will skip" >&2; exit 0; }
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kube-apiserver-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local

start=$(date +%s)
echo "build-apiserver: resolving k8s.io/kubernetes@v$version"
gomod=$(go mod download -json "k8s.io/kubernetes@v$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
[[ -f $gomod ]] || { echo "build-apiserver: no go.mod for k8s.io/kubernetes@v$version" >&2; exit 1; }

go_directive=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")
mapfile -t staging < <(sed -n 's#^[[:space:]]*\(replace[[:space:]]\+\)\{0,1\}\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]\+=>[[:space:]]\+\./staging/.*#\2#p' "$gomod" | sort -u)
if ((${#staging[@]} < 10)); then
  echo "build-apiserver: found only ${#staging[@]} staging replaces in $gomod: its format changed?" >&2
  exit 1
fi
echo "build-apiserver: ${#staging[@]} staging modules -> $staging_version"

{
  echo "module userstream.invalid/kube-apiserver-build"
  echo
  echo "go ${go_directive:-1.24.0}"
  echo
  echo "require k8s.io/kubernetes v$version"
  echo
  echo "replace ("
  for module in "${staging[@]}"; do
    echo "	$module => $module $staging_version"
  done
  echo ")"
} >go.mod

pkg=k8s.io/kubernetes/cmd/kube-apiserver
nice -n 19 go get "$pkg@v$version"

version_pkg=k8s.io/component-base/version
ldflags="-s -X $version_pkg.gitVersion=v$version -X $version_pkg.gitMajor=1 -X $version_pkg.gitMinor=$minor"
ldflags+=" -X $version_pkg.gitTreeState=clean -X $version_pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
mkdir -p "$(dirname "$out")"
echo "build-apiserver: compiling $pkg (nice 19, GOMAXPROCS=$parallel, -p $parallel); the first build takes long"
GOMAXPROCS=$parallel nice -n 19 go build -p "$parallel" -trimpath -ldflags="$ldflags" -o "$out.tmp" "$pkg"
mv "$out.tmp" "$out"
echo "build-apiserver: $("$out" --version) -> $out in $(($(date +%s) - start)) s"

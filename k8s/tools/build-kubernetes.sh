#!/usr/bin/env bash
# Build Kubernetes components at KUBERNETES_VERSION (versions.env) from the Go module proxy into
# .cache/bin/<component>.
#
#   build-kubernetes.sh [COMPONENT ...]     default: kube-apiserver
#   components: kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
#
# k8s.io/kubernetes is not meant to be required as a module: its go.mod requires every staging module
# (k8s.io/api, k8s.io/apiserver, ...) at v0.0.0 and replaces it with ./staging/src/..., a path that only
# exists in the kubernetes git tree. A throwaway wrapper module, generated here in a temp dir, requires
# k8s.io/kubernetes v1.X.Y and replaces each of those staging modules with its published v0.X.Y tag.
# The list of staging modules is read from k8s.io/kubernetes's own go.mod, never kept by hand.
# All requested components are compiled by one `go build`, so the packages they share compile once.
#
# Idempotent: a component whose binary already reports the wanted version is skipped (FORCE=1 rebuilds).
# Uses the default Go caches (GOMODCACHE, GOCACHE) so a second build on the same machine is warm.
# KUBE_BUILD_PARALLEL=N: compile N packages at once (default: all cores, at nice 19).
# KUBE_BUILD_OPTIONAL=1 (set by `make test`): no Go toolchain only means the tiers that need these
# binaries skip.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
version=${KUBERNETES_VERSION:-$(sed -n 's/^KUBERNETES_VERSION=//p' "$repo_root/versions.env")}
if [[ ! $version =~ ^1\.([0-9]+)\.([0-9]+)$ ]]; then
  echo "build-kubernetes: KUBERNETES_VERSION '$version' in versions.env is not of the form 1.MINOR.PATCH" >&2
  exit 2
fi
minor=${BASH_REMATCH[1]}
staging_version="v0.${minor}.${BASH_REMATCH[2]}"
out_dir=${KUBE_BIN_DIR:-$repo_root/.cache/bin}
parallel=${KUBE_BUILD_PARALLEL:-$(nproc)}
known="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"

components=("$@")
((${#components[@]})) || components=(kube-apiserver)
wanted=()
for component in "${components[@]}"; do
  [[ " $known " == *" $component "* ]] || { echo "build-kubernetes: unknown component '$component' (known: $known)" >&2; exit 2; }
  bin=$out_dir/$component
  if [[ ${FORCE:-0} != 1 && -x $bin ]] && [[ $("$bin" --version 2>/dev/null) == "Kubernetes v$version" ]]; then
    echo "build-kubernetes: $component is already Kubernetes v$version"
  else
    wanted+=("$component")
  fi
done
((${#wanted[@]})) || exit 0

if ! command -v go >/dev/null; then
  echo "build-kubernetes: 'go' not found: install Go >= 1.24 to build ${wanted[*]}" >&2
  [[ ${KUBE_BUILD_OPTIONAL:-0} == 1 ]] && { echo "build-kubernetes: skipped: the tiers that need them will skip" >&2; exit 0; }
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kubernetes-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local

start=$(date +%s)
echo "build-kubernetes: resolving k8s.io/kubernetes@v$version"
gomod=$(go mod download -json "k8s.io/kubernetes@v$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
[[ -f $gomod ]] || { echo "build-kubernetes: no go.mod for k8s.io/kubernetes@v$version" >&2; exit 1; }

go_directive=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")
mapfile -t staging < <(sed -n 's#^[[:space:]]*\(replace[[:space:]]\+\)\{0,1\}\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]\+=>[[:space:]]\+\./staging/.*#\2#p' "$gomod" | sort -u)
if ((${#staging[@]} < 10)); then
  echo "build-kubernetes: found only ${#staging[@]} staging replaces in $gomod: its format changed?" >&2
  exit 1
fi
echo "build-kubernetes: ${#staging[@]} staging modules -> $staging_version"

{
  echo "module userstream.invalid/kubernetes-build"
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

pkgs=()
for component in "${wanted[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$component"); done
for pkg in "${pkgs[@]}"; do nice -n 19 go get "$pkg@v$version"; done

version_pkg=k8s.io/component-base/version
ldflags="-s -w -X $version_pkg.gitVersion=v$version -X $version_pkg.gitMajor=1 -X $version_pkg.gitMinor=$minor"
ldflags+=" -X $version_pkg.gitTreeState=clean -X $version_pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
mkdir -p "$out_dir" "$work/out"
echo "build-kubernetes: compiling ${wanted[*]} (nice 19, -p $parallel); a first build on an empty Go cache takes long"
nice -n 19 go build -p "$parallel" -trimpath -ldflags="$ldflags" -o "$work/out/" "${pkgs[@]}"
for component in "${wanted[@]}"; do
  mv "$work/out/$component" "$out_dir/$component"
  echo "build-kubernetes: $("$out_dir/$component" --version) -> $out_dir/$component"
done
echo "build-kubernetes: ${wanted[*]} in $(($(date +%s) - start)) s"

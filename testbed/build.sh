#!/usr/bin/env bash
# Build/install the testbed components into $STACKPILOT_CACHE (default ~/.cache/stackpilot),
# each keyed by version; anything already there is skipped.
#   kube-apiserver + kube-controller-manager, kube-scheduler, etcd, helm, KWOK: built from the Go module proxy
#   Flux source-controller + kustomize-controller (binaries and CRDs), gitserver: same (--no-gitops skips)
#   LocalStack and moto: Python venvs from PyPI, pinned by python/*.lock.txt
# Usage: build.sh [--no-aws | --only-aws] [--no-gitops]
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

want_kube=1 want_aws=1 want_gitops=1
for a in "$@"; do
  case "$a" in
    --no-aws) want_aws=0 ;;
    --only-aws) want_kube=0 ;;
    --no-gitops) want_gitops=0 ;;
    -h | --help) sed -n '2,7p' "$0"; exit 0 ;;
    *) die "unknown argument: $a" ;;
  esac
done

LOGS="$STACKPILOT_CACHE/logs"
mkdir -p "$LOGS"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

timed() { # <name> <log> <command...>: run, log output, report duration; tail of the log on failure
  local name="$1" logf="$2" t0 rc=0
  shift 2
  t0=$SECONDS
  log "building $name (log: $logf)"
  "$@" >"$logf" 2>&1 || rc=$?
  if ((rc != 0)); then
    log "FAILED: $name (exit $rc); last lines of $logf:"
    tail -n 30 "$logf" >&2
    return "$rc"
  fi
  log "built $name in $((SECONDS - t0)) s"
}

build_kube() {
  if [[ -x "$KUBE_BIN/kube-apiserver" && -x "$KUBE_BIN/kube-controller-manager" ]]; then
    log "skip kube $KUBE_VERSION: $KUBE_BIN has kube-apiserver and kube-controller-manager"; return 0
  fi
  local minor="${KUBE_VERSION#v*.}"
  minor="${minor%%.*}"
  (cd "$TESTBED_ROOT/go/kube" && timed "kube-apiserver+kube-controller-manager $KUBE_VERSION" "$LOGS/kube-build.log" \
    go build -trimpath -tags=selinux,notest \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
    -o "$KUBE_BIN/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
}

build_etcd() {
  if [[ -x "$ETCD_BIN/etcd" ]]; then log "skip etcd $ETCD_VERSION: $ETCD_BIN/etcd exists"; return 0; fi
  # etcd's own build stamps only GitSHA; the version string is a constant in the source.
  (cd "$TESTBED_ROOT/go/etcd" && timed "etcd $ETCD_VERSION" "$LOGS/etcd-build.log" \
    go build -trimpath -ldflags "-s -w" -o "$ETCD_BIN/etcd" go.etcd.io/etcd/server/v3)
}

build_helm() {
  if [[ -x "$HELM_BIN/helm" ]]; then log "skip helm $HELM_VERSION: $HELM_BIN/helm exists"; return 0; fi
  (
    cd "$TESTBED_ROOT/go/helm"
    # Same -X flags as helm's Makefile; it derives the default kube version from client-go.
    local cg maj min
    cg="$(go list -m -f '{{.Version}}' k8s.io/client-go)" || exit 1
    cg="${cg#v}"
    maj=$((${cg%%.*} + 1))
    min="${cg#*.}"
    min="${min%%.*}"
    timed "helm $HELM_VERSION" "$LOGS/helm-build.log" \
      go build -trimpath \
      -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$maj -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$min -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$maj -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$min" \
      -o "$HELM_BIN/helm" helm.sh/helm/v3/cmd/helm
  )
}

build_kube_scheduler() {
  if [[ -x "$KUBE_SCHEDULER_BIN/kube-scheduler" ]]; then log "skip kube-scheduler $KUBE_VERSION: it exists"; return 0; fi
  local minor="${KUBE_VERSION#v*.}"
  minor="${minor%%.*}"
  # Same module, tags and flags as build_kube: after it, most packages come from GOCACHE.
  (cd "$TESTBED_ROOT/go/kube" && timed "kube-scheduler $KUBE_VERSION" "$LOGS/kube-scheduler-build.log" \
    go build -trimpath -tags=selinux,notest \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
    -o "$KUBE_SCHEDULER_BIN/kube-scheduler" k8s.io/kubernetes/cmd/kube-scheduler)
}

build_kwok() {
  if [[ -x "$KWOK_BIN/kwok" ]]; then log "skip kwok $KWOK_VERSION: $KWOK_BIN/kwok exists"; return 0; fi
  # KWOK's version string is a constant in its source; no -X needed.
  (cd "$TESTBED_ROOT/go/kwok" && timed "kwok $KWOK_VERSION" "$LOGS/kwok-build.log" \
    go build -trimpath -ldflags "-s -w" -o "$KWOK_BIN/kwok" sigs.k8s.io/kwok/cmd/kwok)
}

build_flux() { # <wrapper dir name> <module> <binary> <cache dir> <version>
  local wrapper="$1" mod="$2" bin="$3" dir="$4" version="$5" src
  if [[ -x "$dir/bin/$bin" && -d "$dir/crds" ]]; then log "skip $bin $version: $dir has bin/$bin and crds/"; return 0; fi
  (
    cd "$TESTBED_ROOT/go/$wrapper"
    timed "$bin $version" "$LOGS/$bin-build.log" \
      go build -trimpath -ldflags "-s -w" -o "$dir/bin/$bin" "$mod" || exit 1
    # The CRDs of exactly this version, from the module source (not committed to the repo).
    src="$(go list -m -f '{{.Dir}}' "$mod")" && [[ -d "$src/config/crd/bases" ]] || exit 1
    rm -rf "$dir/crds.tmp"
    mkdir -p "$dir/crds.tmp"
    cp "$src"/config/crd/bases/*.yaml "$dir/crds.tmp/" && chmod -R u+w "$dir/crds.tmp" &&
      rm -rf "$dir/crds" && mv "$dir/crds.tmp" "$dir/crds"
  )
}

build_gitserver() {
  if [[ -x "$GITSERVER_BIN/gitserver" ]]; then log "skip gitserver: $GITSERVER_BIN/gitserver exists"; return 0; fi
  (cd "$TESTBED_ROOT/go/gitserver" && timed "gitserver ($GITSERVER_KEY)" "$LOGS/gitserver-build.log" \
    go build -trimpath -ldflags "-s -w" -o "$GITSERVER_BIN/gitserver" .)
}

install_venv() { # <python> <venv dir> <lock file>
  "$1" -m venv "$2" &&
    "$2/bin/python" -m pip install --disable-pip-version-check --no-input --require-virtualenv -r "$3" &&
    "$2/bin/python" -m pip check
}

make_venv() { # <name> <venv dir> <lock file>
  local name="$1" venv="$2" lock="$3" py key
  py="$(find_python)" || die "no Python 3.12/3.13 found (set STACKPILOT_PYTHON)"
  key="$(venv_key "$lock" "$py")"
  if [[ -f "$venv/.stackpilot-key" && "$(cat "$venv/.stackpilot-key")" == "$key" ]]; then
    log "skip $name: $venv is up to date (key $key)"; return 0
  fi
  rm -rf "$venv"
  timed "$name venv with $("$py" -V)" "$LOGS/$name-venv.log" install_venv "$py" "$venv" "$lock"
  echo "$key" >"$venv/.stackpilot-key"
}

t_start=$SECONDS
pids=()
if ((want_aws)); then
  # pip is mostly network and disk: run it beside the Go builds.
  make_venv localstack "$LOCALSTACK_VENV" "$TESTBED_ROOT/python/localstack.lock.txt" &
  pids+=($!)
  make_venv moto "$MOTO_VENV" "$TESTBED_ROOT/python/moto.lock.txt" &
  pids+=($!)
fi
rc=0
if ((want_kube)); then
  # Go builds use both cores each; run them one after another.
  build_etcd || rc=1
  build_kube || rc=1
  build_helm || rc=1
  build_kube_scheduler || rc=1
  build_kwok || rc=1
  if ((want_gitops)); then
    build_gitserver || rc=1
    build_flux flux-kustomize github.com/fluxcd/kustomize-controller kustomize-controller "$FLUX_KUSTOMIZE_DIR" "$FLUX_KUSTOMIZE_VERSION" || rc=1
    build_flux flux-source github.com/fluxcd/source-controller source-controller "$FLUX_SOURCE_DIR" "$FLUX_SOURCE_VERSION" || rc=1
  fi
fi
for p in "${pids[@]}"; do wait "$p" || rc=1; done
((rc == 0)) || die "build failed"
log "all done in $((SECONDS - t_start)) s; cache $STACKPILOT_CACHE is $(du -sh "$STACKPILOT_CACHE" | cut -f1)"

# shellcheck shell=bash disable=SC2034
# Shared settings for the testbed scripts. Sourced, not executed.

TESTBED_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STACKPILOT_CACHE="${STACKPILOT_CACHE:-$HOME/.cache/stackpilot}"
STATE="${STACKPILOT_TESTBED_DIR:-/tmp/stackpilot-testbed}"

# Versions come from the committed wrapper modules / requirement files.
gomod_version() { # <go.mod> <module path>
  awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1"
}
KUBE_VERSION="$(gomod_version "$TESTBED_ROOT/go/kube/go.mod" k8s.io/kubernetes)"
ETCD_VERSION="$(gomod_version "$TESTBED_ROOT/go/etcd/go.mod" go.etcd.io/etcd/server/v3)"
HELM_VERSION="$(gomod_version "$TESTBED_ROOT/go/helm/go.mod" helm.sh/helm/v3)"
KWOK_VERSION="$(gomod_version "$TESTBED_ROOT/go/kwok/go.mod" sigs.k8s.io/kwok)"
FLUX_SOURCE_VERSION="$(gomod_version "$TESTBED_ROOT/go/flux-source/go.mod" github.com/fluxcd/source-controller)"
FLUX_KUSTOMIZE_VERSION="$(gomod_version "$TESTBED_ROOT/go/flux-kustomize/go.mod" github.com/fluxcd/kustomize-controller)"
# Our own gitserver has no version: key it by its source and the Go toolchain.
GITSERVER_KEY="$(cat "$TESTBED_ROOT/go/gitserver/go.mod" "$TESTBED_ROOT/go/gitserver/main.go" <(go env GOVERSION 2>/dev/null) | sha256sum | cut -c1-12)"
LOCALSTACK_VERSION="$(sed -n 's/^localstack-core==//p' "$TESTBED_ROOT/python/localstack.lock.txt")"
MOTO_VERSION="$(sed -n 's/^moto==//p' "$TESTBED_ROOT/python/moto.lock.txt")"

KUBE_BIN="$STACKPILOT_CACHE/kube-$KUBE_VERSION/bin"
ETCD_BIN="$STACKPILOT_CACHE/etcd-$ETCD_VERSION/bin"
HELM_BIN="$STACKPILOT_CACHE/helm-$HELM_VERSION/bin"
# kube-scheduler comes from the kube wrapper but has its own dir, so the kube build's skip check
# (apiserver + controller-manager present) stays as it is.
KUBE_SCHEDULER_BIN="$STACKPILOT_CACHE/kube-scheduler-$KUBE_VERSION/bin"
KWOK_BIN="$STACKPILOT_CACHE/kwok-$KWOK_VERSION/bin"
# Flux dirs hold bin/ and crds/ (copied from the module source at build time).
FLUX_SOURCE_DIR="$STACKPILOT_CACHE/flux-source-$FLUX_SOURCE_VERSION"
FLUX_KUSTOMIZE_DIR="$STACKPILOT_CACHE/flux-kustomize-$FLUX_KUSTOMIZE_VERSION"
GITSERVER_BIN="$STACKPILOT_CACHE/gitserver-$GITSERVER_KEY/bin"
LOCALSTACK_VENV="$STACKPILOT_CACHE/venv-localstack-$LOCALSTACK_VERSION"
MOTO_VENV="$STACKPILOT_CACHE/venv-moto-$MOTO_VERSION"

log() { printf '[testbed] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# A Python >= 3.12 (LocalStack needs it). pyenv's shims fail when the version is not
# selected, so look at pyenv's versions directly first.
find_python() {
  local cand v
  if [[ -n "${STACKPILOT_PYTHON:-}" ]]; then echo "$STACKPILOT_PYTHON"; return 0; fi
  for v in 3.13 3.12; do
    for cand in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v" "$(command -v "python$v" || true)"; do
      if [[ -n "$cand" && -x "$cand" ]] && "$cand" -c 'import venv' >/dev/null 2>&1; then
        echo "$cand"; return 0
      fi
    done
  done
  return 1
}

# Key of a venv: the lock file's content plus the interpreter's version.
venv_key() { # <lock file> <python>
  { cat "$1"; "$2" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16
}

# True while the process exists and is not a zombie.
pid_alive() {
  local st
  [[ -n "${1:-}" && -r "/proc/$1/stat" ]] || return 1
  st="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

# The PID recorded for a component, if that process still runs the expected program.
running_pid() { # <name>
  local f="$STATE/run/$1.pid" pid
  [[ -r "$f" ]] || return 1
  pid="$(cat "$f")"
  pid_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$(cat "$STATE/run/$1.match" 2>/dev/null || echo "$1")" || return 1
  echo "$pid"
}

port_of() { cat "$STATE/run/$1.port" 2>/dev/null; }

# Stop components by their recorded PIDs: TERM to each one's process group (each was started
# with setsid), wait up to STOP_TIMEOUT seconds, then KILL. Removes their run files.
STOP_TIMEOUT="${STOP_TIMEOUT:-30}"
stop_components() { # <name>...
  local name pid deadline left
  local -a pids=()
  for name in "$@"; do
    if pid="$(running_pid "$name")"; then
      log "stopping $name (pid $pid)"
      signal_group TERM "$pid"
      pids+=("$pid")
    fi
  done
  deadline=$((SECONDS + STOP_TIMEOUT))
  while :; do
    left=0
    for pid in "${pids[@]}"; do pid_alive "$pid" && left=1; done
    ((left)) || break
    if ((SECONDS >= deadline)); then
      for pid in "${pids[@]}"; do
        pid_alive "$pid" && { log "pid $pid still running after ${STOP_TIMEOUT}s: KILL"; signal_group KILL "$pid"; }
      done
      sleep 1
      break
    fi
    sleep 0.2
  done
  # Reap our own children; wait briefly for init to reap the others, so no <defunct> is left.
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 3))
    while [[ -e "/proc/$pid" ]] && ((SECONDS < deadline)); do sleep 0.1; done
  done
  for name in "$@"; do rm -f "$STATE/run/$name".{pid,match,port,health-port}; done
}

signal_group() { # <signal> <pid>: the whole group if the process leads one, else just the process
  local pgid
  pgid="$(sed 's/^.*) //' "/proc/$2/stat" 2>/dev/null | cut -d' ' -f3)" || true
  if [[ "$pgid" == "$2" ]]; then kill -s "$1" -- "-$2" 2>/dev/null || true
  else kill -s "$1" "$2" 2>/dev/null || true; fi
}

KUBE_COMPONENTS=(kube-controller-manager kube-apiserver etcd)
POD_COMPONENTS=(kube-scheduler kwok)
FLUX_COMPONENTS=(kustomize-controller source-controller)
GITOPS_COMPONENTS=("${FLUX_COMPONENTS[@]}" gitserver)
AWS_COMPONENTS=(localstack moto)

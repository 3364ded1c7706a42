#!/usr/bin/env bash
# Stop everything up.sh started, by the PIDs in $STACKPILOT_TESTBED_DIR/run (TERM, then KILL after
# STOP_TIMEOUT seconds, default 30), wait for the exits, then remove the state dir.
# Usage: down.sh [--keep]    --keep: leave the state dir (logs, certs, data) in place
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

keep=0
for a in "$@"; do
  case "$a" in
    --keep) keep=1 ;;
    -h | --help) sed -n '2,4p' "$0"; exit 0 ;;
    *) die "unknown argument: $a" ;;
  esac
done

if [[ ! -d "$STATE" ]]; then log "nothing to stop: $STATE does not exist"; exit 0; fi
# API clients first (so they do not log the API server going away), the API server before etcd.
stop_components "${GITOPS_COMPONENTS[@]}" "${POD_COMPONENTS[@]}" kube-controller-manager
stop_components kube-apiserver "${AWS_COMPONENTS[@]}"
stop_components etcd
# Anything whose pid file names a process that is no longer the one we started is only reported.
for f in "$STATE"/run/*.pid; do
  [[ -e "$f" ]] || continue
  log "left alone: $(basename "$f" .pid) (pid $(cat "$f") is not the process up.sh started)"
  rm -f "$f"
done
if ((keep)); then
  rm -f "$STATE/env"
  log "stopped; state kept in $STATE"
else
  rm -rf "$STATE"
  log "stopped; removed $STATE"
fi

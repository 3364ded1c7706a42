#!/usr/bin/env bash
# Stop and start only the kube-apiserver of a running testbed, keeping etcd (so every object
# survives), its port, certificates and flags. For fault tests: the API server going away under a
# running operator. (up.sh, finding one kube component dead, restarts all three with an empty etcd.)
# Usage: restart-apiserver.sh stop [--kill] | start | restart [--kill] [--down SECONDS]
#   stop     TERM (graceful: watches are closed) or, with --kill, KILL (connections just drop);
#            saves the command line to $STACKPILOT_TESTBED_DIR/run/kube-apiserver.cmdline
#   start    starts it again from that command line, waits for /readyz
#   restart  stop, stay down --down seconds (default 0), start
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PKI="$STATE/pki"
CMDLINE="$STATE/run/kube-apiserver.cmdline"

ready() {
  local port base
  port="$(port_of kube-apiserver)"
  base=(curl -sf --max-time 3 --cacert "$PKI/serving-ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key")
  [[ "$("${base[@]}" "https://127.0.0.1:$port/readyz" 2>/dev/null)" == ok ]] &&
    "${base[@]}" -o /dev/null "https://127.0.0.1:$port/api/v1/namespaces/default" 2>/dev/null
}

stop() { # [--kill]
  local signal=TERM pid deadline
  [[ "${1:-}" == --kill ]] && signal=KILL
  pid="$(running_pid kube-apiserver)" || die "kube-apiserver is not running in $STATE"
  tr '\0' '\n' <"/proc/$pid/cmdline" >"$CMDLINE.tmp"
  mv "$CMDLINE.tmp" "$CMDLINE"
  log "stopping kube-apiserver (pid $pid, $signal)"
  signal_group "$signal" "$pid"
  deadline=$((SECONDS + STOP_TIMEOUT))
  while pid_alive "$pid"; do
    if ((SECONDS >= deadline)); then
      log "kube-apiserver still running after ${STOP_TIMEOUT}s: KILL"
      signal_group KILL "$pid"
      deadline=$((SECONDS + 5))
    fi
    sleep 0.1
  done
  # The pid file stays; it names a dead process until start.
}

start() {
  local pid deadline
  [[ -s "$CMDLINE" ]] || die "no saved command line ($CMDLINE): stop it with this script first"
  if running_pid kube-apiserver >/dev/null; then log "kube-apiserver already running"; return 0; fi
  local -a cmd
  mapfile -t cmd <"$CMDLINE"
  setsid "${cmd[@]}" >>"$STATE/logs/kube-apiserver.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$STATE/run/kube-apiserver.pid"
  deadline=$((SECONDS + ${START_TIMEOUT:-120}))
  until ready; do
    pid_alive "$pid" || { tail -n 40 "$STATE/logs/kube-apiserver.log" >&2; die "kube-apiserver exited"; }
    ((SECONDS < deadline)) || die "kube-apiserver not ready after ${START_TIMEOUT:-120}s"
    sleep 0.2
  done
  log "kube-apiserver up again (pid $pid, port $(port_of kube-apiserver))"
}

action="${1:-}"
[[ $# -gt 0 ]] && shift
case "$action" in
  stop) stop "$@" ;;
  start) start ;;
  restart)
    kill_flag='' down=0
    while (($# > 0)); do
      case "$1" in
        --kill) kill_flag=--kill ;;
        --down) down="$2"; shift ;;
        *) die "unknown argument: $1" ;;
      esac
      shift
    done
    stop $kill_flag
    sleep "$down"
    start
    ;;
  -h | --help | '') sed -n '2,9p' "$0"; [[ -n "$action" ]] ;;
  *) die "unknown command: $action" ;;
esac

#!/usr/bin/env bash
# Print the testbed components: pid, port, resident memory, health. Exit 0 only if all that
# have a pid file are running.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

echo "state: $STATE"
rc=0
for name in etcd kube-apiserver kube-controller-manager kube-scheduler kwok gitserver source-controller kustomize-controller localstack moto; do
  [[ -e "$STATE/run/$name.pid" ]] || { printf '%-24s not started\n' "$name"; continue; }
  if pid="$(running_pid "$name")"; then
    rss="$(ps -o rss= -p "$pid" | tr -d ' ')"
    printf '%-24s running  pid %-7s port %-6s rss %4d MiB\n' "$name" "$pid" "$(port_of "$name")" "$((rss / 1024))"
  else
    printf '%-24s DEAD     (pid file %s)\n' "$name" "$(cat "$STATE/run/$name.pid")"
    rc=1
  fi
done
[[ -r "$STATE/env" ]] && { echo "env ($STATE/env):"; sed -n 's/^export /  /p' "$STATE/env"; }
exit "$rc"

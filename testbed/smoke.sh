#!/usr/bin/env bash
# Check a running testbed end to end: API server version, namespace deletion (namespace
# controller), ownerReference cascade (garbage collector), and a CloudFormation stack with an
# S3 bucket, SQS queue and SNS topic on LocalStack and on moto. Needs kubectl.
# Usage: smoke.sh (after up.sh)
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -r "$STATE/env" ]] || die "no $STATE/env: run testbed/up.sh first"
# shellcheck source=/dev/null
source "$STATE/env"

passed=0 failed=0
check() { # <description> <command...>
  local what="$1" t0=$SECONDS
  shift
  if "$@" >"$STATE/smoke.out" 2>&1; then
    passed=$((passed + 1)); log "ok   $what ($((SECONDS - t0)) s)"
  else
    failed=$((failed + 1)); log "FAIL $what"
  fi
  sed 's/^/    /' "$STATE/smoke.out" >&2
}
until_gone() { # <kubectl get args...>: wait up to 60 s until the object is gone
  local i
  for i in $(seq 1 300); do
    kubectl get "$@" >/dev/null 2>&1 || return 0
    ((i % 25)) || log "  still there after $((i / 5)) s: $*"
    sleep 0.2
  done
  return 1
}

if [[ -n "${KUBECONFIG:-}" ]]; then
  suffix="$(date +%s)-$RANDOM"
  server_version() { kubectl version -o json 2>/dev/null | grep -q "\"gitVersion\": \"$KUBE_VERSION\""; }
  check "server version is $KUBE_VERSION" server_version
  check "namespace default exists" kubectl get ns default -o name
  ns_deletion() {
    kubectl create ns "smoke-$suffix" >/dev/null &&
      kubectl -n "smoke-$suffix" create configmap inside --from-literal=a=b >/dev/null &&
      kubectl delete ns "smoke-$suffix" --wait=false >/dev/null &&
      until_gone ns "smoke-$suffix"
  }
  check "namespace deletion is finalised" ns_deletion
  gc_cascade() {
    local uid
    kubectl create configmap "owner-$suffix" --from-literal=x=1 >/dev/null &&
      uid="$(kubectl get configmap "owner-$suffix" -o jsonpath='{.metadata.uid}')" &&
      kubectl apply -f - >/dev/null <<EOF &&
apiVersion: v1
kind: ConfigMap
metadata:
  name: dependent-$suffix
  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: owner-$suffix, uid: "$uid"}]
EOF
      kubectl delete configmap "owner-$suffix" --wait=false >/dev/null &&
      until_gone configmap "dependent-$suffix"
  }
  check "garbage collector deletes a dependent" gc_cascade
fi
for var in STACKPILOT_TEST_AWS_ENDPOINT STACKPILOT_TEST_MOTO_ENDPOINT; do
  if [[ -n "${!var:-}" ]]; then
    check "CloudFormation stack on \$$var" "$LOCALSTACK_VENV/bin/python" "$TESTBED_ROOT/python/cfn_smoke.py" "${!var}"
  fi
done
echo "smoke: $passed passed, $failed failed"
((failed == 0))

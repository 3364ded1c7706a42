#!/usr/bin/env bash
# Check a running testbed end to end: API server version, namespace deletion (namespace
# controller), ownerReference cascade (garbage collector), Jobs that succeed and fail through the
# Job controller, kube-scheduler and KWOK, a Git push picked up by Flux's source-controller (artifact
# digest checked) and applied by its kustomize-controller, and a CloudFormation stack with an
# S3 bucket, SQS queue and SNS topic on LocalStack and on moto. Needs kubectl, git, curl.
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

eventually() { # <seconds> <command...>: retry every 0.2 s until it succeeds
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
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

  if [[ -n "${STACKPILOT_TEST_KWOK_NODE:-}" ]]; then
    jobs_ns="smoke-jobs-$suffix"
    kubectl create ns "$jobs_ns" >/dev/null
    # serviceaccount-controller: real clusters have one in every namespace.
    check "namespace gets a default ServiceAccount" eventually 30 kubectl -n "$jobs_ns" get serviceaccount default
    job_ends() { # <stackpilot.dev/test-result> <expected Job condition> <expected Pod phase>
      local name="job-$1" cond phase i
      kubectl -n "$jobs_ns" apply -f - >/dev/null <<EOF || return 1
apiVersion: batch/v1
kind: Job
metadata: {name: $name}
spec:
  backoffLimit: 0
  template:
    metadata: {annotations: {stackpilot.dev/test-result: $1}}
    spec:
      restartPolicy: Never
      containers: [{name: main, image: example.invalid/never-pulled:1}]
EOF
      for i in $(seq 1 150); do # 30 s
        cond="$(kubectl -n "$jobs_ns" get job "$name" -o 'jsonpath={.status.conditions[?(@.status=="True")].type}')"
        [[ " $cond " == *" Complete "* || " $cond " == *" Failed "* ]] && break
        sleep 0.2
      done
      phase="$(kubectl -n "$jobs_ns" get pods -l "job-name=$name" -o 'jsonpath={.items[*].status.phase}/{.items[*].spec.nodeName}')"
      echo "job $name: true conditions [$cond], pod phase/node $phase"
      [[ " $cond " == *" $2 "* && "$phase" == "$3/$STACKPILOT_TEST_KWOK_NODE" ]]
    }
    check "Job with test-result succeed is Complete (pod Succeeded on the KWOK node)" job_ends succeed Complete Succeeded
    check "Job with test-result fail is Failed (pod Failed on the KWOK node)" job_ends fail Failed Failed
    kubectl delete ns "$jobs_ns" --wait=false >/dev/null
  fi

  if [[ -n "${STACKPILOT_TEST_GIT_URL:-}" && -n "${STACKPILOT_TEST_FLUX_STORAGE_URL:-}" ]]; then
    flux_ns="smoke-flux-$suffix"
    repo_url="$STACKPILOT_TEST_GIT_URL/smoke-$suffix.git"
    work="$STATE/smoke-git-$suffix"
    git_commit() { # <value>: commit deploy/ with a ConfigMap holding <value>, push, print the sha
      mkdir -p "$work/deploy" &&
        printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-git}\ndata: {value: "%s"}\n' "$1" >"$work/deploy/cm.yaml" &&
        git -C "$work" add -A &&
        git -C "$work" -c user.name=smoke -c user.email=smoke@example.invalid commit -qm "value $1" &&
        git -C "$work" push -q "$repo_url" main && git -C "$work" rev-parse HEAD
    }
    flux_field() { kubectl -n "$flux_ns" get "$1" smoke -o "jsonpath=$2"; }
    field_is() { [[ "$(flux_field "$1" "$2")" == "$3" ]]; } # <kind> <jsonpath> <value>
    push_picked_up() { # first push, then a second one: both revisions reach the GitRepository
      local sha url digest i
      kubectl create ns "$flux_ns" >/dev/null && git init -q -b main "$work" && sha="$(git_commit one)" || return 1
      kubectl -n "$flux_ns" apply -f - >/dev/null <<EOF || return 1
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: smoke}
spec: {url: "$repo_url", interval: 10m, ref: {branch: main}}
EOF
      for i in 1 2; do
        if ((i == 2)); then # a new commit; ask for a reconcile instead of waiting for the interval
          sha="$(git_commit two)" || return 1
          kubectl -n "$flux_ns" annotate --overwrite gitrepository smoke "reconcile.fluxcd.io/requestedAt=$(date +%s%N)" >/dev/null
        fi
        eventually 60 field_is gitrepository '{.status.artifact.revision}' "main@sha1:$sha" || return 1
        echo "revision main@sha1:$sha"
      done
      url="$(flux_field gitrepository '{.status.artifact.url}')"
      digest="$(flux_field gitrepository '{.status.artifact.digest}')"
      [[ "$url" == "$STACKPILOT_TEST_FLUX_STORAGE_URL/"* ]] || { echo "artifact URL $url is not on the storage server"; return 1; }
      echo "artifact $url, digest $digest"
      [[ "sha256:$(curl -sf "$url" | sha256sum | cut -d' ' -f1)" == "$digest" ]]
    }
    check "a git push is picked up by a GitRepository (revision, artifact digest)" push_picked_up
    kustomization_ready() {
      kubectl -n "$flux_ns" apply -f - >/dev/null <<EOF || return 1
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: smoke}
spec:
  interval: 10m
  path: ./deploy
  prune: true
  targetNamespace: $flux_ns
  sourceRef: {kind: GitRepository, name: smoke}
EOF
      eventually 60 field_is kustomization '{.status.conditions[?(@.type=="Ready")].status}' True || return 1
      flux_field kustomization '{.status.lastAppliedRevision}'; echo
      [[ "$(kubectl -n "$flux_ns" get configmap from-git -o 'jsonpath={.data.value}')" == two ]]
    }
    check "a Kustomization applies the repo's ConfigMap and is Ready" kustomization_ready
    kubectl delete ns "$flux_ns" --wait=false >/dev/null 2>&1 || true
    rm -rf "$work"
  fi
fi
for var in STACKPILOT_TEST_AWS_ENDPOINT STACKPILOT_TEST_MOTO_ENDPOINT; do
  if [[ -n "${!var:-}" ]]; then
    check "CloudFormation stack on \$$var" "$LOCALSTACK_VENV/bin/python" "$TESTBED_ROOT/python/cfn_smoke.py" "${!var}"
  fi
done
echo "smoke: $passed passed, $failed failed"
((failed == 0))

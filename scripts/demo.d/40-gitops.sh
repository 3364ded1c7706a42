# shellcheck shell=bash
# Part of scripts/demo: from a git commit to production and back, through Flux. A repository on
# the test bed's Git server holds a Pipeline (dev: a Stack and a test Job; an approval; prod: a
# StackDeployment to two regions) and its template. Flux's GitRepository follows it and a
# Kustomization applies the Pipeline, which reads its template from the same artifact
# (source.sourceRef). Revision 1 reaches prod after an approval; revision 2 fails in prod, is
# rolled back and rejected, and the Kustomization says why; `git revert` passes again; removing
# the manifest makes Flux prune the Pipeline and stackpilot delete its stacks.
# The same flow is tests/gitops_e2e.rs.
if [[ -z "${STACKPILOT_TEST_GIT_URL:-}" ]]; then
  echo "gitops demo: the test bed runs no Git server or Flux (started with --no-gitops?)" >&2
  exit 1
fi
gitops_ns=gitops-demo
gitops_work=$(mktemp -d)
gitops_repo="$STACKPILOT_TEST_GIT_URL/demo-$(date +%s)-$$.git"
gitops_git() { git -C "$gitops_work" -c user.name=demo -c user.email=demo@example.invalid "$@"; }
gitops_push() {
  gitops_git push -q "$gitops_repo" main
  # What `flux reconcile source git app` does: look at Git now, not at the next interval.
  kubectl -n "$gitops_ns" annotate gitrepository app --overwrite "reconcile.fluxcd.io/requestedAt=$(date +%s%N)" >/dev/null 2>&1 || true
  echo "pushed main@sha1:$(gitops_git rev-parse HEAD): $(gitops_git log -1 --format=%s)"
}
gitops_commit() {
  gitops_git add -A
  gitops_git commit -q -m "$1"
  gitops_push
}
# Revision $1; with "bad", a prod-only queue whose name CloudFormation refuses.
gitops_template() {
  {
    printf 'Parameters:\n  Env: {Type: String, Default: dev}\nConditions:\n  IsProd: !Equals [!Ref Env, prod]\nResources:\n  Queue: {Type: AWS::SQS::Queue}\n'
    [[ "${2:-}" == bad ]] && printf '  Broken:\n    Type: AWS::SQS::Queue\n    Condition: IsProd\n    Properties: {QueueName: "not a valid name!"}\n'
    printf 'Outputs:\n  Version: {Value: "%s"}\n' "$1"
  } >"$gitops_work/templates/app.yaml"
}
gitops_execution() {
  kubectl -n "$gitops_ns" get pipeline release -o jsonpath='{.status.currentExecution.revision} {.status.currentExecution.phase}' 2>/dev/null
}
# Waits until the current execution is at HEAD's revision and in phase $1.
gitops_wait_execution() {
  local want
  want="main@sha1:$(gitops_git rev-parse HEAD) $1"
  for _ in $(seq 1 240); do
    [[ "$(gitops_execution)" == "$want" ]] && return 0
    sleep 1
  done
  "$BIN" status pipeline/release -n "$gitops_ns" || true
  echo "the execution did not reach '$want' (now: '$(gitops_execution)')" >&2
  exit 1
}
gitops_wait_approval() {
  for _ in $(seq 1 240); do
    [[ "$(kubectl -n "$gitops_ns" get pipeline release -o jsonpath='{.status.conditions[?(@.type=="ApprovalRequired")].status}' 2>/dev/null)" == True &&
      "$(gitops_execution)" == "main@sha1:$(gitops_git rev-parse HEAD) InProgress" ]] && return 0
    sleep 1
  done
  echo "the execution of HEAD did not reach its approval" >&2
  exit 1
}
# The Version output of each stack of the flow in LocalStack, as stackpilot reports it.
gitops_versions() {
  kubectl -n "$gitops_ns" get stack -o custom-columns='STACK:.metadata.name,REGION:.spec.region,VERSION:.status.outputs.Version,READY:.status.conditions[?(@.type=="Ready")].reason'
}

say "GitOps: a Git repository with a Pipeline and its template; Flux applies it"
kubectl create namespace "$gitops_ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
gitops_git init -q -b main
mkdir -p "$gitops_work/deploy" "$gitops_work/templates"
cp examples/gitops/pipeline.yaml "$gitops_work/deploy/pipeline.yaml"
gitops_template 1
gitops_commit "revision 1"
kubectl apply -f - >/dev/null <<EOF
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: app, namespace: $gitops_ns}
spec: {url: "$gitops_repo", interval: 10m, ref: {branch: main}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: app, namespace: $gitops_ns}
spec:
  interval: 10m
  path: ./deploy
  prune: true
  wait: true
  timeout: 3m
  targetNamespace: $gitops_ns
  sourceRef: {kind: GitRepository, name: app}
EOF

say "GitOps: revision 1 passes dev and waits for a person"
gitops_wait_approval
kubectl -n "$gitops_ns" get gitrepository,kustomization,pipeline
"$BIN" approve pipeline/release -n "$gitops_ns" --comment "dev is green"
gitops_wait_execution Succeeded
kubectl -n "$gitops_ns" wait kustomization/app --for=condition=Ready --timeout=180s
gitops_versions

say "GitOps: revision 2 fails in prod; the StackDeployment rolls it back and rejects it"
gitops_template 2 bad
gitops_commit "revision 2 (bad in prod)"
gitops_wait_approval
"$BIN" approve pipeline/release -n "$gitops_ns" --comment "looks fine in dev"
gitops_wait_execution Failed
kubectl -n "$gitops_ns" get pipeline release -o jsonpath='{.status.currentExecution.message}{"\n"}'
for _ in $(seq 1 120); do
  [[ "$(kubectl -n "$gitops_ns" get kustomization app -o jsonpath='{.status.conditions[?(@.type=="Ready")].reason}')" == HealthCheckFailed ]] && break
  sleep 1
done
echo "Kustomization: $(kubectl -n "$gitops_ns" get kustomization app -o jsonpath='{.status.conditions[?(@.type=="Ready")].reason}: {.status.conditions[?(@.type=="Ready")].message}')"
kubectl -n "$gitops_ns" get stackdeployment release-prod-app -o jsonpath='rejected: {.status.rejectedRevisions[*].revision.revision}{"\n"}'
gitops_versions

say "GitOps: git revert; the next execution passes and prod runs revision 1's content"
gitops_git revert --no-edit HEAD >/dev/null
gitops_push
gitops_wait_approval
"$BIN" approve pipeline/release -n "$gitops_ns" --comment "the revert"
gitops_wait_execution Succeeded
kubectl -n "$gitops_ns" wait kustomization/app --for=condition=Ready --timeout=180s
"$BIN" history pipeline/release -n "$gitops_ns"
gitops_versions

say "GitOps: the manifest leaves Git; Flux prunes the Pipeline and stackpilot deletes its stacks"
gitops_git rm -q deploy/pipeline.yaml
mkdir -p "$gitops_work/deploy" && touch "$gitops_work/deploy/.keep"
gitops_commit "remove the pipeline"
kubectl -n "$gitops_ns" wait pipeline/release --for=delete --timeout=180s
kubectl -n "$gitops_ns" get stack,stackdeployment 2>&1
kubectl -n "$gitops_ns" delete kustomization app --wait=true --timeout=60s >/dev/null
kubectl delete namespace "$gitops_ns" --wait=false >/dev/null
rm -rf "$gitops_work"

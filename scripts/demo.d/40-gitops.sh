# GitOps: a commit flows through Flux to a Stack. A Git repository on the test bed's Git server
# holds a Stack manifest (deploy/) and its template (templates/); Flux's GitRepository follows
# it, a Kustomization (wait: true) applies the Stack, and the Stack reads its template from the
# same GitRepository artifact (template.sourceRef). A second commit updates the stack; deleting
# the Kustomization prunes the Stack and stackpilot deletes the stack.
if [[ -z "${STACKPILOT_TEST_GIT_URL:-}" || -z "${STACKPILOT_TEST_FLUX_STORAGE_URL:-}" ]]; then
  echo "gitops demo: the test bed runs no Git server or Flux (started with --no-gitops?)" >&2
  exit 1
fi
say "GitOps: a commit flows through Flux to a Stack"
gitops_ns=gitops-demo
gitops_work=$(mktemp -d)
gitops_repo="$STACKPILOT_TEST_GIT_URL/demo-$(date +%s)-$$.git"
gitops_git() { git -C "$gitops_work" -c user.name=demo -c user.email=demo@example.invalid "$@"; }
gitops_commit() {
  gitops_git add -A
  gitops_git commit -q -m "$1"
  gitops_git push -q "$gitops_repo" main
  gitops_git rev-parse HEAD
}
gitops_template() {
  cat >"$gitops_work/templates/queue.yaml" <<EOF
Resources:
  Queue: {Type: AWS::SQS::Queue}
Outputs:
  Version: {Value: "$1"}
  QueueUrl: {Value: !Ref Queue}
EOF
}
kubectl create namespace "$gitops_ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
gitops_git init -q -b main
mkdir -p "$gitops_work/deploy" "$gitops_work/templates"
cat >"$gitops_work/deploy/stack.yaml" <<EOF
apiVersion: stackpilot.dev/v1alpha1
kind: Stack
metadata: {name: queue, namespace: $gitops_ns}
spec:
  region: us-east-1
  template:
    sourceRef: {kind: GitRepository, name: demo, path: templates/queue.yaml}
EOF
gitops_template 1
first=$(gitops_commit "queue v1")
echo "pushed main@sha1:$first to $gitops_repo"
kubectl apply -f - >/dev/null <<EOF
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: demo, namespace: $gitops_ns}
spec: {url: "$gitops_repo", interval: 10m, ref: {branch: main}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: demo, namespace: $gitops_ns}
spec:
  interval: 10m
  path: ./deploy
  prune: true
  wait: true
  timeout: 2m
  sourceRef: {kind: GitRepository, name: demo}
  healthCheckExprs:
    - apiVersion: stackpilot.dev/v1alpha1
      kind: Stack
      current: has(status.conditions) && status.observedGeneration == metadata.generation && status.conditions.exists(e, e.type == 'Ready' && e.status == 'True')
      failed: has(status.conditions) && status.conditions.exists(e, e.type == 'Stalled' && e.status == 'True')
EOF
# wait: true makes the Kustomization Ready only once the Stack it applied is Ready.
kubectl -n "$gitops_ns" wait kustomization/demo --for=condition=Ready --timeout=150s
kubectl -n "$gitops_ns" get gitrepository,kustomization,stack
gitops_at() { kubectl -n "$gitops_ns" get stack queue -o jsonpath='{.status.applied.revision} Version={.status.outputs.Version}'; }
echo "stack: $(gitops_at)"
[[ "$(gitops_at)" == "main@sha1:$first Version=1" ]] || { echo "the Stack is not at the first commit" >&2; exit 1; }

gitops_template 2
second=$(gitops_commit "queue v2")
echo "pushed main@sha1:$second; asking Flux to look now (as 'flux reconcile source git demo' does)"
kubectl -n "$gitops_ns" annotate gitrepository demo --overwrite "reconcile.fluxcd.io/requestedAt=$(date +%s%N)" >/dev/null
for _ in $(seq 1 90); do
  [[ "$(gitops_at)" == "main@sha1:$second Version=2" ]] && break
  sleep 1
done
echo "stack: $(gitops_at)"
[[ "$(gitops_at)" == "main@sha1:$second Version=2" ]] || { echo "the Stack did not follow the second commit" >&2; exit 1; }

say "GitOps: deleting the Kustomization prunes the Stack; stackpilot deletes the stack"
kubectl -n "$gitops_ns" delete kustomization demo --wait=true --timeout=120s
kubectl -n "$gitops_ns" wait stack/queue --for=delete --timeout=120s 2>/dev/null || true
if kubectl -n "$gitops_ns" get stack queue >/dev/null 2>&1; then
  echo "the Stack was not pruned" >&2
  exit 1
fi
echo "Stack queue pruned by Flux and its CloudFormation stack deleted by stackpilot"
kubectl delete namespace "$gitops_ns" --wait=false >/dev/null
rm -rf "$gitops_work"

# shellcheck shell=bash
# Part of scripts/demo: examples/pipeline.yaml. dev deploys a Stack and runs a
# test Job (under KWOK no container runs: its Pod just succeeds), the gate waits
# for a person, who approves with the CLI; prod then rolls out a StackDeployment
# to us-east-1 and eu-west-1, one after the other, and bakes.

pipeline_phase() {
  kubectl get pipeline orders-delivery -o jsonpath='{.status.currentExecution.phase}'
}

say "Pipeline: applying examples/pipeline.yaml"
kubectl apply -f examples/pipeline.yaml
kubectl wait --for=condition=ApprovalRequired pipeline/orders-delivery --timeout=180s
kubectl get pipeline orders-delivery -o jsonpath='{.status.conditions[?(@.type=="ApprovalRequired")].message}{"\n"}'

say "Pipeline: approving with $BIN approve pipeline/orders-delivery"
"$BIN" approve pipeline/orders-delivery --comment "dev is green"
for _ in $(seq 1 180); do
  case "$(pipeline_phase)" in
    Succeeded) break ;;
    Failed | Stopped | Superseded)
      "$BIN" status pipeline/orders-delivery
      echo "the pipeline execution did not succeed" >&2
      exit 1
      ;;
  esac
  sleep 1
done
if [[ "$(pipeline_phase)" != Succeeded ]]; then
  "$BIN" status pipeline/orders-delivery
  echo "the pipeline execution did not end within 180 s" >&2
  exit 1
fi

say "Pipeline: $BIN status pipeline/orders-delivery"
"$BIN" status pipeline/orders-delivery
say "Pipeline: $BIN history pipeline/orders-delivery"
"$BIN" history pipeline/orders-delivery

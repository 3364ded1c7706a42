# shellcheck shell=bash
# Part of scripts/demo: examples/canary-deployment.yaml over two accounts and two
# regions on LocalStack. `staging` is account 222222222222 (LocalStack hands out
# that account's credentials to whoever assumes a role in it); `sandbox` comes
# from examples/aws-account.yaml. The health alarm exists in each account and
# region (made by Stacks), and the demo skips the example's pauses and bake
# times with `promote --full`.

say "StackDeployment: a second AwsAccount (staging, 222222222222)"
kubectl apply -f - <<'YAML'
apiVersion: stackpilot.dev/v1alpha1
kind: AwsAccount
metadata:
  name: staging
spec:
  accountId: "222222222222"
  roleArn: arn:aws:iam::222222222222:role/stackpilot-deployer
  allowedRegions: [us-east-1, eu-west-1]
  namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: default
YAML
kubectl wait --for=condition=Ready awsaccount/staging --timeout=60s

say "StackDeployment: the health alarm orders-queue-depth in each account and region"
for account in sandbox staging; do
  for region in us-east-1 eu-west-1; do
    kubectl apply -f - <<YAML
apiVersion: stackpilot.dev/v1alpha1
kind: Stack
metadata:
  name: orders-queue-depth-$account-$region
spec:
  region: $region
  accountRef: {name: $account}
  template:
    body: |
      Resources:
        Alarm:
          Type: AWS::CloudWatch::Alarm
          Properties:
            AlarmName: orders-queue-depth
            Namespace: AWS/SQS
            MetricName: ApproximateNumberOfMessagesVisible
            Statistic: Average
            Period: 60
            EvaluationPeriods: 1
            Threshold: 1000
            ComparisonOperator: GreaterThanThreshold
YAML
  done
done
kubectl wait --for=condition=Ready stack -l '!stackpilot.dev/target' --timeout=120s >/dev/null

say "StackDeployment: examples/canary-deployment.yaml (2 accounts x 2 regions)"
kubectl apply -f examples/canary-deployment.yaml
# The canary's 10-minute pause, the manual step and the bake times are for
# real use; here every pause is skipped once the rollout runs.
for _ in $(seq 1 60); do
  phase="$(kubectl get stackdeployment orders-queue -o jsonpath='{.status.rollout.phase}')"
  [[ "$phase" == Progressing || "$phase" == Paused ]] && break
  sleep 1
done
"$BIN" promote --full stackdeployment/orders-queue
kubectl wait --for=condition=Ready stackdeployment/orders-queue --timeout=180s
"$BIN" status stackdeployment/orders-queue
updated="$(kubectl get stackdeployment orders-queue -o jsonpath='{.status.updated}')"
[[ "$updated" == "4/4" ]] || {
  echo "orders-queue: $updated targets updated, expected 4/4" >&2
  exit 1
}

"""Create and delete a CloudFormation stack (S3 bucket + SQS queue + SNS topic) on an endpoint.

Usage: cfn_smoke.py <endpoint URL>. Credentials and region come from the environment
($STACKPILOT_TESTBED_DIR/env). Exit 0 when the stack reached CREATE_COMPLETE and was deleted.
"""

import json
import sys
import time
import uuid

import boto3
from botocore.exceptions import ClientError

TEMPLATE = {
    "Resources": {
        "Bucket": {"Type": "AWS::S3::Bucket"},
        "Queue": {"Type": "AWS::SQS::Queue"},
        "Topic": {"Type": "AWS::SNS::Topic"},
    },
    "Outputs": {
        "Bucket": {"Value": {"Ref": "Bucket"}},
        "Queue": {"Value": {"Ref": "Queue"}},
        "Topic": {"Value": {"Ref": "Topic"}},
    },
}


def wait(cf, name, deadline):
    seen = []
    while True:
        try:
            status = cf.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
        except ClientError as e:
            if "does not exist" in str(e):
                seen.append("GONE")
                return seen
            raise
        if not seen or seen[-1] != status:
            seen.append(status)
        if not status.endswith("IN_PROGRESS") or time.time() > deadline:
            return seen
        time.sleep(0.2)


def main():
    endpoint = sys.argv[1]
    cf = boto3.client("cloudformation", endpoint_url=endpoint)
    name = "smoke-" + uuid.uuid4().hex[:8]
    t0 = time.time()
    cf.create_stack(StackName=name, TemplateBody=json.dumps(TEMPLATE))
    created = wait(cf, name, t0 + 120)
    print(f"{endpoint}: create {' -> '.join(created)} in {time.time() - t0:.1f}s")
    ok = created[-1] == "CREATE_COMPLETE"
    if ok:
        stack = cf.describe_stacks(StackName=name)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        buckets = [b["Name"] for b in boto3.client("s3", endpoint_url=endpoint).list_buckets()["Buckets"]]
        # Compare queues by name: moto's Ref gives an sqs.<region>.amazonaws.com URL.
        queues = [u.rsplit("/", 1)[-1] for u in boto3.client("sqs", endpoint_url=endpoint).list_queues().get("QueueUrls", [])]
        topics = [t["TopicArn"] for t in boto3.client("sns", endpoint_url=endpoint).list_topics()["Topics"]]
        ok = outputs["Bucket"] in buckets and outputs["Queue"].rsplit("/", 1)[-1] in queues and outputs["Topic"] in topics
        print(f"{endpoint}: resources exist: {ok} {outputs}")
    else:
        for ev in cf.describe_stack_events(StackName=name)["StackEvents"]:
            print("  ", ev["LogicalResourceId"], ev["ResourceStatus"], ev.get("ResourceStatusReason", ""))
    t1 = time.time()
    cf.delete_stack(StackName=name)
    deleted = wait(cf, name, t1 + 120)
    print(f"{endpoint}: delete {' -> '.join(deleted)} in {time.time() - t1:.1f}s")
    ok = ok and deleted[-1] in ("GONE", "DELETE_COMPLETE")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

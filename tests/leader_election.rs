//! Leader election end to end: two operator replicas with
//! `STACKPILOT_LEADER_ELECTION=true`, watching the same namespace, against
//! the real kube-apiserver and LocalStack, with the default timings (15 s
//! lease, renew every 5 s). Exactly one leads; the standby makes no AWS call
//! while it stands by; when the leader is killed the standby takes over and
//! brings a new Stack to Ready within 20 s; on SIGTERM the leader gives the
//! lease up and the standby takes over at once; a leader whose lease is
//! taken exits.

mod support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use stackpilot::api::Stack;
use support::{Operator, TestBed, TestNamespace, eventually, install_crds};
use tokio::time::Instant;

const LEASE: &str = "stackpilot-leader";
const TEMPLATE: &str = "Resources:\n  Q: {Type: AWS::SQS::Queue}\n";
const FAILOVER_BUDGET: Duration = Duration::from_secs(20);
const TIMEOUT: Duration = Duration::from_secs(120);

struct Replica {
    pod: &'static str,
    operator: Operator,
}

struct Fixture {
    bed: TestBed,
    client: Client,
    ns: TestNamespace,
}

impl Fixture {
    async fn new(prefix: &str) -> Fixture {
        let bed = TestBed::get();
        let client = bed.client().await;
        install_crds(&client).await;
        let ns = TestNamespace::new(&client, prefix).await;
        Fixture { bed, client, ns }
    }

    /// Starts a replica (returns once its `/readyz` says ok: leading with
    /// synced caches, or standing by).
    async fn replica(&self, pod: &'static str) -> Replica {
        let env = [
            ("STACKPILOT_LEADER_ELECTION", "true"),
            ("STACKPILOT_LEADER_ELECTION_NAMESPACE", self.ns.name.as_str()),
            ("POD_NAME", pod),
        ];
        let operator = Operator::start(&self.bed, &self.ns.name, &self.bed.aws_endpoint, &env).await;
        Replica { pod, operator }
    }

    /// Two replicas, the first started alone so that it leads; returns
    /// (leader, standby) after checking that exactly one leads.
    async fn pair(&self) -> (Replica, Replica) {
        let a = self.replica("replica-a").await;
        self.wait_holder("replica-a").await;
        let b = self.replica("replica-b").await;
        let (a_leads, b_leads) = (leads(&a).await, leads(&b).await);
        assert!(
            a_leads ^ b_leads,
            "exactly one replica leads (a: {a_leads}, b: {b_leads})"
        );
        let (leader, standby) = if a_leads { (a, b) } else { (b, a) };
        assert_eq!(
            self.holder().await.as_deref(),
            Some(leader.pod),
            "the Lease names the leader"
        );
        (leader, standby)
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    fn stacks(&self) -> Api<Stack> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    async fn holder(&self) -> Option<String> {
        let lease = self.leases().get_opt(LEASE).await.ok()??;
        lease.spec?.holder_identity.filter(|h| !h.is_empty())
    }

    async fn renew_time(&self) -> Option<String> {
        let lease = self.leases().get_opt(LEASE).await.ok()??;
        Some(format!("{:?}", lease.spec?.renew_time))
    }

    async fn wait_holder(&self, pod: &str) -> Instant {
        let this = self;
        eventually(TIMEOUT, &format!("{pod} holds the lease"), || async move {
            (this.holder().await.as_deref() == Some(pod)).then(Instant::now)
        })
        .await
    }

    async fn apply_stack(&self, name: &str) {
        let object = json!({
            "apiVersion": "stackpilot.dev/v1alpha1",
            "kind": "Stack",
            "metadata": {"name": name},
            "spec": {"region": "us-east-1", "template": {"body": TEMPLATE}},
        });
        self.stacks()
            .patch(
                name,
                &PatchParams::apply("leader-election-test").force(),
                &Patch::Apply(&object),
            )
            .await
            .expect("apply Stack");
    }

    async fn is_ready(&self, name: &str) -> bool {
        let Ok(stack) = self.stacks().get(name).await else {
            return false;
        };
        let Some(status) = stack.status.as_ref() else {
            return false;
        };
        status.observed_generation == stack.metadata.generation
            && status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    }

    async fn wait_ready(&self, name: &str) -> Instant {
        let this = self;
        eventually(TIMEOUT, &format!("{name} Ready"), || async move {
            this.is_ready(name).await.then(Instant::now)
        })
        .await
    }

    /// Deletes the Stacks (the leader deletes them in AWS) and the namespace.
    async fn finish(self, leader: Replica) {
        let _ = self
            .stacks()
            .delete_collection(&Default::default(), &Default::default())
            .await;
        let api = &self.stacks();
        eventually(TIMEOUT, "stacks deleted", || async move {
            api.list(&Default::default()).await.ok()?.items.is_empty().then_some(())
        })
        .await;
        leader.operator.stop().await;
        self.ns.cleanup().await;
    }
}

async fn leads(replica: &Replica) -> bool {
    replica.operator.metric("stackpilot_leader", &[]).await == 1.0
}

async fn aws_writes(replica: &Replica) -> f64 {
    let mut total = 0.0;
    for operation in stackpilot::aws::Action::writes() {
        let label = format!("operation=\"{operation}\"");
        total += replica.operator.metric("stackpilot_aws_calls_total", &[&label]).await;
    }
    total
}

async fn aws_calls(replica: &Replica) -> f64 {
    replica.operator.metric("stackpilot_aws_calls_total", &[]).await
}

/// The standby has made no AWS call at all so far (the counters only
/// grow, so a zero now covers its whole time as a standby).
async fn assert_idle_standby(standby: &Replica) {
    assert!(!leads(standby).await, "{} must not lead", standby.pod);
    assert_eq!(
        aws_writes(standby).await,
        0.0,
        "{} wrote to AWS as a standby",
        standby.pod
    );
    assert_eq!(aws_calls(standby).await, 0.0, "{} called AWS as a standby", standby.pod);
}

fn terminate(operator: &Operator) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &operator.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM");
}

#[tokio::test]
async fn a_killed_leader_is_replaced_within_20_seconds_without_overlapping_writes() {
    let f = Fixture::new("leader-kill").await;
    let (leader, standby) = f.pair().await;

    for name in ["s1", "s2", "s3"] {
        f.apply_stack(name).await;
    }
    for name in ["s1", "s2", "s3"] {
        f.wait_ready(name).await;
    }
    assert!(aws_writes(&leader).await >= 3.0, "the leader created the stacks");
    assert_idle_standby(&standby).await;

    // The worst moment to die: right after a renewal, so that the standby
    // has to wait out the whole lease.
    let before = &f.renew_time().await;
    let fixture = &f;
    eventually(Duration::from_secs(10), "a lease renewal", || async move {
        (fixture.renew_time().await != *before).then_some(())
    })
    .await;
    assert_idle_standby(&standby).await;
    let killed = Instant::now();
    leader.operator.stop().await;

    f.apply_stack("after-failover").await;
    let took_over = f.wait_holder(standby.pod).await - killed;
    let ready = f.wait_ready("after-failover").await - killed;
    println!("failover after SIGKILL: lease taken over after {took_over:?}, new Stack Ready after {ready:?}");
    assert!(
        ready < FAILOVER_BUDGET,
        "new Stack Ready {ready:?} after the leader died"
    );
    assert!(leads(&standby).await, "the former standby leads");
    assert!(
        aws_writes(&standby).await >= 2.0,
        "the new leader created the new stack"
    );
    // The stacks of the old leader are still in order under the new one.
    for name in ["s1", "s2", "s3"] {
        assert!(f.is_ready(name).await, "{name} still Ready");
    }
    f.finish(standby).await;
}

#[tokio::test]
async fn sigterm_hands_the_lease_over_at_once() {
    let f = Fixture::new("leader-term").await;
    let (mut leader, standby) = f.pair().await;
    f.apply_stack("before").await;
    f.wait_ready("before").await;
    assert_idle_standby(&standby).await;

    let asked = Instant::now();
    terminate(&leader.operator);
    let status = leader
        .operator
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("the leader stops on SIGTERM");
    assert!(status.success(), "a graceful stop exits 0, got {status:?}");
    let took_over = f.wait_holder(standby.pod).await - asked;
    println!("handover after SIGTERM: lease taken over after {took_over:?}");
    assert!(took_over < Duration::from_secs(5), "handover took {took_over:?}");

    f.apply_stack("after").await;
    let ready = f.wait_ready("after").await - asked;
    println!("handover after SIGTERM: new Stack Ready after {ready:?}");
    assert!(leads(&standby).await);
    assert!(
        aws_writes(&standby).await >= 2.0,
        "the new leader created the new stack"
    );
    f.finish(standby).await;
}

#[tokio::test]
async fn a_leader_whose_lease_is_taken_stops_at_once() {
    let f = Fixture::new("leader-lost").await;
    let mut leader = f.replica("replica-a").await;
    f.wait_holder("replica-a").await;
    assert!(leads(&leader).await);

    // Another party writes itself in (as a standby would after expiry).
    let mut lease = f.leases().get(LEASE).await.expect("lease");
    let spec = lease.spec.as_mut().expect("lease spec");
    spec.holder_identity = Some("intruder".into());
    f.leases()
        .replace(LEASE, &PostParams::default(), &lease)
        .await
        .expect("take the lease");
    let taken = Instant::now();

    // The next renewal (within 5 s) finds out; the process exits non-zero.
    let status = leader
        .operator
        .wait_exit(Duration::from_secs(8))
        .await
        .expect("the leader exits once its lease is taken");
    println!("leader exited {:?} after its lease was taken", taken.elapsed());
    assert!(!status.success(), "losing the lease exits non-zero, got {status:?}");
    assert_eq!(
        f.holder().await.as_deref(),
        Some("intruder"),
        "the leader did not write the lease back"
    );
    f.ns.cleanup().await;
}

//! Command line: every flag has an environment fallback.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub mod deployment;
pub mod object;
pub mod pipeline;

pub use object::ObjectRef;

#[derive(Debug, Parser)]
#[command(
    name = "stackpilot",
    version,
    about = "AWS CloudFormation stacks as Kubernetes resources"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controllers.
    Run(Box<RunArgs>),
    /// Approve the change set a Stack waits on (`<stack>` or `stack/<name>`,
    /// changes.approval: Manual), the revision a StackDeployment's fleet
    /// preview waits on (`stackdeployment/<name>`), or the approval action a
    /// pipeline waits on now (`pipeline/<name>`).
    Approve {
        #[command(flatten)]
        target: ObjectRef,
        /// A Stack: approve only if this is the change set waiting (as shown
        /// in status.changeSet.name).
        #[arg(long)]
        change_set: Option<String>,
        /// A StackDeployment: approve only if this revision (hash or label,
        /// as shown by `stackpilot status`) is the one waiting.
        #[arg(long)]
        revision: Option<String>,
        /// A pipeline approval's comment.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject the approval action a pipeline waits on now (`pipeline/<name>`).
    Reject {
        #[command(flatten)]
        target: ObjectRef,
        /// Why.
        #[arg(long)]
        comment: Option<String>,
    },
    /// `stackdeployment/<name>`: roll a rejected revision out again.
    /// `pipeline/<name>`: retry the failed actions (or, with --all, every
    /// action) of the stage where the execution failed or stopped.
    Retry {
        #[command(flatten)]
        target: ObjectRef,
        /// A pipeline: retry every action of the stage, not only the failed.
        #[arg(long)]
        all: bool,
    },
    /// Stop a pipeline's running execution: running actions finish (or, with
    /// --abandon, are left running) and nothing more starts.
    Stop {
        #[command(flatten)]
        target: ObjectRef,
        #[arg(long)]
        abandon: bool,
        /// Why (shown in status).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Show a StackDeployment as a tree of waves and targets, or a pipeline's
    /// current execution as a tree of stages and actions.
    #[command(visible_alias = "get")]
    Status(ObjectRef),
    /// The kept revisions of a StackDeployment, or a pipeline's executions,
    /// newest first.
    History(ObjectRef),
    /// End the current pause of a StackDeployment (`--full`: skip every
    /// remaining pause and bake).
    Promote {
        #[command(flatten)]
        target: ObjectRef,
        #[arg(long)]
        full: bool,
    },
    /// Hold a StackDeployment's rollout where it is.
    Pause(ObjectRef),
    /// Let a paused StackDeployment go on.
    Resume(ObjectRef),
    /// Stop a StackDeployment's running rollout and roll it back.
    Abort(ObjectRef),
    /// Roll every target of a StackDeployment back to a kept revision.
    Rollback {
        #[command(flatten)]
        target: ObjectRef,
        /// The revision label or hash (see `stackpilot history`).
        #[arg(long)]
        to: String,
    },
    /// Print the CustomResourceDefinitions as YAML, or write one file per kind.
    Crd {
        /// Write `<plural>.<group>.yaml` files into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "STACKPILOT_NAMESPACE")]
    pub namespace: Option<String>,
    /// Default AWS region for the operator's own credentials.
    #[arg(long, env = "AWS_REGION")]
    pub aws_region: Option<String>,
    /// AWS endpoint override (an emulator such as LocalStack or moto).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
    /// Objects reconciled at the same time per controller. Reconciles mostly
    /// wait on the API server and AWS (whose calls the per-account budget
    /// caps), and new or edited objects go first.
    #[arg(long, env = "STACKPILOT_CONCURRENCY", default_value_t = 48)]
    pub concurrency: u16,
    /// Address of `/metrics`, `/livez` and `/readyz`.
    #[arg(long, env = "STACKPILOT_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "STACKPILOT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Let Stacks without `accountRef` use the operator's own AWS credentials
    /// (off unless asked for, as in the chart).
    #[arg(long, env = "STACKPILOT_ALLOW_OPERATOR_CREDENTIALS", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_operator_credentials: bool,
    /// Let a `sourceRef` name a Flux source in another namespace (refused by
    /// default, as Flux's own `--no-cross-namespace-refs` does).
    #[arg(long, env = "STACKPILOT_ALLOW_CROSS_NAMESPACE_SOURCES", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_cross_namespace_sources: bool,
    /// Largest Flux artifact (compressed) a `sourceRef` may download; it may
    /// unpack to 4 times as much.
    #[arg(long, env = "STACKPILOT_MAX_SOURCE_ARTIFACT_BYTES", default_value_t = 50 << 20)]
    pub max_source_artifact_bytes: u64,
    /// Verify AwsAccounts (one replica per cluster should).
    #[arg(long, env = "STACKPILOT_ACCOUNT_CONTROLLER", default_value_t = true, action = clap::ArgAction::Set)]
    pub account_controller: bool,
    /// Verify only the AwsAccounts matching this label selector.
    #[arg(long, env = "STACKPILOT_ACCOUNT_SELECTOR")]
    pub account_selector: Option<String>,
    /// Seconds between checks of a stack with an operation in flight.
    #[arg(long, env = "STACKPILOT_IN_FLIGHT_POLL_SECONDS", default_value_t = 5)]
    pub in_flight_poll_seconds: u64,
    /// Base delay before a stack whose create failed is recreated
    /// (`failurePolicy.onCreateFailure: Recreate`); doubles per failure.
    #[arg(long, env = "STACKPILOT_RECREATE_BACKOFF_SECONDS", default_value_t = 30)]
    pub recreate_backoff_seconds: u64,
    /// Seconds between checks of a settled stack.
    #[arg(long, env = "STACKPILOT_RESYNC_SECONDS", default_value_t = 300)]
    pub resync_seconds: u64,
    /// Seconds between reads (one HeadObject) of a Pipeline's S3 source.
    #[arg(long, env = "STACKPILOT_PIPELINE_SOURCE_POLL_SECONDS", default_value_t = 60)]
    pub pipeline_source_poll_seconds: u64,
    #[command(flatten)]
    pub leader_election: LeaderElection,
    #[command(flatten)]
    pub aws_budget: AwsBudget,
    #[command(flatten)]
    pub fake_aws: FakeAws,
}

/// The AWS call budget of each account and region (see `aws::budget`).
#[derive(Debug, Clone, clap::Args)]
pub struct AwsBudget {
    /// CloudFormation calls per second per account and region (halved while
    /// AWS throttles, recovering on success).
    #[arg(long, env = "STACKPILOT_AWS_CALLS_PER_SECOND", default_value_t = 10.0)]
    pub aws_calls_per_second: f64,
    /// Calls that may go at once per account and region after a quiet spell.
    #[arg(long, env = "STACKPILOT_AWS_CALL_BURST", default_value_t = 20.0)]
    pub aws_call_burst: f64,
}

/// For benchmarks and tests only: the in-memory fake instead of AWS.
#[derive(Debug, Clone, clap::Args)]
pub struct FakeAws {
    /// Use the in-memory fake CloudFormation instead of AWS (benchmarks and
    /// tests only: stacks live in the operator's memory).
    #[arg(id = "fake_aws", long = "fake-aws", env = "STACKPILOT_FAKE_AWS")]
    pub enabled: bool,
    /// Fraction of fake AWS calls throttled (0..1).
    #[arg(
        long = "fake-aws-throttled",
        env = "STACKPILOT_FAKE_AWS_THROTTLED",
        default_value_t = 0.0
    )]
    pub throttled: f64,
    /// Fraction of fake AWS calls failing with HTTP 5xx (0..1).
    #[arg(
        long = "fake-aws-server-errors",
        env = "STACKPILOT_FAKE_AWS_SERVER_ERRORS",
        default_value_t = 0.0
    )]
    pub server_errors: f64,
    /// Seed of the fault sequence.
    #[arg(long = "fake-aws-seed", env = "STACKPILOT_FAKE_AWS_SEED", default_value_t = 1)]
    pub seed: u64,
    /// CloudWatch alarms (comma-separated names) that exist, in state OK, in
    /// every account and region of the fake.
    #[arg(long = "fake-aws-alarms", env = "STACKPILOT_FAKE_AWS_ALARMS", value_delimiter = ',')]
    pub alarms: Vec<String>,
}

impl AwsBudget {
    pub fn settings(&self) -> crate::aws::budget::BudgetSettings {
        crate::aws::budget::BudgetSettings {
            calls_per_second: self.aws_calls_per_second,
            burst: self.aws_call_burst,
        }
    }
}

impl FakeAws {
    /// The fault rates, when any is set.
    pub fn fault_rates(&self) -> Option<crate::aws::fake::FaultRates> {
        (self.throttled > 0.0 || self.server_errors > 0.0).then_some(crate::aws::fake::FaultRates {
            throttled: self.throttled,
            server_errors: self.server_errors,
            seed: self.seed,
        })
    }
}

/// Leader election over a `coordination.k8s.io/v1` Lease, for running more
/// than one replica: only the holder runs the controllers.
#[derive(Debug, Clone, clap::Args)]
pub struct LeaderElection {
    /// Run the controllers only while this replica holds the Lease.
    #[arg(id = "leader_election", long = "leader-election", env = "STACKPILOT_LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set)]
    pub enabled: bool,
    /// Namespace of the Lease (default: `POD_NAMESPACE`, else the in-cluster
    /// namespace, else `default`).
    #[arg(
        id = "leader_election_namespace",
        long = "leader-election-namespace",
        env = "STACKPILOT_LEADER_ELECTION_NAMESPACE"
    )]
    pub namespace: Option<String>,
    /// Name of the Lease.
    #[arg(
        long = "leader-election-lease-name",
        env = "STACKPILOT_LEADER_ELECTION_LEASE_NAME",
        default_value = "stackpilot-leader"
    )]
    pub lease_name: String,
    /// Seconds a standby waits after the Lease last changed before taking it over.
    #[arg(
        long = "leader-election-lease-duration-seconds",
        env = "STACKPILOT_LEADER_ELECTION_LEASE_DURATION_SECONDS",
        default_value_t = 15
    )]
    pub lease_duration_seconds: u64,
    /// Seconds between renewals; the leader stops acting when it could not
    /// renew for (lease duration - this).
    #[arg(
        long = "leader-election-renew-seconds",
        env = "STACKPILOT_LEADER_ELECTION_RENEW_SECONDS",
        default_value_t = 5
    )]
    pub renew_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

//! `stackpilot run`: wait for the CRDs, start the admin server and the
//! controllers, stop cleanly on SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tracing::{error, info};

use crate::account::{self, TenancyCache};
use crate::aws::CloudFormationProvider;
use crate::aws::alarms::{AlarmsProvider, CountedAlarms};
use crate::aws::budget::BudgetProvider;
use crate::aws::fake::{FakeAlarms, FakeS3};
use crate::aws::fake_mode::FakeAws;
use crate::aws::identity::{AccountIdentity, InstrumentedIdentity, SdkIdentity};
use crate::aws::instrumented::InstrumentedProvider;
use crate::aws::s3::{CountedS3, S3Provider};
use crate::aws::sdk::{SdkAlarms, SdkProvider, SdkS3};
use crate::cli::RunArgs;
use crate::deployment::{self, DeploymentContext, DeploymentSettings};
use crate::pipeline;
use crate::runtime::context::Shared;
use crate::runtime::leader::{Elector, LeaseSettings};
use crate::runtime::metrics::Metrics;
use crate::stack::{self, SharedStacks, StackContext, StackSettings, Timing};

/// What the controllers are built from, each time this replica leads.
struct Parts {
    shared: Arc<Shared>,
    aws: Arc<dyn CloudFormationProvider>,
    identity: Arc<dyn AccountIdentity>,
    /// CloudWatch, for the StackDeployment health gates.
    alarms: Arc<dyn AlarmsProvider>,
    /// S3, for Pipeline sources.
    s3: Arc<dyn S3Provider>,
    /// `None` with the fake AWS: the operator's own account id is unknown.
    own_identity: Option<Arc<dyn AccountIdentity>>,
    settings: StackSettings,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let sources = crate::source::SourceSettings {
        allow_cross_namespace: args.allow_cross_namespace_sources,
        max_artifact_bytes: args.max_source_artifact_bytes,
    };
    let shared = Arc::new(Shared {
        sources: crate::source::Sources::new(sources),
        ..Shared::new(client.clone(), metrics.clone())
    });
    let sdk = Arc::new(SdkProvider::from_env(args.aws_endpoint_url.clone(), args.aws_region.clone()).await);
    // Budget outside, metrics inside: every attempt, retries included, is
    // counted and spends the account and region's budget.
    let cloudformation: Arc<dyn CloudFormationProvider> = if args.fake_aws.enabled {
        Arc::new(FakeAws::new(args.fake_aws.fault_rates()))
    } else {
        sdk.clone()
    };
    let budget = Arc::new(BudgetProvider::new(
        Arc::new(InstrumentedProvider {
            inner: cloudformation,
            metrics: metrics.clone(),
        }),
        args.aws_budget.settings(),
        metrics.clone(),
    ));
    let aws: Arc<dyn CloudFormationProvider> = budget.clone();
    let cloudwatch: Arc<dyn AlarmsProvider> = if args.fake_aws.enabled {
        Arc::new(FakeAlarms::everywhere(&args.fake_aws.alarms))
    } else {
        Arc::new(SdkAlarms::new(sdk.clone()))
    };
    let objects: Arc<dyn S3Provider> = if args.fake_aws.enabled {
        Arc::new(FakeS3::default())
    } else {
        Arc::new(SdkS3::new(sdk.clone()))
    };
    let s3 = Arc::new(CountedS3 {
        inner: objects,
        metrics: metrics.clone(),
        budget: Some(budget.clone()),
    });
    let alarms = Arc::new(CountedAlarms {
        inner: cloudwatch,
        metrics: metrics.clone(),
        budget: Some(budget),
    });
    let identity = Arc::new(InstrumentedIdentity {
        inner: Arc::new(SdkIdentity::new(sdk)),
        metrics: metrics.clone(),
    });
    let settings = StackSettings {
        allow_operator_credentials: args.allow_operator_credentials,
        timing: Timing {
            in_flight: Duration::from_secs(args.in_flight_poll_seconds),
            resync: Duration::from_secs(args.resync_seconds),
            recreate_backoff: Duration::from_secs(args.recreate_backoff_seconds),
            ..Timing::default()
        },
        concurrency: usize::from(args.concurrency),
    };
    let own_identity: Option<Arc<dyn AccountIdentity>> = (!args.fake_aws.enabled).then(|| identity.clone() as _);
    let parts = Parts {
        shared: shared.clone(),
        aws,
        identity,
        alarms,
        s3,
        own_identity,
        settings,
    };

    // Listen for SIGTERM from the start, so that a stop while waiting for
    // the CRDs or for the lease is graceful too.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutting down");
        let _ = stop_tx.send(true);
    });
    // `/livez` answers at once; `/readyz` follows the readiness registry.
    let admin = tokio::spawn(crate::runtime::admin::serve(
        args.admin_addr,
        shared,
        stopped(stop_rx.clone()),
    ));
    controllers(&args, client, parts, stop_rx).await?;
    admin.await??;
    info!("stopped");
    Ok(())
}

/// Runs the controllers until the stop signal; with leader election, only
/// while this replica holds the Lease.
///
/// `/readyz`: without leader election, ready once every controller's cache
/// has synced. With it, not ready until the Lease has been read; then ready
/// as a standby (so that a rolling update can proceed with one leader and
/// standbys), not ready from winning the Lease until the caches have synced,
/// then ready.
async fn controllers(
    args: &RunArgs,
    client: Client,
    parts: Parts,
    stop_rx: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    tokio::select! {
        result = wait_for_crds(&client) => result?,
        () = stopped(stop_rx.clone()) => return Ok(()),
    }
    if !args.leader_election.enabled {
        // Without leader election every replica acts.
        parts.shared.metrics.leader.set(1);
        run_controllers(args.clone(), parts, stop_rx).await;
        return Ok(());
    }

    let lease = LeaseSettings::new(&args.leader_election, client.default_namespace())?;
    let shared = parts.shared.clone();
    let elector = Elector::new(client, lease, shared.metrics.clone());
    let mut leadership = tokio::select! {
        leadership = elector.campaign(|| shared.readiness.set_standby(true)) => leadership,
        () = stopped(stop_rx.clone()) => return Ok(()),
    };
    shared.readiness.set_standby(false);
    let mut running = tokio::spawn(run_controllers(args.clone(), parts, stop_rx));
    // Returns after the stop signal, once the reconciles in flight are done;
    // only then is the lease given up.
    tokio::select! {
        result = &mut running => result?,
        reason = leadership.lost() => step_down(&reason),
    }
    leadership.release().await;
    Ok(())
}

/// Every controller, until the stop signal and the reconciles in flight are
/// done. With leader election this runs only while the lease is held.
async fn run_controllers(args: RunArgs, parts: Parts, stop_rx: watch::Receiver<bool>) {
    let namespace = args.namespace.clone().filter(|n| !n.is_empty());
    // Every cache is registered before any controller starts, so the first
    // one to sync cannot make the replica ready alone.
    let readiness = &parts.shared.readiness;
    readiness.register(stack::CACHE);
    readiness.register(deployment::CACHE);
    for cache in pipeline::CACHES {
        readiness.register(cache);
    }
    if args.account_controller {
        readiness.register(account::CACHE);
    }
    let accounts = start_accounts(&args, &parts, &stop_rx);
    let stacks = SharedStacks::new(parts.shared.client.clone(), namespace.as_deref());
    // One cache of AwsAccounts and namespace labels for every grant; the
    // Stack controller's watches fill it.
    let tenancy = TenancyCache::new(parts.shared.client.clone());
    let deployments = Arc::new(
        DeploymentContext::new(
            parts.shared.clone(),
            parts.alarms,
            parts.own_identity,
            stacks.store.clone(),
            DeploymentSettings {
                allow_operator_credentials: parts.settings.allow_operator_credentials,
                timing: deployment::plan::Timing {
                    progressing: parts.settings.timing.in_flight,
                    resync: parts.settings.timing.resync,
                },
            },
        )
        .with_tenancy(tenancy.clone()),
    );
    // Subscribed before the Stack cache runs (inside `stack::run`).
    let children = stacks.subscribe();
    let deployment_controller = tokio::spawn(deployment::run(
        deployments,
        children,
        namespace.clone(),
        stopped(stop_rx.clone()),
    ));
    // Subscribed before the Stack cache runs: child Stacks wake their pipeline.
    let pipelines = tokio::spawn(pipeline::run(
        parts.shared.clone(),
        stacks.subscribe(),
        stacks.store.clone(),
        namespace.clone(),
        pipeline::Timing {
            source_poll: Duration::from_secs(args.pipeline_source_poll_seconds),
            ..pipeline::Timing::default()
        },
        pipeline::Sources {
            s3: parts.s3,
            allow_operator_credentials: parts.settings.allow_operator_credentials,
            tenancy: tenancy.clone(),
        },
        stopped(stop_rx.clone()),
    ));
    let ctx = Arc::new(
        StackContext::new(parts.shared, parts.aws, parts.settings, stacks.store.clone()).with_tenancy(tenancy),
    );
    stack::run(ctx, stacks, namespace, stopped(stop_rx)).await;
    let _ = deployment_controller.await;
    let _ = pipelines.await;
    if let Some(accounts) = accounts {
        let _ = accounts.await;
    }
}

/// The AwsAccount controller (verifies credentials), unless turned off.
fn start_accounts(
    args: &RunArgs,
    parts: &Parts,
    stop_rx: &watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let selector = args.account_selector.clone();
    let (shared, identity, shutdown) = (parts.shared.clone(), parts.identity.clone(), stopped(stop_rx.clone()));
    args.account_controller.then(|| {
        tokio::spawn(async move { account::run_selected(shared, identity, selector.as_deref(), shutdown).await })
    })
}

/// The lease is lost: another replica may act from now on, so this one
/// stops at once, reconciles in flight included. Kubernetes restarts it as a
/// standby.
fn step_down(reason: &str) -> ! {
    error!(%reason, "lost leadership: exiting so that no two replicas act at once");
    std::process::exit(1)
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Waits (logging) until every stackpilot CRD is Established, instead of
/// exiting and crash-looping while an install is still under way.
async fn wait_for_crds(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in crate::api::crds() {
        let name = crd.name_any();
        loop {
            let established = await_condition(api.clone(), &name, conditions::is_crd_established());
            match tokio::time::timeout(Duration::from_secs(30), established).await {
                Ok(Ok(_)) => break,
                Ok(Err(error)) => info!(crd = %name, %error, "waiting for CRD"),
                Err(_) => info!(crd = %name, "still waiting for CRD to be installed and Established"),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    info!("CRDs established");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

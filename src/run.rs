//! `stackpilot run`: wait for the CRDs, start the admin server and the
//! controllers, stop cleanly on SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tracing::info;

use crate::aws::instrumented::InstrumentedProvider;
use crate::aws::sdk::SdkProvider;
use crate::cli::RunArgs;
use crate::context::{Context, Settings};
use crate::metrics::Metrics;
use crate::stack::{self, Timing};

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let namespace = args.namespace.clone().filter(|n| !n.is_empty());
    wait_for_crds(&client).await?;
    let metrics = Arc::new(Metrics::default());
    let sdk = SdkProvider::from_env(args.aws_endpoint_url.clone(), args.aws_region.clone()).await;
    let aws = Arc::new(InstrumentedProvider {
        inner: Arc::new(sdk),
        metrics: metrics.clone(),
    });
    let timing = Timing {
        in_flight: Duration::from_secs(args.in_flight_poll_seconds),
        resync: Duration::from_secs(args.resync_seconds),
        recreate_backoff: Duration::from_secs(args.recreate_backoff_seconds),
        ..Timing::default()
    };
    let settings = Settings {
        allow_operator_credentials: args.allow_operator_credentials,
        timing,
    };
    let ctx = Arc::new(Context::new(client, aws, metrics, settings));

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let admin = tokio::spawn(crate::admin::serve(args.admin_addr, ctx.clone(), stopped()));
    let stacks = tokio::spawn(stack::run(ctx.clone(), namespace, args.concurrency, stopped()));
    shutdown_signal().await;
    info!("shutting down");
    stop_tx.send(true)?;
    stacks.await?;
    admin.await??;
    info!("stopped");
    Ok(())
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
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

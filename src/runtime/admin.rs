//! The admin server: `/metrics`, `/livez`, `/readyz` (ready once the
//! controllers' caches have synced).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tracing::info;

use super::context::Shared;

pub async fn serve(
    addr: SocketAddr,
    ctx: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(ctx);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    info!(addr = %listener.local_addr()?, "admin server listening");
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn metrics(State(ctx): State<Arc<Shared>>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ctx.metrics.encode(),
    )
}

async fn readyz(State(ctx): State<Arc<Shared>>) -> (StatusCode, String) {
    if ctx.readiness.is_ready() {
        (StatusCode::OK, "ok".into())
    } else {
        let waiting = ctx.readiness.waiting_for().join(", ");
        (StatusCode::SERVICE_UNAVAILABLE, format!("caches not synced: {waiting}"))
    }
}

/// A plain HTTP/1.1 GET over loopback returning (status, body): how the
/// bench and the integration tests read `/metrics` and `/readyz`.
pub async fn http_get(url: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The sum of the samples of metric `name` (a sample name such as
/// `stackpilot_aws_calls_total`) on lines that contain every fragment;
/// `None` when no family of that name exists (neither in the exposition nor
/// among stackpilot's own), so a renamed or missing metric is an error
/// rather than a silent 0.
pub fn sample_sum(exposition: &str, name: &str, fragments: &[&str]) -> Option<f64> {
    let registered = super::metrics::is_known_sample(name)
        || exposition.lines().any(|line| {
            line.strip_prefix("# TYPE ")
                .and_then(|rest| rest.split_whitespace().next())
                .is_some_and(|family| name == family || name.strip_prefix(family).is_some_and(|s| s.starts_with('_')))
        });
    registered.then(|| {
        exposition
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split([' ', '{']).next() == Some(name) && fragments.iter().all(|f| l.contains(f)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    })
}

#[cfg(test)]
mod tests {
    use super::sample_sum;

    const EXPOSITION: &str = "# HELP stackpilot_aws_calls AWS calls.\n# TYPE stackpilot_aws_calls counter\n\
        stackpilot_aws_calls_total{operation=\"DescribeStacks\",outcome=\"ok\"} 3\n\
        stackpilot_aws_calls_total{operation=\"CreateChangeSet\",outcome=\"ok\"} 2\n\
        # HELP stackpilot_leader Leader.\n# TYPE stackpilot_leader gauge\nstackpilot_leader 1\n\
        # EOF\n";

    #[test]
    fn sums_matching_samples_and_refuses_unknown_families() {
        assert_eq!(sample_sum(EXPOSITION, "stackpilot_aws_calls_total", &[]), Some(5.0));
        assert_eq!(
            sample_sum(EXPOSITION, "stackpilot_aws_calls_total", &["CreateChangeSet"]),
            Some(2.0)
        );
        assert_eq!(sample_sum(EXPOSITION, "stackpilot_leader", &[]), Some(1.0));
        assert_eq!(
            sample_sum(EXPOSITION, "stackpilot_reconcile_errors_total", &[]),
            Some(0.0),
            "a family of ours with no sample yet"
        );
        assert_eq!(sample_sum(EXPOSITION, "stackpilot_aws_call_total", &[]), None, "a typo");
        assert_eq!(sample_sum(EXPOSITION, "apiserver_request_total", &[]), None, "not here");
    }
}

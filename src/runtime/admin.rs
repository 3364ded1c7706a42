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

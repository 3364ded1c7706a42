//! Downloads an artifact from source-controller's artifact server (plain
//! HTTP inside the cluster, as Flux's own consumers do), with a size cap and
//! a timeout.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub enum DownloadError {
    /// Worth retrying: the server may be restarting or the artifact being replaced.
    Failed(String),
    Oversize(String),
}

#[derive(Clone)]
pub struct Downloader {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Default for Downloader {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

impl Downloader {
    /// The body of `url`, at most `max_bytes`.
    pub async fn get(&self, url: &str, max_bytes: u64) -> Result<Bytes, DownloadError> {
        let failed = |m: String| DownloadError::Failed(format!("downloading {url}: {m}"));
        let uri: hyper::Uri = url.parse().map_err(|e| failed(format!("bad URL: {e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(failed("only http:// artifact URLs are supported".into()));
        }
        let fetch = async {
            let response = self.client.get(uri).await.map_err(|e| failed(e.to_string()))?;
            if !response.status().is_success() {
                return Err(failed(format!("HTTP {}", response.status())));
            }
            let declared = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            let oversize =
                || DownloadError::Oversize(format!("artifact is larger than the limit of {max_bytes} bytes"));
            if declared.is_some_and(|n| n > max_bytes) {
                return Err(oversize());
            }
            let limit = usize::try_from(max_bytes).unwrap_or(usize::MAX);
            let body = Limited::new(response.into_body(), limit).collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    oversize()
                } else {
                    failed(e.to_string())
                }
            })?;
            Ok(body.to_bytes())
        };
        tokio::time::timeout(TIMEOUT, fetch)
            .await
            .map_err(|_| failed(format!("no answer within {TIMEOUT:?}")))?
    }
}

//! Reading Prometheus text: the operator's admin endpoint (AWS calls) and
//! the API server's `/metrics` (requests and writes).

use std::collections::BTreeMap;

use anyhow::bail;
use kube::Client;

/// Sum of the samples of `name` whose labels contain every fragment.
pub(super) fn sum(metrics: &str, name: &str, fragments: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| fragments.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// AWS calls between two scrapes, by `operation/outcome`.
pub(super) fn call_deltas(a: &str, b: &str) -> BTreeMap<String, f64> {
    let parse = |text: &str| -> BTreeMap<String, f64> {
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("stackpilot_aws_calls_total{")?;
                let (labels, value) = rest.split_once("} ")?;
                let label = |key: &str| {
                    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
                    let end = labels[start..].find('"')? + start;
                    Some(labels[start..end].to_string())
                };
                Some((
                    format!("{}/{}", label("operation")?, label("outcome")?),
                    value.parse().ok()?,
                ))
            })
            .collect()
    };
    let (before, after) = (parse(a), parse(b));
    after
        .into_iter()
        .map(|(k, v)| {
            let d = v - before.get(&k).copied().unwrap_or(0.0);
            (k, d)
        })
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

pub(super) async fn scrape(admin: &str) -> anyhow::Result<String> {
    let (status, body) = http_get(admin, "/metrics").await?;
    if status != 200 {
        bail!("operator /metrics answered {status}");
    }
    Ok(body)
}

/// `apiserver_request_total` summed: (all, group stackpilot.dev).
pub(super) async fn apiserver_requests(client: &Client) -> anyhow::Result<(f64, f64)> {
    let text = apiserver_metrics(client).await?;
    Ok((
        sum(&text, "apiserver_request_total", &[]),
        sum(&text, "apiserver_request_total", &["group=\"stackpilot.dev\""]),
    ))
}

pub(super) async fn apiserver_metrics(client: &Client) -> anyhow::Result<String> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    Ok(client.request_text(request).await?)
}

/// Writes to the API server (`apiserver_request_total` other than reads),
/// by `VERB resource[/subresource]`.
pub(super) fn apiserver_writes(text: &str) -> BTreeMap<String, f64> {
    let mut writes = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |key: &str| {
            let start = labels
                .find(&format!(",{key}=\""))
                .map(|i| i + 1)
                .or_else(|| labels.starts_with(&format!("{key}=\"")).then_some(0))?
                + key.len()
                + 2;
            let end = labels[start..].find('"')? + start;
            Some(labels[start..end].to_string())
        };
        let verb = label("verb").unwrap_or_default();
        if matches!(verb.as_str(), "GET" | "LIST" | "WATCH") {
            continue;
        }
        let mut key = format!("{verb} {}", label("resource").unwrap_or_default());
        if let Some(sub) = label("subresource").filter(|s| !s.is_empty()) {
            key = format!("{key}/{sub}");
        }
        *writes.entry(key).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
    }
    writes
}

/// A minimal HTTP/1.1 GET over loopback: (status, body).
pub(super) async fn http_get(host: &str, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

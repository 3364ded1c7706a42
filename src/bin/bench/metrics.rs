//! Reading Prometheus text: the operator's admin endpoint (AWS calls) and
//! the API server's `/metrics` (requests and writes).

use std::collections::BTreeMap;

use anyhow::bail;
use kube::Client;
use stackpilot::runtime::admin::{http_get, sample_sum};

/// Sum of the samples of `name` whose labels contain every fragment; 0 when
/// the family is not there (yet).
pub(super) fn sum(metrics: &str, name: &str, fragments: &[&str]) -> f64 {
    sample_sum(metrics, name, fragments).unwrap_or_default()
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

/// AWS answer times between two scrapes, by operation: (calls, mean
/// seconds), from `stackpilot_aws_call_duration_seconds`.
pub(super) fn answer_times(a: &str, b: &str) -> BTreeMap<String, (f64, f64)> {
    let parse = |text: &str, series: &str| -> BTreeMap<String, f64> {
        let prefix = format!("stackpilot_aws_call_duration_seconds_{series}{{operation=\"");
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(&prefix)?;
                let (operation, value) = rest.split_once("\"} ")?;
                Some((operation.to_string(), value.parse().ok()?))
            })
            .collect()
    };
    let delta = |series: &str| -> BTreeMap<String, f64> {
        let before = parse(a, series);
        parse(b, series)
            .into_iter()
            .map(|(k, v)| {
                let d = v - before.get(&k).copied().unwrap_or(0.0);
                (k, d)
            })
            .collect()
    };
    let seconds = delta("sum");
    delta("count")
        .into_iter()
        .filter(|(_, calls)| *calls > 0.0)
        .map(|(op, calls)| {
            let mean = seconds.get(&op).copied().unwrap_or(0.0) / calls;
            (op, (calls, mean))
        })
        .collect()
}

pub(super) async fn scrape(admin: &str) -> anyhow::Result<String> {
    let (status, body) = http_get(&format!("http://{admin}/metrics")).await?;
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

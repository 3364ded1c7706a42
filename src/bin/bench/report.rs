//! What one size measured, each target checked against it, and the printout.

use std::collections::BTreeMap;

pub(super) const MIB: f64 = 1024.0 * 1024.0;

pub(super) struct Report {
    pub(super) n: usize,
    pub(super) mode: String,
    pub(super) settings: String,
    pub(super) write_p50: f64,
    pub(super) write_p99: f64,
    pub(super) writes_seen: usize,
    pub(super) ready_count: usize,
    pub(super) all_ready: f64,
    pub(super) drift_done: f64,
    pub(super) converge_reconciles_per_second: f64,
    pub(super) converge_aws_calls: f64,
    /// AWS calls per Stack until all Ready, by `operation/outcome`.
    pub(super) converge_calls: BTreeMap<String, f64>,
    /// AWS answer times until all Ready: operation -> (calls, mean seconds).
    pub(super) converge_answers: BTreeMap<String, (f64, f64)>,
    /// Seconds calls waited for the call budget until all Ready (summed).
    pub(super) converge_budget_wait: f64,
    /// One template change of every Stack, after the steady window.
    pub(super) update: Option<Phase>,
    /// API server writes per Stack until all Ready, by verb and resource.
    pub(super) converge_writes: BTreeMap<String, f64>,
    pub(super) window: f64,
    pub(super) intervals: f64,
    pub(super) reads_per_interval: f64,
    pub(super) read_budget: usize,
    pub(super) in_flight: usize,
    pub(super) steady_calls: BTreeMap<String, f64>,
    pub(super) steady_reconciles_per_second: f64,
    pub(super) status_written: f64,
    pub(super) status_skipped: f64,
    pub(super) apiserver_per_second: f64,
    pub(super) apiserver_stackpilot_per_second: f64,
    pub(super) rss_peak: f64,
    pub(super) rss_steady: f64,
}

/// What one round of changes cost, per Stack.
pub(super) struct Phase {
    pub(super) ready: usize,
    pub(super) seconds: f64,
    /// AWS calls per Stack, by `operation/outcome`.
    pub(super) calls: BTreeMap<String, f64>,
    /// API server writes per Stack, by verb and resource (the bench's own apply included).
    pub(super) writes: BTreeMap<String, f64>,
}

fn listed(counts: &BTreeMap<String, f64>) -> String {
    let total: f64 = counts.values().sum();
    let each: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v:.2}")).collect();
    format!("{total:.2} ({})", each.join(", "))
}

impl Report {
    fn checks(&self) -> Vec<(String, String, String, Option<bool>)> {
        let mut rows = Vec::new();
        rows.push((
            "all Stacks Ready".to_string(),
            format!("{}/{} in {:.1} s", self.ready_count, self.n, self.all_ready),
            "all".to_string(),
            Some(self.ready_count == self.n),
        ));
        rows.push((
            "AWS read calls per poll interval (steady)".to_string(),
            format!("{:.1}", self.reads_per_interval),
            format!("<= {} (ceil(N/100) + {} in flight)", self.read_budget, self.in_flight),
            Some(self.reads_per_interval <= self.read_budget as f64),
        ));
        rows.push((
            "apply -> first AWS write p50 / p99".to_string(),
            format!(
                "{:.2} s / {:.2} s ({} seen)",
                self.write_p50, self.write_p99, self.writes_seen
            ),
            if self.n <= 1000 {
                "p99 < 2 s"
            } else {
                "(target at 1,000)"
            }
            .to_string(),
            (self.n <= 1000).then_some(self.write_p99 < 2.0 && self.writes_seen == self.n),
        ));
        rows.push((
            "time to all Ready".to_string(),
            format!("{:.1} s", self.all_ready),
            String::new(),
            None,
        ));
        rows.push((
            "time to first drift checks done (all)".to_string(),
            format!("{:.1} s", self.drift_done),
            String::new(),
            None,
        ));
        rows.push((
            "reconciles/s converging / steady".to_string(),
            format!(
                "{:.1} / {:.1}",
                self.converge_reconciles_per_second, self.steady_reconciles_per_second
            ),
            String::new(),
            None,
        ));
        rows.push((
            "AWS calls to converge (per Stack)".to_string(),
            format!(
                "{:.0} ({:.1})",
                self.converge_aws_calls,
                self.converge_aws_calls / self.n as f64
            ),
            String::new(),
            None,
        ));
        let limit = if self.n <= 2000 {
            Some(150.0)
        } else if self.n <= 5000 {
            Some(400.0)
        } else {
            None
        };
        rows.push((
            "operator RSS peak / steady".to_string(),
            format!("{:.0} MiB / {:.0} MiB", self.rss_peak / MIB, self.rss_steady / MIB),
            limit.map_or(String::new(), |l| format!("peak < {l:.0} MiB")),
            limit.map(|l| self.rss_peak / MIB < l),
        ));
        rows.push((
            "API server requests/s (steady): all / stackpilot.dev".to_string(),
            format!(
                "{:.1} / {:.2}",
                self.apiserver_per_second, self.apiserver_stackpilot_per_second
            ),
            String::new(),
            None,
        ));
        rows.push((
            "status writes in steady window: written / skipped".to_string(),
            format!("{:.0} / {:.0}", self.status_written, self.status_skipped),
            "0 written".to_string(),
            Some(self.status_written == 0.0),
        ));
        rows
    }

    pub(super) fn passed(&self) -> bool {
        self.checks().iter().all(|(_, _, _, ok)| ok.unwrap_or(true))
    }

    pub(super) fn print(&self) {
        println!("\n== N = {} Stacks, {} ==", self.n, self.mode);
        println!("{}", self.settings);
        println!(
            "steady window: {:.1} s = {:.2} poll intervals",
            self.window, self.intervals
        );
        println!("{:<52} {:<30} {:<38} result", "metric", "value", "target");
        for (metric, value, target, ok) in self.checks() {
            let result = match ok {
                Some(true) => "PASS",
                Some(false) => "FAIL",
                None => "",
            };
            println!("{metric:<52} {value:<30} {target:<38} {result}");
        }
        println!(
            "API server writes per Stack until all Ready (apply included): {}",
            listed(&self.converge_writes)
        );
        println!("AWS calls per Stack until all Ready: {}", listed(&self.converge_calls));
        // Where a slow first write can go: AWS (or the emulator) answering,
        // or waiting inside the operator (the call budget, queues, the API).
        let answers: Vec<String> = self
            .converge_answers
            .iter()
            .map(|(op, (calls, mean))| format!("{op} {:.0} ms x{calls:.0}", mean * 1000.0))
            .collect();
        println!(
            "AWS answer time until all Ready (mean): {}; waits for the call budget: {:.1} s summed",
            answers.join(", "),
            self.converge_budget_wait
        );
        if let Some(update) = &self.update {
            println!(
                "update of every template: {}/{} Ready again in {:.1} s",
                update.ready, self.n, update.seconds
            );
            println!(
                "  API server writes per Stack (apply included): {}",
                listed(&update.writes)
            );
            println!("  AWS calls per Stack: {}", listed(&update.calls));
        }
        let calls: Vec<String> = self.steady_calls.iter().map(|(op, n)| format!("{op}={n:.0}")).collect();
        println!(
            "AWS calls in the steady window by operation/outcome: {}",
            if calls.is_empty() {
                "none".to_string()
            } else {
                calls.join(", ")
            }
        );
    }
}

//! Counters for `/metrics`, rendered in the Prometheus text format.
//!
//! They count what this process saw since it started, as Prometheus expects; gauges that
//! describe shared state (queue depth) are read from the store at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds of the claim-latency histogram buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// The events Wharf reads, each its own value of the deliveries' `event` label.
const DELIVERY_EVENTS: [&str; 5] = [
    "ping",
    "push",
    "pull_request",
    "installation",
    "installation_repositories",
];

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    /// Webhook deliveries by (event, outcome); both labels are from fixed sets.
    deliveries: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Time from a build being queued to its claim.
    claim_latency: Mutex<Histogram>,
    /// Claim requests waiting for work right now.
    claims_waiting: std::sync::atomic::AtomicI64,
    /// Passes over a build that could not tell GitHub everything: retried later, or given up.
    github_report_failures: Mutex<BTreeMap<&'static str, u64>>,
    /// What the catch-up of missed webhooks did: passes made, deliveries asked for again,
    /// branch heads queued.
    github_catch_up: Mutex<BTreeMap<&'static str, u64>>,
}

/// Counts a claim request as waiting for as long as it lives.
pub struct WaitingClaim<'a>(&'a Metrics);

impl Drop for WaitingClaim<'_> {
    fn drop(&mut self) {
        self.0
            .claims_waiting
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// How a delivery ended, as a metric label.
#[derive(Debug, Clone, Copy)]
pub enum DeliveryLabel {
    Accepted,
    Duplicate,
    Ignored,
    BadSignature,
    BadRequest,
    Error,
}

impl DeliveryLabel {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryLabel::Accepted => "accepted",
            DeliveryLabel::Duplicate => "duplicate",
            DeliveryLabel::Ignored => "ignored",
            DeliveryLabel::BadSignature => "bad_signature",
            DeliveryLabel::BadRequest => "bad_request",
            DeliveryLabel::Error => "error",
        }
    }
}

impl Metrics {
    /// Counts one delivery. `event` is the event's name once its signature was checked, else
    /// `None` ("unknown"); a label is never a value a caller chose: events Wharf does not read
    /// are counted as "other".
    pub fn count_delivery(&self, event: Option<&str>, outcome: DeliveryLabel) {
        let event = match event {
            None => "unknown",
            Some(name) => DELIVERY_EVENTS
                .iter()
                .find(|known| **known == name)
                .copied()
                .unwrap_or("other"),
        };
        if let Ok(mut deliveries) = self.deliveries.lock() {
            *deliveries.entry((event, outcome.as_str())).or_default() += 1;
        }
    }

    /// Marks a claim request as waiting until the returned guard is dropped.
    pub fn claim_waiting(&self) -> WaitingClaim<'_> {
        self.claims_waiting
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        WaitingClaim(self)
    }

    /// Counts a pass of the GitHub reporter that failed: `retrying` when it will be tried again,
    /// else the build is no longer reported.
    pub fn count_github_report_failure(&self, retrying: bool) {
        let outcome = if retrying { "retrying" } else { "gave_up" };
        if let Ok(mut failures) = self.github_report_failures.lock() {
            *failures.entry(outcome).or_default() += 1;
        }
    }

    /// Counts a pass of the catch-up of missed webhooks and what it caught up.
    pub(crate) fn count_catch_up(&self, done: &crate::core::catch_up::CatchUp) {
        if let Ok(mut counts) = self.github_catch_up.lock() {
            *counts.entry("passes").or_default() += 1;
            *counts.entry("redeliveries").or_default() += done.redelivered.len() as u64;
            *counts.entry("branch_heads").or_default() += done.heads_queued.len() as u64;
        }
    }

    /// Records how long a build waited before it was claimed.
    pub fn observe_claim_latency(&self, seconds: f64) {
        if let Ok(mut histogram) = self.claim_latency.lock() {
            for (index, bound) in LATENCY_BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    histogram.counts[index] += 1;
                }
            }
            histogram.count += 1;
            histogram.sum += seconds;
        }
    }

    /// Renders every metric; `builds_by_state` comes from the store.
    pub fn render(&self, builds_by_state: &[(String, i64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP wharf_webhook_deliveries_total GitHub webhook deliveries received, by event and outcome.\n");
        out.push_str("# TYPE wharf_webhook_deliveries_total counter\n");
        if let Ok(deliveries) = self.deliveries.lock() {
            for ((event, outcome), count) in deliveries.iter() {
                let _ = writeln!(
                    out,
                    "wharf_webhook_deliveries_total{{event=\"{event}\",outcome=\"{outcome}\"}} {count}"
                );
            }
        }
        out.push_str("# HELP wharf_builds Builds in the store, by state.\n");
        out.push_str("# TYPE wharf_builds gauge\n");
        let mut pending = 0;
        for (state, count) in builds_by_state {
            if state == "pending" {
                pending = *count;
            }
            let _ = writeln!(out, "wharf_builds{{state=\"{state}\"}} {count}");
        }
        out.push_str("# HELP wharf_queue_depth Builds waiting to be claimed.\n");
        out.push_str("# TYPE wharf_queue_depth gauge\n");
        let _ = writeln!(out, "wharf_queue_depth {pending}");
        out.push_str("# HELP wharf_agent_claims_waiting Agent claim requests held open, waiting for a build.\n");
        out.push_str("# TYPE wharf_agent_claims_waiting gauge\n");
        let _ = writeln!(
            out,
            "wharf_agent_claims_waiting {}",
            self.claims_waiting
                .load(std::sync::atomic::Ordering::Relaxed)
        );
        out.push_str("# HELP wharf_claim_latency_seconds Time from a build being queued to an agent claiming it.\n");
        out.push_str("# TYPE wharf_claim_latency_seconds histogram\n");
        if let Ok(histogram) = self.claim_latency.lock() {
            for (index, bound) in LATENCY_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "wharf_claim_latency_seconds_bucket{{le=\"{bound}\"}} {}",
                    histogram.counts[index]
                );
            }
            let _ = writeln!(
                out,
                "wharf_claim_latency_seconds_bucket{{le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(out, "wharf_claim_latency_seconds_sum {}", histogram.sum);
            let _ = writeln!(out, "wharf_claim_latency_seconds_count {}", histogram.count);
        }
        out.push_str("# HELP wharf_github_report_failures_total Reports of builds to GitHub that failed, by what came next.\n");
        out.push_str("# TYPE wharf_github_report_failures_total counter\n");
        if let Ok(failures) = self.github_report_failures.lock() {
            for outcome in ["retrying", "gave_up"] {
                let count = failures.get(outcome).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "wharf_github_report_failures_total{{outcome=\"{outcome}\"}} {count}"
                );
            }
        }
        out.push_str("# HELP wharf_github_catch_up_total What the catch-up of webhooks GitHub failed to deliver did: passes made, deliveries asked for again, branch heads queued.\n");
        out.push_str("# TYPE wharf_github_catch_up_total counter\n");
        if let Ok(counts) = self.github_catch_up.lock() {
            for kind in ["passes", "redeliveries", "branch_heads"] {
                let count = counts.get(kind).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "wharf_github_catch_up_total{{kind=\"{kind}\"}} {count}"
                );
            }
        }
        out
    }
}

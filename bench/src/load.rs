//! Load generation: a closed loop (C connections, each sending its next request as soon as the
//! previous one is answered) and an open loop at a fixed rate (request i is due at t0 + i/R and
//! its latency counts from that due time, so a slow server cannot slow the sender down and hide
//! its own queueing: no coordinated omission).
//!
//! Requests come from a pool built before timing. A shared cursor hands each request out once;
//! for a target that stores nothing (adnanh/webhook) the cursor may wrap around the pool.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::payload::SignedRequest;

/// Where requests go and which requests to send.
#[derive(Clone)]
pub struct Target {
    pub client: reqwest::Client,
    pub url: String,
    pub pool: &'static [SignedRequest],
    /// The next request to hand out.
    pub cursor: Arc<AtomicUsize>,
    /// May requests be sent again once the pool is used up?
    pub wrap: bool,
}

impl Target {
    /// Requests from `pool`, in order from its first, to `url` through `client`; `wrap` says
    /// whether they may be sent again once the pool is used up.
    pub fn new(
        client: &reqwest::Client,
        url: String,
        pool: &'static [SignedRequest],
        wrap: bool,
    ) -> Target {
        Target {
            client: client.clone(),
            url,
            pool,
            cursor: Arc::new(AtomicUsize::new(0)),
            wrap,
        }
    }

    /// The next request and its index, or `None` when the pool is used up and may not wrap.
    fn next(&self) -> Option<(usize, &'static SignedRequest)> {
        let index = self.cursor.fetch_add(1, Ordering::Relaxed);
        if index < self.pool.len() {
            Some((index, &self.pool[index]))
        } else if self.wrap && !self.pool.is_empty() {
            Some((index, &self.pool[index % self.pool.len()]))
        } else {
            None
        }
    }

    /// Sends one request and reads the whole answer (so the connection can be reused).
    pub async fn send(&self, request: &'static SignedRequest) -> Result<u16, String> {
        self.send_reading(request, &request.signature)
            .await
            .map(|(status, _)| status)
    }

    /// Sends one request with the given signature header; returns the status and the body.
    pub async fn send_reading(
        &self,
        request: &'static SignedRequest,
        signature: &HeaderValue,
    ) -> Result<(u16, Vec<u8>), String> {
        let response = self
            .push(request, signature)
            .send()
            .await
            .map_err(|error| transport_error(&error))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|error| transport_error(&error))?;
        Ok((status, body.to_vec()))
    }

    /// The push delivery `request` as GitHub sends it, with the given signature header.
    pub fn push(
        &self,
        request: &'static SignedRequest,
        signature: &HeaderValue,
    ) -> reqwest::RequestBuilder {
        self.client
            .post(&self.url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(
                USER_AGENT,
                HeaderValue::from_static("GitHub-Hookshot/bench"),
            )
            .header("x-github-event", HeaderValue::from_static("push"))
            .header("x-github-delivery", request.delivery.clone())
            .header("x-hub-signature-256", signature.clone())
            .body(&request.body[..])
    }
}

fn transport_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timeout".to_owned()
    } else if error.is_connect() {
        "connect error".to_owned()
    } else {
        "transport error".to_owned()
    }
}

/// What one phase measured.
#[derive(Debug, Default)]
pub struct Phase {
    /// Latency of every answered request (any status), in microseconds.
    pub latencies_us: Vec<u64>,
    /// Answers with a 2xx status.
    pub ok: u64,
    /// Answers by status, and transport failures by kind.
    pub outcomes: BTreeMap<String, u64>,
    /// Pool indices of the requests answered 202 Accepted.
    pub accepted: Vec<usize>,
    /// Pool indices of the requests answered non-2xx or not answered at all.
    pub failed: Vec<usize>,
    /// From the start of the phase to its last answer.
    pub elapsed: Duration,
    /// The pool ran out before the phase's time was up.
    pub exhausted: bool,
    /// Open loop only: how late each send left compared with its due time, in microseconds.
    pub send_lag_us: Vec<u64>,
    /// Open loop only: from the actual send to the answer, in microseconds.
    pub service_us: Vec<u64>,
    /// When each 2xx answer arrived, in milliseconds since the start of the phase.
    pub ok_at_ms: Vec<u32>,
}

impl Phase {
    fn record(
        &mut self,
        index: usize,
        outcome: &Result<u16, String>,
        latency: Duration,
        since_start: Duration,
    ) {
        match outcome {
            Ok(status) => {
                self.latencies_us.push(latency.as_micros() as u64);
                if (200..300).contains(status) {
                    self.ok += 1;
                    self.ok_at_ms.push(since_start.as_millis() as u32);
                }
                if *status == 202 {
                    self.accepted.push(index);
                } else if !(200..300).contains(status) {
                    self.failed.push(index);
                }
                *self.outcomes.entry(status.to_string()).or_default() += 1;
            }
            Err(kind) => {
                self.failed.push(index);
                *self.outcomes.entry(kind.clone()).or_default() += 1;
            }
        }
    }

    fn merge(&mut self, other: Phase) {
        self.latencies_us.extend(other.latencies_us);
        self.ok += other.ok;
        for (key, count) in other.outcomes {
            *self.outcomes.entry(key).or_default() += count;
        }
        self.accepted.extend(other.accepted);
        self.failed.extend(other.failed);
        self.exhausted |= other.exhausted;
        self.send_lag_us.extend(other.send_lag_us);
        self.service_us.extend(other.service_us);
        self.ok_at_ms.extend(other.ok_at_ms);
    }

    /// Answers that were not 2xx, plus transport failures.
    pub fn errors(&self) -> u64 {
        self.outcomes
            .iter()
            .filter(|(key, _)| !key.starts_with('2'))
            .map(|(_, count)| count)
            .sum()
    }

    /// 2xx answers per second over the phase.
    pub fn throughput(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.ok as f64 / seconds
        } else {
            0.0
        }
    }

    /// 2xx answers in each whole second of the phase.
    pub fn per_second(&self) -> Vec<u64> {
        let seconds = (self.elapsed.as_millis() / 1000) as usize;
        let mut counts = vec![0u64; seconds];
        for at in &self.ok_at_ms {
            if let Some(count) = counts.get_mut(*at as usize / 1000) {
                *count += 1;
            }
        }
        counts
    }

    /// Sorts the samples so percentiles can be read.
    pub fn finish(&mut self) {
        self.latencies_us.sort_unstable();
        self.send_lag_us.sort_unstable();
        self.service_us.sort_unstable();
    }

    /// The `p`th percentile latency (nearest rank) in milliseconds; call [`Phase::finish`] first.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        percentile(&self.latencies_us, p).map(|us| us as f64 / 1000.0)
    }

    /// Outcomes as `status×count`, for the report.
    pub fn outcome_summary(&self) -> String {
        self.outcomes
            .iter()
            .map(|(key, count)| format!("{key}×{count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// `connections` workers each send, wait for the answer, and send again, until `duration` is
/// over (answers still in flight then are awaited and counted). With `stop_on_failure`, a
/// worker stops at its first transport failure (used when the server is killed under load).
pub async fn closed_loop(
    target: &Target,
    connections: usize,
    duration: Duration,
    stop_on_failure: bool,
) -> Phase {
    let started = Instant::now();
    let deadline = started + duration;
    let finished_at = Arc::new(std::sync::Mutex::new(started));
    let mut workers = JoinSet::new();
    for _ in 0..connections {
        let target = target.clone();
        let finished_at = finished_at.clone();
        workers.spawn(async move {
            let mut phase = Phase::default();
            let mut last = started;
            while Instant::now() < deadline {
                let Some((index, request)) = target.next() else {
                    phase.exhausted = true;
                    break;
                };
                let sent = Instant::now();
                let outcome = target.send(request).await;
                last = Instant::now();
                phase.record(index, &outcome, last - sent, last - started);
                if stop_on_failure && outcome.is_err() {
                    break;
                }
            }
            if let Ok(mut finished) = finished_at.lock()
                && last > *finished
            {
                *finished = last;
            }
            phase
        });
    }
    let mut total = Phase::default();
    while let Some(result) = workers.join_next().await {
        if let Ok(phase) = result {
            total.merge(phase);
        }
    }
    let finished = finished_at.lock().map(|at| *at).unwrap_or(started);
    total.elapsed = finished.saturating_duration_since(started);
    total.finish();
    total
}

/// What one open-loop request came to: pool index, outcome, due, sent and answered instants.
type Done = (usize, Result<u16, String>, Instant, Instant, Instant);

/// Sends `rate × duration` requests, request i due at t0 + i/rate, each in its own task. A
/// request's latency runs from its due time to its answer.
///
/// The pacing runs on a thread of its own that sleeps with the OS's precision (tens of
/// microseconds) rather than Tokio's 1 ms timer, and hands each request to the runtime as a
/// task, so neither slow answers nor busy runtime threads delay the next send.
pub async fn open_loop(target: &Target, rate: f64, duration: Duration) -> Phase {
    let total = (rate * duration.as_secs_f64()).round() as usize;
    let started = Instant::now() + Duration::from_millis(5);
    let runtime = tokio::runtime::Handle::current();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Done>();
    let pacer_target = target.clone();
    let pacer = std::thread::spawn(move || {
        let start = started.into_std();
        for i in 0..total {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            // Pacing: the only sleep the benchmark uses to decide when something happens.
            let now = std::time::Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let Some((index, request)) = pacer_target.next() else {
                return true;
            };
            let target = pacer_target.clone();
            let done_tx = done_tx.clone();
            let due = Instant::from_std(due);
            runtime.spawn(async move {
                let sent = Instant::now();
                let outcome = target.send(request).await;
                let _ = done_tx.send((index, outcome, due, sent, Instant::now()));
            });
        }
        false
    });
    let mut phase = Phase::default();
    let mut last_answer = started;
    // Ends once the pacer and every request task have dropped their senders.
    while let Some((index, outcome, due, sent, at)) = done_rx.recv().await {
        phase.record(
            index,
            &outcome,
            at.saturating_duration_since(due),
            at.saturating_duration_since(started),
        );
        phase
            .send_lag_us
            .push(sent.saturating_duration_since(due).as_micros() as u64);
        phase
            .service_us
            .push(at.saturating_duration_since(sent).as_micros() as u64);
        last_answer = last_answer.max(at);
    }
    // The pacer has returned: its sender is gone, or the loop above would still wait.
    phase.exhausted = pacer.join().unwrap_or(false);
    phase.elapsed = last_answer.saturating_duration_since(started);
    phase.finish();
    phase
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50));
        assert_eq!(percentile(&samples, 99.0), Some(99));
        assert_eq!(percentile(&samples, 100.0), Some(100));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }
}

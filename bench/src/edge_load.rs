//! Requests through the edge at a fixed rate, and what they saw.
//!
//! An open loop: request i is due at t0 + i/rate and is sent in its own task, so an edge that
//! stalls cannot slow the sender down and hide its own stall (no coordinated omission). Every
//! request keeps its due, sent and answered times on the wall clock (milliseconds since the
//! epoch), which the server's timestamps share on this machine, and which version answered it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::report::percentile;

/// A request answered 200 this long after it was due was held up (the edge retrying a stopped
/// upstream), though it did not fail. Well above what a busy 2-core machine adds by itself
/// (the report shows the latency before each deploy for comparison).
pub const HELD_MS: f64 = 1000.0;
/// What the client gives a request before counting it as a timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The client the load uses: keep-alive HTTP/1.1 on loopback, its own pool.
pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(64)
        .connect_timeout(Duration::from_secs(5))
        .timeout(REQUEST_TIMEOUT)
        .build()?)
}

/// Milliseconds since the epoch. The server runs on this machine, so its timestamps share the
/// clock.
pub fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Monotonic instants as milliseconds since the epoch, from one reading of both clocks.
#[derive(Clone, Copy)]
struct Clock {
    instant: Instant,
    wall: f64,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            instant: Instant::now(),
            wall: wall_ms(),
        }
    }

    fn at(&self, instant: Instant) -> f64 {
        self.wall
            + instant
                .saturating_duration_since(self.instant)
                .as_secs_f64()
                * 1000.0
    }
}

/// How one request through the edge ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 200, with the body (the version that answered).
    Ok(String),
    /// Any other status.
    Status(u16),
    /// No answer: timeout, refused, reset.
    Failed(String),
}

/// One request through the edge.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was due, in milliseconds since the epoch.
    pub due_ms: f64,
    /// When the load generator actually sent it (later than due when it got no CPU in time).
    pub sent_ms: f64,
    /// When its answer (or failure) arrived.
    pub done_ms: f64,
    pub answer: Answer,
}

impl Sample {
    pub fn latency_ms(&self) -> f64 {
        self.done_ms - self.due_ms
    }

    pub fn failed(&self) -> bool {
        !matches!(self.answer, Answer::Ok(_))
    }

    /// Answered 200, but more than [`HELD_MS`] after it was due.
    pub fn held(&self) -> bool {
        !self.failed() && self.latency_ms() > HELD_MS
    }
}

/// Requests through the edge at a fixed rate until told to stop.
pub struct Load {
    stop: Arc<AtomicBool>,
    pacer: std::thread::JoinHandle<()>,
    answers: tokio::sync::mpsc::UnboundedReceiver<Sample>,
}

impl Load {
    /// Starts sending `GET url` with `Host: host`, `rate` per second, each in its own task.
    pub fn start(client: &reqwest::Client, url: &str, host: &str, rate: f64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (sender, answers) = tokio::sync::mpsc::unbounded_channel();
        let runtime = tokio::runtime::Handle::current();
        let (client, url, host, stopped) = (
            client.clone(),
            url.to_owned(),
            host.to_owned(),
            stop.clone(),
        );
        // Pacing runs on a thread of its own with the OS's sleep precision, as in load.rs.
        let pacer = std::thread::spawn(move || {
            let clock = Clock::now();
            let start = clock.instant + Duration::from_millis(5);
            let mut index = 0u64;
            while !stopped.load(Ordering::Relaxed) {
                let due = start + Duration::from_secs_f64(index as f64 / rate);
                index += 1;
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let (client, url, host, sender) =
                    (client.clone(), url.clone(), host.clone(), sender.clone());
                runtime.spawn(async move {
                    let sent = Instant::now();
                    let answer = get_through_edge(&client, &url, &host).await;
                    let _ = sender.send(Sample {
                        due_ms: clock.at(due),
                        sent_ms: clock.at(sent),
                        done_ms: clock.at(Instant::now()),
                        answer,
                    });
                });
            }
        });
        Load {
            stop,
            pacer,
            answers,
        }
    }

    /// Stops sending, waits for every request in flight, and returns them all by due time.
    pub async fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let pacer = self.pacer;
        let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
        let mut samples = Vec::new();
        while let Some(sample) = self.answers.recv().await {
            samples.push(sample);
        }
        samples.sort_by(|a, b| a.due_ms.total_cmp(&b.due_ms));
        samples
    }
}

pub async fn get_through_edge(client: &reqwest::Client, url: &str, host: &str) -> Answer {
    let response = match client
        .get(url)
        .header(reqwest::header::HOST, host)
        .send()
        .await
    {
        Ok(response) => response,
        Err(error) => return Answer::Failed(failure_kind(&error)),
    };
    let status = response.status().as_u16();
    match response.text().await {
        Ok(body) if status == 200 => Answer::Ok(body.trim().to_owned()),
        Ok(_) => Answer::Status(status),
        Err(error) => Answer::Failed(failure_kind(&error)),
    }
}

fn failure_kind(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timeout".to_owned();
    }
    if error.is_connect() {
        return "connection refused".to_owned();
    }
    // The innermost cause says what happened (reset, closed before the answer, …).
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    format!("transport error: {cause}")
}

/// What a stretch of load saw.
#[derive(Debug, Default)]
pub struct Summary {
    pub requests: usize,
    /// From the first request's due time to the last one's.
    pub seconds: f64,
    /// 200 answers by the version (body) that gave them.
    pub versions: BTreeMap<String, usize>,
    /// Non-200 answers by status, and failures by kind.
    pub failures: BTreeMap<String, usize>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Answered 200, but more than [`HELD_MS`] after being due.
    pub held: usize,
    /// The longest time between two consecutive 200 answers, in milliseconds.
    pub longest_gap_ms: f64,
    /// How late the load generator sent requests: p99 and max, in milliseconds.
    pub send_lag_p99_ms: Option<f64>,
    pub send_lag_max_ms: Option<f64>,
}

impl Summary {
    pub fn of(samples: &[Sample]) -> Summary {
        let mut summary = Summary {
            requests: samples.len(),
            ..Summary::default()
        };
        if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
            summary.seconds = (last.due_ms - first.due_ms) / 1000.0;
        }
        for sample in samples {
            match &sample.answer {
                Answer::Ok(body) => *summary.versions.entry(body.clone()).or_default() += 1,
                Answer::Status(status) => {
                    *summary
                        .failures
                        .entry(format!("HTTP {status}"))
                        .or_default() += 1
                }
                Answer::Failed(kind) => *summary.failures.entry(kind.clone()).or_default() += 1,
            }
            if sample.held() {
                summary.held += 1;
            }
        }
        let mut latencies: Vec<f64> = samples.iter().map(Sample::latency_ms).collect();
        latencies.sort_by(f64::total_cmp);
        summary.p50_ms = percentile(&latencies, 50.0);
        summary.p99_ms = percentile(&latencies, 99.0);
        summary.max_ms = latencies.last().copied();
        let mut lags: Vec<f64> = samples.iter().map(|s| s.sent_ms - s.due_ms).collect();
        lags.sort_by(f64::total_cmp);
        summary.send_lag_p99_ms = percentile(&lags, 99.0);
        summary.send_lag_max_ms = lags.last().copied();
        let mut answered: Vec<f64> = samples
            .iter()
            .filter(|sample| !sample.failed())
            .map(|sample| sample.done_ms)
            .collect();
        answered.sort_by(f64::total_cmp);
        summary.longest_gap_ms = answered
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .fold(0.0, f64::max);
        summary
    }

    pub fn failed(&self) -> usize {
        self.failures.values().sum()
    }

    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn versions_text(&self) -> String {
        join_counts(&self.versions)
    }

    pub fn failures_text(&self) -> String {
        if self.failures.is_empty() {
            "none".to_owned()
        } else {
            join_counts(&self.failures)
        }
    }
}

fn join_counts(counts: &BTreeMap<String, usize>) -> String {
    counts
        .iter()
        .map(|(key, count)| {
            let key = if key.is_empty() { "(empty body)" } else { key };
            format!("{key}: {count}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The requests due before `start_ms`.
pub fn before(samples: &[Sample], start_ms: f64) -> Summary {
    let steady: Vec<Sample> = samples
        .iter()
        .filter(|sample| sample.due_ms < start_ms)
        .cloned()
        .collect();
    Summary::of(&steady)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(due: f64, done: f64, answer: Answer) -> Sample {
        Sample {
            due_ms: due,
            sent_ms: due,
            done_ms: done,
            answer,
        }
    }
    #[test]
    fn summaries_count_failures_versions_and_gaps() {
        let samples = vec![
            sample(0.0, 1.0, Answer::Ok("A".to_owned())),
            sample(5.0, 6.0, Answer::Ok("A".to_owned())),
            sample(10.0, 11.0, Answer::Status(502)),
            sample(15.0, 1400.0, Answer::Ok("B".to_owned())),
            sample(20.0, 1401.0, Answer::Failed("timeout".to_owned())),
        ];
        let summary = Summary::of(&samples);
        assert_eq!(summary.requests, 5);
        assert_eq!(summary.failed(), 2);
        assert_eq!(summary.versions_text(), "A: 2, B: 1");
        assert_eq!(summary.failures_text(), "HTTP 502: 1, timeout: 1");
        assert_eq!(summary.held, 1);
        assert_eq!(summary.longest_gap_ms, 1394.0);
        assert_eq!(summary.max_ms, Some(1385.0));
    }
}

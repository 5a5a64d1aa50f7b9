//! `wharf-bench claim`: push-accepted to claimed latency with an idle agent.
//!
//! An agent loop in this process long-polls `POST /v1/agent/claim`; each build it gets is
//! reported failed at once, and it claims again. The main task sends one signed push at a time,
//! only when the agent is waiting (`wharf_agent_claims_waiting` reads 1), and measures from
//! Wharf's 202 for the push to the agent receiving that build in its claim answer. Both instants
//! are taken in this process, on the same monotonic clock.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::load::Target;
use crate::payload::{Generator, start_tracking_server};
use crate::procs::{self, Wharf, WharfLaunch};
use crate::report;

/// How long one claim request may be held open by the server.
const CLAIM_WAIT_MS: u64 = 20_000;
/// Longest wait for the agent to be waiting again, or for a claim to arrive.
const STEP_DEADLINE: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The `wharf` binary to start as `BIN server`.
    #[arg(long)]
    wharf: PathBuf,
    /// Pushes to measure, one at a time.
    #[arg(long, default_value_t = 200)]
    pushes: usize,
    /// Where to write the Markdown report.
    #[arg(long, default_value = "bench/results/claim.md")]
    out: PathBuf,
}

/// One measured push.
struct Sample {
    /// From the 202's headers arriving to the claim answer arriving, in microseconds; negative
    /// when the claim answer came first.
    accepted_to_claimed_us: i64,
    /// From sending the push to the claim answer arriving, in microseconds.
    sent_to_claimed_us: i64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.pushes > 0, "--pushes must be positive");
    let wharf_bin = std::fs::canonicalize(&args.wharf)
        .with_context(|| format!("no wharf binary at {}", args.wharf.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("wharf-bench-claim-")
        .tempdir()?;
    let secret = procs::random_hex(32)?;
    let generator = Generator::new(&secret, &procs::random_hex(4)?)?;
    let pool = generator.pool(args.pushes)?;
    let http = procs::http_client(4)?;
    let launch = WharfLaunch::fresh(&wharf_bin, dir.path(), &secret)?;
    let mut wharf = start_tracking_server(&launch, &http, "claim", &[]).await?;
    let agent_token = wharf.add_agent(&http, "bench-agent").await?;

    let (claims_tx, mut claims) = mpsc::unbounded_channel::<anyhow::Result<(i64, Instant)>>();
    let agent_loop = tokio::spawn(agent_loop(
        http.clone(),
        wharf.url.clone(),
        agent_token,
        claims_tx,
    ));

    let target = Target::new(&http, wharf.webhook_url(), pool, false);
    eprintln!(
        "==> {} pushes, each after the agent is waiting",
        args.pushes
    );
    let mut samples = Vec::with_capacity(args.pushes);
    let outcome = async {
        for request in pool {
            wait_for_waiting_agent(&http, &mut wharf).await?;
            let sent = Instant::now();
            let response = target
                .push(request, &request.signature)
                .send()
                .await
                .context("push")?;
            let accepted = Instant::now();
            let status = response.status();
            let body: Value = response.json().await.context("push answer")?;
            ensure!(
                status == StatusCode::ACCEPTED,
                "the push was answered {status}: {body}"
            );
            let build = body["builds"][0]
                .as_i64()
                .with_context(|| format!("the push queued no build: {body}"))?;
            let (claimed_build, claimed) = tokio::time::timeout(STEP_DEADLINE, claims.recv())
                .await
                .with_context(|| {
                    format!("build #{build} was not claimed within {STEP_DEADLINE:?}")
                })?
                .context("the agent loop ended")??;
            ensure!(
                claimed_build == build,
                "the agent claimed build #{claimed_build}, expected #{build}"
            );
            samples.push(Sample {
                accepted_to_claimed_us: signed_micros(claimed, accepted),
                sent_to_claimed_us: signed_micros(claimed, sent),
            });
        }
        anyhow::Ok(())
    }
    .await;
    agent_loop.abort();
    outcome?;
    let metrics = wharf.metrics(&http).await?;
    let server_sum = procs::metric_sum(&metrics, "wharf_claim_latency_seconds_sum");
    let server_count = procs::metric_sum(&metrics, "wharf_claim_latency_seconds_count");
    wharf.child.check_running()?;
    drop(wharf);

    let text = render(&args, &wharf_bin, &samples, server_sum, server_count);
    report::publish(&args.out, &text)
}

/// `later - earlier` in microseconds, negative when `later` is earlier.
fn signed_micros(later: Instant, earlier: Instant) -> i64 {
    if later >= earlier {
        (later - earlier).as_micros() as i64
    } else {
        -((earlier - later).as_micros() as i64)
    }
}

/// Polls `GET /metrics` until exactly one claim request is held open.
async fn wait_for_waiting_agent(http: &reqwest::Client, wharf: &mut Wharf) -> anyhow::Result<()> {
    let deadline = Instant::now() + STEP_DEADLINE;
    loop {
        let metrics = wharf.metrics(http).await?;
        if procs::metric_sum(&metrics, "wharf_agent_claims_waiting") == Some(1.0) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            wharf.child.check_running()?;
            bail!("the agent was not waiting for a build within {STEP_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Claims builds forever: on each, notes when it arrived, reports it failed, and claims again.
async fn agent_loop(
    http: reqwest::Client,
    url: String,
    token: String,
    claims: mpsc::UnboundedSender<anyhow::Result<(i64, Instant)>>,
) {
    let result = async {
        loop {
            let response = http
                .post(format!("{url}/v1/agent/claim"))
                .bearer_auth(&token)
                .timeout(Duration::from_millis(CLAIM_WAIT_MS + 10_000))
                .json(&json!({"wait_ms": CLAIM_WAIT_MS}))
                .send()
                .await
                .context("claim")?;
            let arrived = Instant::now();
            let status = response.status();
            let answer: Value = response.json().await.context("claim answer")?;
            ensure!(
                status == StatusCode::OK,
                "claim answered {status}: {answer}"
            );
            let Some(build) = answer["job"]["build"]["id"].as_i64() else {
                continue;
            };
            let report = http
                .post(format!("{url}/v1/agent/builds/{build}/state"))
                .bearer_auth(&token)
                .json(&json!({"state": "failed", "reason": "benchmark"}))
                .send()
                .await
                .context("state report")?;
            ensure!(
                report.status() == StatusCode::OK,
                "reporting build #{build} failed answered {}",
                report.status()
            );
            if claims.send(Ok((build, arrived))).is_err() {
                return Ok(());
            }
        }
    }
    .await;
    if let Err(error) = result {
        let _ = claims.send(Err(error));
    }
}

fn render(
    args: &Args,
    wharf_bin: &std::path::Path,
    samples: &[Sample],
    server_sum: Option<f64>,
    server_count: Option<f64>,
) -> String {
    let mut accepted: Vec<i64> = samples.iter().map(|s| s.accepted_to_claimed_us).collect();
    let mut sent: Vec<i64> = samples.iter().map(|s| s.sent_to_claimed_us).collect();
    accepted.sort_unstable();
    sent.sort_unstable();
    // Nearest rank, as for the intake benchmark, over signed samples.
    let pct = |sorted: &[i64], p: f64| -> Option<f64> {
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        (!sorted.is_empty()).then(|| sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0)
    };
    let before = accepted.iter().filter(|v| **v < 0).count();
    let (p50, p99) = (pct(&accepted, 50.0), pct(&accepted, 99.0));
    let mut out = String::new();
    report::header(
        &mut out,
        "Push accepted to claimed, idle agent",
        wharf_bin,
        "`wharf server` on SQLite in a temporary directory",
    );
    let _ = writeln!(
        out,
        "- Method: {} distinct signed pushes, one at a time, each sent once the agent's long-poll claim is held open (`wharf_agent_claims_waiting` = 1); the agent (in this process) reports each build failed at once and claims again",
        args.pushes
    );
    let _ = writeln!(out, "\n| Measure | p50 | p99 | max |\n|---|---:|---:|---:|");
    let _ = writeln!(
        out,
        "| 202 received → claim answer received | {} | {} | {} |",
        report::ms(p50),
        report::ms(p99),
        report::ms(pct(&accepted, 100.0))
    );
    let _ = writeln!(
        out,
        "| push sent → claim answer received | {} | {} | {} |",
        report::ms(pct(&sent, 50.0)),
        report::ms(pct(&sent, 99.0)),
        report::ms(pct(&sent, 100.0))
    );
    let _ = writeln!(out, "\n## Goals\n");
    let _ = writeln!(
        out,
        "- p50 under 20 ms: measured {} — {}",
        report::ms(p50),
        report::met(p50.is_some_and(|v| v < 20.0))
    );
    let _ = writeln!(
        out,
        "- p99 under 100 ms: measured {} — {}",
        report::ms(p99),
        report::met(p99.is_some_and(|v| v < 100.0))
    );
    let _ = writeln!(out, "\n## Notes\n");
    let _ = writeln!(
        out,
        "- The 202 instant is when its status line and headers arrived. Wharf wakes waiting claims before it answers the push, so the claim answer can arrive first; that happened for {before} of {} pushes and shows as a negative latency.",
        samples.len()
    );
    if let (Some(sum), Some(count)) = (server_sum, server_count)
        && count > 0.0
    {
        let _ = writeln!(
            out,
            "- Wharf's own `wharf_claim_latency_seconds` (queued → claimed, millisecond clock, in the server) averaged {:.2} ms over {count} claims.",
            sum / count * 1000.0
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_differences() {
        let earlier = Instant::now();
        let later = earlier + Duration::from_micros(1500);
        assert_eq!(signed_micros(later, earlier), 1500);
        assert_eq!(signed_micros(earlier, later), -1500);
    }
}

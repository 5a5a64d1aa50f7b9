//! `wharf-bench notify`: how fast an event reaches a notification sink, and that none is lost
//! when the sink fails half the time.
//!
//! A webhook receiver in this process plays the sink. Latency: one `test` event at a time
//! (`POST /v1/notifications/{name}/test` writes it to the outbox), measured from sending that
//! request to the receiver getting the message, in rounds. Loss: a burst of events to a sink
//! that answers half of all requests 503 with `Retry-After: 1`, at random; the receiver keeps
//! each `X-Wharf-Delivery` it accepted, as a receiver deduplicating repeats would, and the run
//! waits until every event's message was accepted, sending the dead letters again
//! (`POST /v1/notifications/{name}/retry`) if the sink's bad luck made any.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::procs::{self, Wharf, WharfLaunch};
use crate::report;

/// The goal for an event's message to reach the sink, at the 99th percentile.
const P99_GOAL: Duration = Duration::from_secs(1);
/// Longest wait for one message while measuring latency.
const MESSAGE_DEADLINE: Duration = Duration::from_secs(10);
/// Test events sent at once while making the burst.
const BURST_CONCURRENCY: usize = 8;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The `wharf` binary to start as `BIN server`.
    #[arg(long)]
    wharf: PathBuf,
    /// Rounds of latency measurement (the goal must hold on the median and the worst round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Events measured one at a time in each round.
    #[arg(long, default_value_t = 200)]
    events: usize,
    /// Events of the burst to a sink that fails half the time.
    #[arg(long, default_value_t = 1000)]
    burst: usize,
    /// How long the burst may take to be delivered, dead letters sent again included.
    #[arg(long, default_value_t = 300)]
    burst_deadline_secs: u64,
    /// Where to write the Markdown report.
    #[arg(long, default_value = "bench/results/notify.md")]
    out: PathBuf,
}

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    /// Whether the sink fails half of its requests now.
    flaky: bool,
    /// State of the random choice of which requests fail (xorshift).
    dice: u64,
    /// The deliveries accepted, by `X-Wharf-Delivery`.
    accepted: HashSet<String>,
    /// Requests for a delivery already accepted: what deduplication drops.
    repeats: u64,
    /// Requests answered 503.
    refused: u64,
    /// Requests whose signature headers were missing.
    unsigned: u64,
}

impl Seen {
    /// True half of the time, at random.
    fn fails(&mut self) -> bool {
        let mut x = self.dice;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.dice = x;
        x & 1 == 1
    }
}

#[derive(Clone)]
struct Receiver {
    seen: Arc<Mutex<Seen>>,
    arrivals: mpsc::UnboundedSender<(String, Instant)>,
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: String) -> Response {
    let at = Instant::now();
    let delivery = headers
        .get("x-wharf-delivery")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let signed = headers.contains_key("x-wharf-signature-256")
        && headers.contains_key("x-wharf-timestamp")
        && !delivery.is_empty();
    let event = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|body| body["event"].as_str().map(str::to_owned))
        .unwrap_or_default();
    {
        let mut seen = receiver.seen.lock().expect("the receiver's state");
        if !signed {
            seen.unsigned += 1;
        }
        if seen.flaky && seen.fails() {
            seen.refused += 1;
            return (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")]).into_response();
        }
        if !seen.accepted.insert(delivery.clone()) {
            seen.repeats += 1;
        }
    }
    if event == "test" {
        let _ = receiver.arrivals.send((delivery, at));
    }
    StatusCode::NO_CONTENT.into_response()
}

/// One round's latencies, in milliseconds, sorted.
struct Round(Vec<f64>);

impl Round {
    fn percentile(&self, p: f64) -> f64 {
        report::percentile(&self.0, p).unwrap_or(f64::NAN)
    }
}

/// How the burst went.
struct Burst {
    events: usize,
    accepted: usize,
    repeats: u64,
    refused: u64,
    unsigned: u64,
    dead_retried: usize,
    drained_in: Duration,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.rounds > 0 && args.events > 0 && args.burst > 0,
        "--rounds, --events and --burst must be positive"
    );
    let wharf_bin = std::fs::canonicalize(&args.wharf)
        .with_context(|| format!("no wharf binary at {}", args.wharf.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("wharf-bench-notify-")
        .tempdir()?;
    let http = procs::http_client(BURST_CONCURRENCY)?;
    let launch = WharfLaunch::fresh(&wharf_bin, dir.path(), &procs::random_hex(32)?)?;
    let mut wharf = launch.start(&http, "notify", &[]).await?;

    let seed = u64::from_str_radix(&procs::random_hex(8)?, 16)? | 1;
    let seen = Arc::new(Mutex::new(Seen {
        dice: seed,
        ..Seen::default()
    }));
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel();
    let receiver = Receiver {
        seen: seen.clone(),
        arrivals: arrivals_tx,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_url = format!("http://{}/hook", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    wharf
        .admin_post(
            &http,
            "/v1/notifications",
            &json!({"name": "bench", "kind": "webhook", "url": sink_url}),
            reqwest::StatusCode::CREATED,
        )
        .await?;

    let outcome = async {
        let mut rounds = Vec::with_capacity(args.rounds);
        for round in 0..args.rounds {
            eprintln!(
                "==> round {}/{}: {} events, one at a time",
                round + 1,
                args.rounds,
                args.events
            );
            rounds.push(latency_round(&http, &wharf, &mut arrivals, args.events).await?);
        }
        eprintln!(
            "==> {} events to a sink that fails half the time",
            args.burst
        );
        let burst = burst(&http, &wharf, &seen, &args).await?;
        anyhow::Ok((rounds, burst))
    }
    .await;
    server.abort();
    wharf.child.check_running()?;
    let (rounds, burst) = outcome?;
    drop(wharf);
    let text = render(&args, &wharf_bin, &rounds, &burst);
    report::publish(&args.out, &text)
}

/// Sends `events` test events one at a time and measures each until its message arrives.
async fn latency_round(
    http: &reqwest::Client,
    wharf: &Wharf,
    arrivals: &mut mpsc::UnboundedReceiver<(String, Instant)>,
    events: usize,
) -> anyhow::Result<Round> {
    let mut latencies = Vec::with_capacity(events);
    for _ in 0..events {
        let sent = Instant::now();
        send_test(http, wharf).await?;
        let (_, arrived) = tokio::time::timeout(MESSAGE_DEADLINE, arrivals.recv())
            .await
            .with_context(|| format!("no message reached the sink within {MESSAGE_DEADLINE:?}"))?
            .context("the receiver stopped")?;
        latencies.push((arrived - sent).as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(Round(latencies))
}

async fn send_test(http: &reqwest::Client, wharf: &Wharf) -> anyhow::Result<()> {
    wharf
        .admin_post(
            http,
            "/v1/notifications/bench/test",
            &json!({}),
            reqwest::StatusCode::OK,
        )
        .await?;
    Ok(())
}

/// Makes `args.burst` events for a sink that fails half the time, and waits until each one's
/// message was accepted once.
async fn burst(
    http: &reqwest::Client,
    wharf: &Wharf,
    seen: &Mutex<Seen>,
    args: &Args,
) -> anyhow::Result<Burst> {
    let before = {
        let mut seen = seen.lock().expect("the receiver's state");
        seen.flaky = true;
        seen.accepted.len()
    };
    let start = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..BURST_CONCURRENCY {
        let (http, url, token) = (http.clone(), wharf.url.clone(), wharf.token().to_owned());
        let events = (args.burst + BURST_CONCURRENCY - 1 - sender) / BURST_CONCURRENCY;
        senders.spawn(async move {
            for _ in 0..events {
                let response = http
                    .post(format!("{url}/v1/notifications/bench/test"))
                    .bearer_auth(&token)
                    .json(&json!({}))
                    .send()
                    .await
                    .context("POST a test event")?;
                ensure!(
                    response.status() == reqwest::StatusCode::OK,
                    "POST a test event answered {}",
                    response.status()
                );
            }
            anyhow::Ok(())
        });
    }
    while let Some(sent) = senders.join_next().await {
        sent??;
    }
    let deadline = start + Duration::from_secs(args.burst_deadline_secs);
    let mut dead_retried = 0;
    loop {
        let accepted = seen.lock().expect("the receiver's state").accepted.len() - before;
        if accepted >= args.burst {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "only {accepted} of {} messages reached the sink within {}s",
                args.burst,
                args.burst_deadline_secs
            );
        }
        let dead = dead_letters(http, wharf).await?;
        if dead > 0 {
            dead_retried += dead;
            wharf
                .admin_post(
                    http,
                    "/v1/notifications/bench/retry",
                    &json!({}),
                    reqwest::StatusCode::OK,
                )
                .await?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained_in = start.elapsed();
    let seen = seen.lock().expect("the receiver's state");
    Ok(Burst {
        events: args.burst,
        accepted: seen.accepted.len() - before,
        repeats: seen.repeats,
        refused: seen.refused,
        unsigned: seen.unsigned,
        dead_retried,
        drained_in,
    })
}

/// How many of the sink's messages are dead letters now.
async fn dead_letters(http: &reqwest::Client, wharf: &Wharf) -> anyhow::Result<usize> {
    let response = http
        .get(format!(
            "{}/v1/notifications/bench/deliveries?failed=true",
            wharf.url
        ))
        .bearer_auth(wharf.token())
        .send()
        .await
        .context("GET the sink's failed deliveries")?;
    ensure!(
        response.status().is_success(),
        "GET the sink's failed deliveries answered {}",
        response.status()
    );
    let deliveries: Vec<Value> = response.json().await?;
    Ok(deliveries
        .iter()
        .filter(|delivery| delivery["state"] == "dead")
        .count())
}

fn render(args: &Args, wharf_bin: &std::path::Path, rounds: &[Round], burst: &Burst) -> String {
    let mut out = String::new();
    report::header(
        &mut out,
        "Notifications: event to message, and nothing lost",
        wharf_bin,
        &format!(
            "`wharf-bench notify --rounds {} --events {} --burst {}`: a webhook sink in the \
             benchmark's process; Wharf on SQLite in a temporary directory",
            args.rounds, args.events, args.burst
        ),
    );
    let p50: Vec<f64> = rounds.iter().map(|round| round.percentile(50.0)).collect();
    let p99: Vec<f64> = rounds.iter().map(|round| round.percentile(99.0)).collect();
    let (median_p99, worst_p99) = report::median_and_worst(&p99, false);
    let goal_ms = P99_GOAL.as_secs_f64() * 1000.0;
    let _ = writeln!(
        out,
        "\n## Event to message\n\nFrom the request that writes a `test` event to the outbox to \
         the sink receiving its message, {} events one at a time, per round:\n",
        args.events
    );
    let _ = writeln!(out, "| round | p50 | p99 | max |\n|---|---:|---:|---:|");
    for (index, round) in rounds.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            index + 1,
            p50[index],
            p99[index],
            round.0.last().copied().unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "\np99: median {median_p99:.1} ms, worst {worst_p99:.1} ms; goal under {goal_ms:.0} ms on \
         both: {}",
        report::met(median_p99 < goal_ms && worst_p99 < goal_ms)
    );
    let _ = writeln!(
        out,
        "\n## A sink that fails half the time\n\n{} events; the sink answered a random half of \
         all requests `503` with `Retry-After: 1`.\n",
        burst.events
    );
    let _ = writeln!(out, "| measure | value |\n|---|---:|");
    let _ = writeln!(
        out,
        "| messages accepted once each (distinct `X-Wharf-Delivery`) | {} of {} |",
        burst.accepted, burst.events
    );
    let _ = writeln!(out, "| requests refused by the sink | {} |", burst.refused);
    let _ = writeln!(
        out,
        "| repeats of an accepted message (a deduplicating receiver drops them) | {} |",
        burst.repeats
    );
    let _ = writeln!(
        out,
        "| dead letters sent again with `wharf notify retry` | {} |",
        burst.dead_retried
    );
    let _ = writeln!(
        out,
        "| requests without signature headers | {} |",
        burst.unsigned
    );
    let _ = writeln!(
        out,
        "| all delivered in | {:.1} s |",
        burst.drained_in.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "\nNone lost: {}",
        report::met(burst.accepted == burst.events && burst.unsigned == 0)
    );
    out
}

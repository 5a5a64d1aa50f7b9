//! `wharf-bench dashboard`: the dashboard with a full store, and its live log against polling.
//!
//! One `wharf server` on SQLite gets `--services` services and `--builds` builds through the
//! admin API (full commit shas, so no build asks git; a newer build of a service cancels its
//! pending one, and every row stays). Then `--rounds` rounds, each: the pages (signed in through
//! `/login` like a browser, `--requests` sequential `GET /` and as many `GET /services/{name}`
//! of random services), then a log round with the dashboard's server-sent events and one with
//! the anchors' approach (polling `GET /v1/builds/{id}/logs?after=LAST` every 2 s), one after
//! the other. In a log round a build of the service `stream` is claimed by the benchmark acting
//! as an agent, `--viewers` viewers follow its log, and the agent appends `--lines-per-second`
//! lines a second in ten batches a second for `--seconds`, heartbeating, then reports the build
//! completed. Each line carries its number and the time it was sent (microseconds on the
//! benchmark's monotonic clock), so every viewer checks it got every line once and measures each
//! line's delay. The server's resident set and CPU time are read every 500 ms.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::procs::{self, Wharf, WharfLaunch};
use crate::report;

/// The registry the server is told builds push to; nothing listens there, the server only
/// compares it with the image the benchmark's agent reports.
const REGISTRY: &str = "127.0.0.1:5999";
/// The service whose builds the log rounds follow.
const STREAM_SERVICE: &str = "stream";
/// Goal for both pages' p99.
const PAGE_P99_GOAL_MS: f64 = 50.0;
/// Memory counts as flat when the resident set after the streams closed exceeds the one before
/// they opened by at most the larger of these.
const FLAT_SLACK_MIB: f64 = 5.0;
const FLAT_SLACK_SHARE: f64 = 0.10;
/// Between two readings of the server's resident set and CPU time.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// Batches of lines the agent sends per second.
const BATCHES_PER_SECOND: u64 = 10;
/// The anchors' polling interval.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// The most lines `GET /v1/builds/{id}/logs` answers at once (the server's page).
const LOG_PAGE: usize = 2000;
/// How long viewers may take to reach the end once the build is reported completed.
const FINISH_WITHIN: Duration = Duration::from_secs(60);
/// How long after the streams closed the resident set is read for its end figure.
const SETTLE_AFTER: Duration = Duration::from_secs(2);
/// Page requests before the measured ones in each round (not reported).
const WARM_UP_REQUESTS: usize = 10;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The `wharf` binary to start as `BIN server`.
    #[arg(long)]
    wharf: PathBuf,
    /// Rounds; each measures the pages, then SSE, then polling.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Services in the store (besides `stream`, which the log rounds use).
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Builds queued through the API before measuring.
    #[arg(long, default_value_t = 100_000)]
    builds: usize,
    /// Requests in flight while preloading.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Sequential requests per page and round.
    #[arg(long, default_value_t = 500)]
    requests: usize,
    /// Viewers following the log.
    #[arg(long, default_value_t = 100)]
    viewers: usize,
    /// How long the build writes its log, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Log lines the build writes per second.
    #[arg(long, default_value_t = 1000)]
    lines_per_second: u64,
    /// Where to write the Markdown report.
    #[arg(long, default_value = "bench/results/dashboard.md")]
    out: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Approach {
    Sse,
    Polling,
}

impl Approach {
    fn label(self) -> &'static str {
        match self {
            Approach::Sse => "SSE (`/builds/{id}/events`)",
            Approach::Polling => "polling every 2 s",
        }
    }
}

/// How the store was filled.
struct Preload {
    services: Duration,
    builds: Duration,
    builds_in_store: f64,
    pending: f64,
}

/// One round's page latencies, in milliseconds, sorted, and the pages' sizes in bytes.
struct Pages {
    overview: Vec<f64>,
    service: Vec<f64>,
    overview_bytes: usize,
    service_bytes: (usize, usize),
}

/// One log round.
struct Stream {
    approach: Approach,
    build: i64,
    /// How long writing the lines took (the plan is `--seconds`).
    writing: Duration,
    viewers_complete: usize,
    viewers: usize,
    /// Lines a viewer did not get, summed over viewers.
    missed: u64,
    /// Line numbers a viewer got more than once, summed over viewers.
    duplicated: u64,
    /// Per-line delay, sent to received, milliseconds, sorted, all viewers.
    delays: Vec<f64>,
    /// What the viewers said when one failed.
    problems: Vec<String>,
    rss_before: f64,
    rss_peak: f64,
    rss_after: f64,
    /// Server CPU seconds per second from the first line to the last viewer done.
    server_cores: f64,
    /// The same for this benchmark's process (the viewers and the agent).
    bench_cores: f64,
}

impl Stream {
    fn delay(&self, p: f64) -> f64 {
        report::percentile(&self.delays, p).unwrap_or(f64::NAN)
    }

    fn growth(&self) -> f64 {
        self.rss_after - self.rss_before
    }

    fn flat(&self) -> bool {
        self.growth() <= FLAT_SLACK_MIB.max(self.rss_before * FLAT_SLACK_SHARE)
    }

    fn every_line(&self) -> bool {
        self.viewers_complete == self.viewers && self.missed == 0 && self.duplicated == 0
    }
}

struct Round {
    pages: Pages,
    sse: Stream,
    polling: Stream,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.rounds > 0
            && args.services > 0
            && args.requests > 0
            && args.viewers > 0
            && args.seconds > 0
            && args.concurrency > 0,
        "--rounds, --services, --requests, --viewers, --seconds and --concurrency must be positive"
    );
    ensure!(
        args.lines_per_second >= BATCHES_PER_SECOND
            && args.lines_per_second.is_multiple_of(BATCHES_PER_SECOND),
        "--lines-per-second must be a multiple of {BATCHES_PER_SECOND}"
    );
    let wharf_bin = std::fs::canonicalize(&args.wharf)
        .with_context(|| format!("no wharf binary at {}", args.wharf.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("wharf-bench-dashboard-")
        .tempdir()?;
    let http = procs::http_client(args.concurrency)?;
    let launch = WharfLaunch::fresh(&wharf_bin, dir.path(), &procs::random_hex(32)?)?;
    eprintln!("==> starting wharf server (SQLite in a temporary directory)");
    let mut wharf = launch
        .start(&http, "dashboard", &[("WHARF_REGISTRY", REGISTRY)])
        .await?;
    let outcome = measure(&args, &http, &wharf).await;
    if let Err(error) = wharf.child.check_running() {
        eprintln!("{error}");
    }
    let (preload, rounds) = match outcome {
        Ok(found) => found,
        Err(error) => bail!(
            "{error:#}; the end of the server's log:\n{}",
            wharf.child.log_tail()
        ),
    };
    let (log_lines, log_summary) = wharf.child.log_summary(5);
    wharf.child.terminate(Duration::from_secs(10))?;
    let text = render(
        &args,
        &wharf_bin,
        &preload,
        &rounds,
        log_lines,
        &log_summary,
    );
    report::publish(&args.out, &text)
}

async fn measure(
    args: &Args,
    http: &reqwest::Client,
    wharf: &Wharf,
) -> anyhow::Result<(Preload, Vec<Round>)> {
    let preload = preload(args, http, wharf).await?;
    let agent = Agent::new(http, wharf).await?;
    // Page requests go out one at a time and must not follow the sign-in's redirects.
    let browser = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()?;
    // Event streams last as long as the build: no overall timeout.
    let streams = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(args.viewers * 2)
        .build()?;
    let cookie = sign_in(&browser, wharf).await?;
    let mut dice = u64::from_str_radix(&procs::random_hex(8)?, 16)? | 1;
    let mut rounds = Vec::with_capacity(args.rounds);
    for round in 1..=args.rounds {
        eprintln!("==> round {round}/{}: pages", args.rounds);
        let pages = pages(args, &browser, wharf, &cookie, &mut dice).await?;
        eprintln!("==> round {round}/{}: SSE", args.rounds);
        let sse = stream_round(
            args,
            Approach::Sse,
            (round * 2 - 1) as u64,
            &streams,
            wharf,
            &agent,
            &cookie,
        )
        .await?;
        eprintln!("==> round {round}/{}: polling every 2 s", args.rounds);
        let polling = stream_round(
            args,
            Approach::Polling,
            (round * 2) as u64,
            &streams,
            wharf,
            &agent,
            &cookie,
        )
        .await?;
        rounds.push(Round {
            pages,
            sse,
            polling,
        });
    }
    Ok((preload, rounds))
}

/// Creates the services and queues the builds, `--concurrency` requests at a time.
async fn preload(args: &Args, http: &reqwest::Client, wharf: &Wharf) -> anyhow::Result<Preload> {
    eprintln!("==> {} services", args.services);
    let started = Instant::now();
    let mut names: Vec<String> = (0..args.services).map(service_name).collect();
    names.push(STREAM_SERVICE.to_owned());
    let names = Arc::new(names);
    in_parallel(args.concurrency, names.len(), http, wharf, {
        let names = names.clone();
        move |index| {
            let name = &names[index];
            (
                "/v1/services".to_owned(),
                json!({
                    "name": name,
                    "repo": format!("https://git.example.com/acme/{name}"),
                    "branch": "main",
                    "port": 8080,
                }),
            )
        }
    })
    .await?;
    let services = started.elapsed();
    eprintln!("==> {} builds, {} at a time", args.builds, args.concurrency);
    let started = Instant::now();
    let count = args.services;
    in_parallel(args.concurrency, args.builds, http, wharf, move |index| {
        (
            format!("/v1/services/{}/builds", service_name(index % count)),
            json!({"ref": format!("{:040x}", index + 1)}),
        )
    })
    .await?;
    let builds = started.elapsed();
    eprintln!(
        "==> queued in {:.1} s ({:.0}/s)",
        builds.as_secs_f64(),
        args.builds as f64 / builds.as_secs_f64()
    );
    let metrics = wharf.metrics(http).await?;
    let pending = metrics
        .lines()
        .filter(|line| line.starts_with("wharf_builds{") && line.contains("\"pending\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    Ok(Preload {
        services,
        builds,
        builds_in_store: procs::metric_sum(&metrics, "wharf_builds").unwrap_or(f64::NAN),
        pending,
    })
}

fn service_name(index: usize) -> String {
    format!("svc-{:04}", index + 1)
}

/// POSTs `request(i)` for every `i` below `total` with the admin token, `concurrency` at a time;
/// each must answer 201.
async fn in_parallel(
    concurrency: usize,
    total: usize,
    http: &reqwest::Client,
    wharf: &Wharf,
    request: impl Fn(usize) -> (String, Value) + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let request = Arc::new(request);
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let (next, request, http) = (next.clone(), request.clone(), http.clone());
        let (url, token) = (wharf.url.clone(), wharf.token().to_owned());
        workers.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    return anyhow::Ok(());
                }
                let (path, body) = request(index);
                let response = http
                    .post(format!("{url}{path}"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .with_context(|| format!("POST {path}"))?;
                let status = response.status();
                if status != reqwest::StatusCode::CREATED {
                    bail!(
                        "POST {path} answered {status}: {}",
                        response.text().await.unwrap_or_default()
                    );
                }
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(())
}

/// Signs in with the admin token as a browser does; returns the `Cookie` header to send.
async fn sign_in(browser: &reqwest::Client, wharf: &Wharf) -> anyhow::Result<String> {
    let form = browser
        .get(format!("{}/login", wharf.url))
        .send()
        .await
        .context("GET /login")?;
    ensure!(
        form.status() == reqwest::StatusCode::OK,
        "GET /login answered {}",
        form.status()
    );
    let sign_in_cookie = set_cookie(&form, "wharf_sign_in").context("GET /login set no cookie")?;
    let html = form.text().await?;
    let marker = "name=\"csrf_token\" value=\"";
    let csrf = html
        .split_once(marker)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(token, _)| token.to_owned())
        .context("the sign-in form has no csrf_token")?;
    let answer = browser
        .post(format!("{}/login", wharf.url))
        .header(
            reqwest::header::COOKIE,
            format!("wharf_sign_in={sign_in_cookie}"),
        )
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("token", wharf.token()),
            ("next", "/"),
        ])
        .send()
        .await
        .context("POST /login")?;
    ensure!(
        answer.status() == reqwest::StatusCode::SEE_OTHER,
        "POST /login answered {}",
        answer.status()
    );
    let session = set_cookie(&answer, "wharf_session").context("POST /login set no session")?;
    Ok(format!("wharf_session={session}"))
}

/// The value the answer's `Set-Cookie` gives the cookie `name`.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next()?.split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

/// `--requests` sequential `GET /`, then as many `GET /services/{random}`.
async fn pages(
    args: &Args,
    browser: &reqwest::Client,
    wharf: &Wharf,
    cookie: &str,
    dice: &mut u64,
) -> anyhow::Result<Pages> {
    let get = async |path: &str| -> anyhow::Result<(f64, usize)> {
        let started = Instant::now();
        let response = browser
            .get(format!("{}{path}", wharf.url))
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status();
        let body = response.bytes().await?;
        let took = started.elapsed().as_secs_f64() * 1000.0;
        ensure!(
            status == reqwest::StatusCode::OK,
            "GET {path} answered {status}"
        );
        Ok((took, body.len()))
    };
    for _ in 0..WARM_UP_REQUESTS {
        get("/").await?;
        get(&format!(
            "/services/{}",
            service_name(roll(dice) % args.services)
        ))
        .await?;
    }
    let mut overview = Vec::with_capacity(args.requests);
    let mut overview_bytes = 0;
    for _ in 0..args.requests {
        let (took, bytes) = get("/").await?;
        overview.push(took);
        overview_bytes = overview_bytes.max(bytes);
    }
    let mut service = Vec::with_capacity(args.requests);
    let (mut smallest, mut largest) = (usize::MAX, 0);
    for _ in 0..args.requests {
        let name = service_name(roll(dice) % args.services);
        let (took, bytes) = get(&format!("/services/{name}")).await?;
        service.push(took);
        smallest = smallest.min(bytes);
        largest = largest.max(bytes);
    }
    overview.sort_by(f64::total_cmp);
    service.sort_by(f64::total_cmp);
    Ok(Pages {
        overview,
        service,
        overview_bytes,
        service_bytes: (smallest, largest),
    })
}

/// A random number (xorshift).
fn roll(dice: &mut u64) -> usize {
    let mut x = *dice;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *dice = x;
    (x >> 11) as usize
}

/// The benchmark acting as an agent that may build only the service `stream`.
struct Agent {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Agent {
    async fn new(http: &reqwest::Client, wharf: &Wharf) -> anyhow::Result<Agent> {
        let answer = wharf
            .admin_post(
                http,
                "/v1/agents",
                &json!({"name": "bench-agent", "services": [STREAM_SERVICE]}),
                reqwest::StatusCode::CREATED,
            )
            .await?;
        let agent = Agent {
            http: http.clone(),
            url: wharf.url.clone(),
            token: answer["token"]
                .as_str()
                .context("POST /v1/agents answered without a token")?
                .to_owned(),
        };
        agent
            .post(
                "/v1/agent/register",
                &json!({"labels": ["build", "deploy"], "protocol": 2}),
            )
            .await?;
        Ok(agent)
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        procs::post_json(
            &self.http,
            &self.url,
            &self.token,
            path,
            body,
            reqwest::StatusCode::OK,
        )
        .await
    }
}

/// What one viewer saw.
#[derive(Default)]
struct Viewer {
    /// Whether it reached the end (`done`, or a complete page).
    done: bool,
    /// Per line number (1-based, as sent), how often it arrived.
    seen: Vec<u8>,
    /// Distinct server line numbers (`seq`) seen twice.
    duplicated_seq: u64,
    delays: Vec<f64>,
    problem: Option<String>,
}

impl Viewer {
    fn new(lines: usize) -> Viewer {
        Viewer {
            seen: vec![0; lines + 1],
            ..Viewer::default()
        }
    }

    /// A line's text arrived at `at_us` (microseconds since the benchmark's clock base).
    fn line(&mut self, text: &str, at_us: u64) {
        let Some((number, sent_us)) = parse_marker(text) else {
            return;
        };
        if let Some(count) = self.seen.get_mut(number) {
            *count = count.saturating_add(1);
            self.delays
                .push(at_us.saturating_sub(sent_us) as f64 / 1000.0);
        }
    }
}

/// `bench#N@Tus` in a line's text: its number and when it was sent.
fn parse_marker(text: &str) -> Option<(usize, u64)> {
    let rest = text.split_once("bench#")?.1;
    let (number, rest) = rest.split_once('@')?;
    let sent = rest.split_once("us")?.0;
    Some((number.parse().ok()?, sent.parse().ok()?))
}

async fn stream_round(
    args: &Args,
    approach: Approach,
    ordinal: u64,
    client: &reqwest::Client,
    wharf: &Wharf,
    agent: &Agent,
    cookie: &str,
) -> anyhow::Result<Stream> {
    let sha = format!("{:040x}", 0xbe_0000_0000_u64 + ordinal);
    let http = procs::http_client(4)?;
    let queued = wharf
        .admin_post(
            &http,
            &format!("/v1/services/{STREAM_SERVICE}/builds"),
            &json!({"ref": sha}),
            reqwest::StatusCode::CREATED,
        )
        .await?;
    let build = queued["id"].as_i64().context("the queued build's id")?;
    let claim = agent
        .post("/v1/agent/claim", &json!({"wait_ms": 2000}))
        .await?;
    let claimed = claim["job"]["build"]["id"].as_i64();
    ensure!(
        claimed == Some(build),
        "the agent claimed {claimed:?}, not build {build}"
    );
    let total = (args.lines_per_second * args.seconds) as usize;
    let base = Instant::now();
    let (stop_sampling, sampling) = watch::channel(false);
    let sampler = sample(wharf, sampling);
    let work = async {
        let rss_before = rss_mib(wharf.child.pid())?;
        let (stop_viewers, viewers_stop) = watch::channel(false);
        let (ready_tx, mut ready) = tokio::sync::mpsc::channel::<()>(args.viewers);
        let mut viewers = JoinSet::new();
        for index in 0..args.viewers {
            let (client, url, stop, ready) = (
                client.clone(),
                wharf.url.clone(),
                viewers_stop.clone(),
                ready_tx.clone(),
            );
            match approach {
                Approach::Sse => {
                    let cookie = cookie.to_owned();
                    viewers.spawn(async move {
                        sse_viewer(client, url, cookie, build, total, base, ready, stop).await
                    });
                }
                Approach::Polling => {
                    let token = wharf.token().to_owned();
                    let offset = POLL_EVERY.mul_f64(index as f64 / args.viewers as f64);
                    viewers.spawn(async move {
                        let _ = ready.send(()).await;
                        poll_viewer(client, url, token, build, total, base, offset, stop).await
                    });
                }
            }
        }
        drop(ready_tx);
        for _ in 0..args.viewers {
            tokio::time::timeout(Duration::from_secs(30), ready.recv())
                .await
                .context("the viewers did not all connect within 30 s")?;
        }
        let cpu_before = wharf.child.cpu().own;
        let bench_before = procs::CpuTime::of_self().own;
        let started = Instant::now();
        let per_batch = (args.lines_per_second / BATCHES_PER_SECOND) as usize;
        let batches = args.seconds * BATCHES_PER_SECOND;
        let every = Duration::from_secs(1) / BATCHES_PER_SECOND as u32;
        let mut number = 0;
        for batch in 0..batches {
            tokio::time::sleep_until(started + every * batch as u32).await;
            let sent_us = base.elapsed().as_micros() as u64;
            let lines: Vec<Value> = (0..per_batch)
                .map(|_| {
                    number += 1;
                    json!({
                        "stream": "stdout",
                        "text": format!(
                            "bench#{number}@{sent_us}us   Compiling wharf-bench v0.1.0 (step {number} of {total})"
                        ),
                    })
                })
                .collect();
            agent
                .post(
                    &format!("/v1/agent/builds/{build}/logs"),
                    &json!({"lines": lines}),
                )
                .await?;
            if batch % BATCHES_PER_SECOND == 0 {
                agent
                    .post("/v1/agent/heartbeat", &json!({"builds": [build]}))
                    .await?;
            }
        }
        let writing = started.elapsed();
        agent
            .post(
                &format!("/v1/agent/builds/{build}/state"),
                &json!({
                    "state": "completed",
                    "image": format!("{REGISTRY}/default/{STREAM_SERVICE}:{sha}"),
                    "digest": format!("sha256:{}", "ab".repeat(32)),
                }),
            )
            .await?;
        let finish_by = Instant::now() + FINISH_WITHIN;
        let mut seen = Vec::with_capacity(args.viewers);
        loop {
            match tokio::time::timeout_at(finish_by, viewers.join_next()).await {
                Ok(Some(viewer)) => seen.push(viewer.context("a viewer")?),
                Ok(None) => break,
                Err(_) => {
                    // Those still following give up and say what they have.
                    let _ = stop_viewers.send(true);
                    while let Some(viewer) = viewers.join_next().await {
                        seen.push(viewer.context("a viewer")?);
                    }
                    break;
                }
            }
        }
        let wall = started.elapsed().as_secs_f64();
        let server_cores = (wharf.child.cpu().own - cpu_before) / wall;
        let bench_cores = (procs::CpuTime::of_self().own - bench_before) / wall;
        tokio::time::sleep(SETTLE_AFTER).await;
        let rss_after = rss_mib(wharf.child.pid())?;
        let mut stream = Stream {
            approach,
            build,
            writing,
            viewers_complete: 0,
            viewers: args.viewers,
            missed: 0,
            duplicated: 0,
            delays: Vec::with_capacity(args.viewers * total),
            problems: Vec::new(),
            rss_before,
            rss_peak: rss_before,
            rss_after,
            server_cores,
            bench_cores,
        };
        for viewer in seen {
            let missed = viewer.seen[1..].iter().filter(|count| **count == 0).count() as u64;
            let duplicated = viewer.seen[1..].iter().filter(|count| **count > 1).count() as u64
                + viewer.duplicated_seq;
            if viewer.done && missed == 0 && duplicated == 0 {
                stream.viewers_complete += 1;
            }
            stream.missed += missed;
            stream.duplicated += duplicated;
            stream.delays.extend(viewer.delays);
            if let Some(problem) = viewer.problem
                && stream.problems.len() < 3
            {
                stream.problems.push(problem);
            }
        }
        stream.delays.sort_by(f64::total_cmp);
        anyhow::Ok(stream)
    };
    let (stream, readings) = tokio::join!(
        async {
            let stream = work.await;
            let _ = stop_sampling.send(true);
            stream
        },
        sampler
    );
    let mut stream = stream?;
    stream.rss_peak = readings?
        .iter()
        .map(|(_, rss, _)| *rss)
        .fold(stream.rss_peak.max(stream.rss_after), f64::max);
    eprintln!(
        "    {} of {} viewers got every line; delay p50 {:.1} ms p99 {:.1} ms; server {:.2} cores; RSS {:.1} → {:.1} (peak {:.1}) MiB",
        stream.viewers_complete,
        stream.viewers,
        stream.delay(50.0),
        stream.delay(99.0),
        stream.server_cores,
        stream.rss_before,
        stream.rss_after,
        stream.rss_peak
    );
    Ok(stream)
}

/// Reads the server's resident set (MiB) and CPU seconds every [`SAMPLE_EVERY`] until `stop`.
async fn sample(
    wharf: &Wharf,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<(Instant, f64, f64)>> {
    let mut readings = Vec::new();
    loop {
        readings.push((
            Instant::now(),
            rss_mib(wharf.child.pid())?,
            wharf.child.cpu().own,
        ));
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return Ok(readings),
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
}

/// A process's resident set, in MiB.
fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("no VmRSS for process {pid}"))?;
    Ok(kib / 1024.0)
}

/// Follows `/builds/{id}/events?after=0` with the session's cookie until `done` or `stop`.
#[allow(clippy::too_many_arguments)]
async fn sse_viewer(
    client: reqwest::Client,
    url: String,
    cookie: String,
    build: i64,
    lines: usize,
    base: Instant,
    ready: tokio::sync::mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> Viewer {
    let mut viewer = Viewer::new(lines);
    let response = client
        .get(format!("{url}/builds/{build}/events?after=0"))
        .header(reqwest::header::COOKIE, cookie)
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await;
    let _ = ready.send(()).await;
    let mut response = match response {
        Ok(response) if response.status() == reqwest::StatusCode::OK => response,
        Ok(response) => {
            viewer.problem = Some(format!("the stream answered {}", response.status()));
            return viewer;
        }
        Err(error) => {
            viewer.problem = Some(format!("the stream failed: {error}"));
            return viewer;
        }
    };
    let mut parser = SseParser::default();
    let mut last_seq = 0;
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk,
            _ = stop.wait_for(|stop| *stop) => {
                viewer.problem = Some("the stream had not ended a minute after the build".to_owned());
                return viewer;
            }
        };
        let at_us = base.elapsed().as_micros() as u64;
        let chunk = match chunk {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                if !viewer.done {
                    viewer.problem = Some("the stream ended before `done`".to_owned());
                }
                return viewer;
            }
            Err(error) => {
                viewer.problem = Some(format!("the stream broke: {error}"));
                return viewer;
            }
        };
        for event in parser.feed(&chunk) {
            match event.kind.as_str() {
                "line" => {
                    if let Some(seq) = event.id {
                        if seq <= last_seq {
                            viewer.duplicated_seq += 1;
                        }
                        last_seq = last_seq.max(seq);
                    }
                    viewer.line(&event.data, at_us);
                }
                "done" => {
                    viewer.done = true;
                    return viewer;
                }
                _ => {}
            }
        }
    }
}

/// One server-sent event.
struct SseEvent {
    kind: String,
    id: Option<i64>,
    data: String,
}

/// Splits a byte stream into server-sent events.
#[derive(Default)]
struct SseParser {
    buffer: Vec<u8>,
    kind: String,
    id: Option<i64>,
    data: String,
    started: bool,
}

impl SseParser {
    fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut consumed = 0;
        while let Some(end) = self.buffer[consumed..].iter().position(|b| *b == b'\n') {
            let line = &self.buffer[consumed..consumed + end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = String::from_utf8_lossy(line).into_owned();
            consumed += end + 1;
            if line.is_empty() {
                if self.started {
                    events.push(SseEvent {
                        kind: std::mem::take(&mut self.kind),
                        id: self.id.take(),
                        data: std::mem::take(&mut self.data),
                    });
                    self.started = false;
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            self.started = true;
            match field {
                "event" => self.kind = value.to_owned(),
                "id" => self.id = value.parse().ok(),
                "data" => {
                    if !self.data.is_empty() {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                }
                _ => {}
            }
        }
        self.buffer.drain(..consumed);
        events
    }
}

/// Polls `GET /v1/builds/{id}/logs?after=LAST` every [`POLL_EVERY`] (starting `offset` in),
/// reading every page there is at each turn, until the log is complete or `stop`.
#[allow(clippy::too_many_arguments)]
async fn poll_viewer(
    client: reqwest::Client,
    url: String,
    token: String,
    build: i64,
    lines: usize,
    base: Instant,
    offset: Duration,
    stop: watch::Receiver<bool>,
) -> Viewer {
    let mut viewer = Viewer::new(lines);
    let start = Instant::now() + offset;
    let mut after = 0;
    for turn in 0u32.. {
        tokio::time::sleep_until(start + POLL_EVERY * turn).await;
        if *stop.borrow() {
            viewer.problem = Some("the log was not complete a minute after the build".to_owned());
            return viewer;
        }
        loop {
            let page = async {
                let response = client
                    .get(format!("{url}/v1/builds/{build}/logs?after={after}"))
                    .bearer_auth(&token)
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await?;
                let status = response.status();
                ensure!(status.is_success(), "the log answered {status}");
                let page: Value = response.json().await?;
                anyhow::Ok(page)
            }
            .await;
            let at_us = base.elapsed().as_micros() as u64;
            let page = match page {
                Ok(page) => page,
                Err(error) => {
                    viewer.problem = Some(format!("{error:#}"));
                    return viewer;
                }
            };
            let found = page["lines"].as_array().map_or(&[][..], Vec::as_slice);
            for line in found {
                let seq = line["seq"].as_i64().unwrap_or(0);
                if seq <= after {
                    viewer.duplicated_seq += 1;
                }
                after = after.max(seq);
                viewer.line(line["text"].as_str().unwrap_or_default(), at_us);
            }
            if page["complete"].as_bool() == Some(true) {
                viewer.done = true;
                return viewer;
            }
            if found.len() < LOG_PAGE {
                break;
            }
        }
    }
    viewer
}

/// What a row of the SSE-beside-polling table reads from a log round.
type Pick = fn(&Stream) -> f64;

#[allow(clippy::too_many_lines)]
fn render(
    args: &Args,
    wharf_bin: &Path,
    preload: &Preload,
    rounds: &[Round],
    log_lines: usize,
    log_summary: &[(usize, String)],
) -> String {
    let mut out = String::new();
    report::header(
        &mut out,
        "Dashboard: pages with a full store, and a live log against polling",
        wharf_bin,
        &format!(
            "`wharf-bench dashboard --rounds {} --services {} --builds {} --requests {} \
             --viewers {} --seconds {} --lines-per-second {}`: Wharf on SQLite in a temporary \
             directory, everything on 127.0.0.1; the benchmark is the browser, the viewers and \
             the agent",
            args.rounds,
            args.services,
            args.builds,
            args.requests,
            args.viewers,
            args.seconds,
            args.lines_per_second
        ),
    );
    let _ = writeln!(
        out,
        "\n## The store\n\n{} services (and `{STREAM_SERVICE}`, whose builds the log rounds \
         follow) created through `POST /v1/services` in {:.1} s; {} builds queued through `POST \
         /v1/services/{{name}}/builds` with a full commit sha, {} requests in flight, in {:.1} s \
         ({:.0} builds/s). A newer build of a service cancels its pending one, so {:.0} of the \
         {:.0} builds in the store (`wharf_builds`) are pending when the rounds start, one per \
         service.",
        args.services,
        preload.services.as_secs_f64(),
        args.builds,
        args.concurrency,
        preload.builds.as_secs_f64(),
        args.builds as f64 / preload.builds.as_secs_f64(),
        preload.pending,
        preload.builds_in_store
    );

    let _ = writeln!(
        out,
        "\n## Pages, per round\n\nSigned in through `GET /login` and `POST /login` with the admin \
         token; {} sequential requests per page and round with the session's cookie, after {} \
         not counted; time from sending to the end of the body.\n",
        args.requests, WARM_UP_REQUESTS
    );
    let _ = writeln!(
        out,
        "| round | `/` p50 | `/` p99 | `/` max | `/services/{{name}}` p50 | p99 | max |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for (index, round) in rounds.iter().enumerate() {
        let pages = &round.pages;
        let at = |values: &[f64], p| report::ms(report::percentile(values, p));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            index + 1,
            at(&pages.overview, 50.0),
            at(&pages.overview, 99.0),
            report::ms(pages.overview.last().copied()),
            at(&pages.service, 50.0),
            at(&pages.service, 99.0),
            report::ms(pages.service.last().copied()),
        );
    }
    if let Some(first) = rounds.first() {
        let _ = writeln!(
            out,
            "\nPage sizes: `/` {:.0} KiB; a service's page {:.1} to {:.1} KiB.",
            first.pages.overview_bytes as f64 / 1024.0,
            first.pages.service_bytes.0 as f64 / 1024.0,
            first.pages.service_bytes.1 as f64 / 1024.0
        );
    }

    let lines = args.lines_per_second * args.seconds;
    let _ = writeln!(
        out,
        "\n## Log rounds\n\nA build of `{STREAM_SERVICE}` claimed by the benchmark as an agent; \
         {} viewers follow its log from line 0 while the agent appends {} lines a second in \
         {BATCHES_PER_SECOND} batches a second for {} s ({lines} lines), heartbeating, then \
         reports the build completed. SSE: each viewer holds `GET /builds/{{id}}/events?after=0` \
         with the session's cookie and must end at `event: done`. Polling (the anchors' way): \
         each viewer sends `GET /v1/builds/{{id}}/logs?after=LAST` with the admin token every 2 \
         s (the viewers' turns spread over the 2 s), reading every page there is, until a page \
         says `complete`. Each line's text carries its number and when its batch was sent; \
         *delay* is from that to the viewer receiving the line (the chunk or page holding it), on \
         the benchmark's clock. *Every line* means the viewer reached the end and got each of the \
         {lines} lines exactly once. Server CPU is `utime + stime` of the server from the first \
         batch to the last viewer done, divided by that time; the benchmark's own (viewers and \
         agent, same machine) beside it. RSS (`VmRSS`) before the viewers connect, the largest \
         reading (every 500 ms), and {} s after the streams closed.\n",
        args.viewers,
        args.lines_per_second,
        args.seconds,
        SETTLE_AFTER.as_secs()
    );
    let _ = writeln!(
        out,
        "| round | approach | viewers with every line | lines missed | lines twice | delay p50 | delay p99 | delay max | server CPU | bench CPU | RSS before | peak | after | writing took |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (index, round) in rounds.iter().enumerate() {
        for stream in [&round.sse, &round.polling] {
            let _ = writeln!(
                out,
                "| {} | {} (build #{}) | {} of {} | {} | {} | {} | {} | {} | {:.2} cores | {:.2} cores | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} s |",
                index + 1,
                stream.approach.label(),
                stream.build,
                stream.viewers_complete,
                stream.viewers,
                stream.missed,
                stream.duplicated,
                report::ms(Some(stream.delay(50.0))),
                report::ms(Some(stream.delay(99.0))),
                report::ms(stream.delays.last().copied()),
                stream.server_cores,
                stream.bench_cores,
                stream.rss_before,
                stream.rss_peak,
                stream.rss_after,
                stream.writing.as_secs_f64(),
            );
        }
    }
    for round in rounds {
        for stream in [&round.sse, &round.polling] {
            for problem in &stream.problems {
                let _ = writeln!(
                    out,
                    "\n- {} of build #{}: {problem}",
                    stream.approach.label(),
                    stream.build
                );
            }
        }
    }

    let column = |pick: &dyn Fn(&Round) -> f64, higher_is_better: bool| {
        let values: Vec<f64> = rounds.iter().map(pick).collect();
        report::median_and_worst(&values, higher_is_better)
    };
    let p99 = |values: &[f64]| report::percentile(values, 99.0).unwrap_or(f64::NAN);
    let (overview_median, overview_worst) = column(&|round| p99(&round.pages.overview), false);
    let (service_median, service_worst) = column(&|round| p99(&round.pages.service), false);
    let (complete_median, complete_worst) =
        column(&|round| round.sse.viewers_complete as f64, true);
    let (missed_median, missed_worst) = column(&|round| round.sse.missed as f64, false);
    let (growth_median, growth_worst) = column(&|round| round.sse.growth(), false);
    let every_line = rounds.iter().all(|round| round.sse.every_line());
    let flat = rounds.iter().all(|round| round.sse.flat());
    let _ = writeln!(
        out,
        "\n## Against the goals\n\nA goal is met when the median and the worst round meet it. \
         Memory counts as flat when the resident set {} s after the streams closed is at most \
         the larger of {FLAT_SLACK_MIB:.0} MiB and {:.0}% above the one before the viewers \
         connected.\n",
        SETTLE_AFTER.as_secs(),
        FLAT_SLACK_SHARE * 100.0
    );
    let _ = writeln!(
        out,
        "| measure | median | worst | goal | |\n|---|---:|---:|---:|---|"
    );
    let _ = writeln!(
        out,
        "| `/` p99, {} services, {} builds | {} | {} | under {PAGE_P99_GOAL_MS:.0} ms | {} |",
        args.services,
        args.builds,
        report::ms(Some(overview_median)),
        report::ms(Some(overview_worst)),
        report::met(overview_median < PAGE_P99_GOAL_MS && overview_worst < PAGE_P99_GOAL_MS)
    );
    let _ = writeln!(
        out,
        "| `/services/{{name}}` p99 | {} | {} | under {PAGE_P99_GOAL_MS:.0} ms | {} |",
        report::ms(Some(service_median)),
        report::ms(Some(service_worst)),
        report::met(service_median < PAGE_P99_GOAL_MS && service_worst < PAGE_P99_GOAL_MS)
    );
    let _ = writeln!(
        out,
        "| SSE viewers with every line | {complete_median:.0} of {} | {complete_worst:.0} of {} | all | {} |",
        args.viewers,
        args.viewers,
        report::met(every_line)
    );
    let _ = writeln!(
        out,
        "| SSE lines missed (all viewers) | {missed_median:.0} | {missed_worst:.0} | 0 | {} |",
        report::met(every_line)
    );
    let _ = writeln!(
        out,
        "| server RSS after the streams − before | {growth_median:+.1} MiB | {growth_worst:+.1} MiB | flat (rule above) | {} |",
        report::met(flat)
    );

    let _ = writeln!(
        out,
        "\n## SSE beside polling every 2 s\n\n| measure | SSE median | SSE worst | polling median | polling worst |\n|---|---:|---:|---:|---:|"
    );
    let side = |pick: Pick, higher_is_better: bool| {
        let sse: Vec<f64> = rounds.iter().map(|round| pick(&round.sse)).collect();
        let polling: Vec<f64> = rounds.iter().map(|round| pick(&round.polling)).collect();
        (
            report::median_and_worst(&sse, higher_is_better),
            report::median_and_worst(&polling, higher_is_better),
        )
    };
    let rows: [(&str, Pick, bool, bool); 7] = [
        ("line delay p50", |s: &Stream| s.delay(50.0), false, true),
        ("line delay p99", |s: &Stream| s.delay(99.0), false, true),
        (
            "viewers with every line",
            |s: &Stream| s.viewers_complete as f64,
            true,
            false,
        ),
        (
            "server CPU (cores)",
            |s: &Stream| s.server_cores,
            false,
            false,
        ),
        (
            "bench CPU (cores)",
            |s: &Stream| s.bench_cores,
            false,
            false,
        ),
        (
            "server RSS peak (MiB)",
            |s: &Stream| s.rss_peak,
            false,
            false,
        ),
        (
            "server RSS after − before (MiB)",
            |s: &Stream| s.growth(),
            false,
            false,
        ),
    ];
    for (what, pick, higher_is_better, is_ms) in rows {
        let ((sse_median, sse_worst), (poll_median, poll_worst)) = side(pick, higher_is_better);
        let show = |value: f64| {
            if is_ms {
                report::ms(Some(value))
            } else {
                format!("{value:.2}")
            }
        };
        let _ = writeln!(
            out,
            "| {what} | {} | {} | {} | {} |",
            show(sse_median),
            show(sse_worst),
            show(poll_median),
            show(poll_worst)
        );
    }
    let _ = writeln!(
        out,
        "\n## The server's log\n\n{log_lines} lines (`WHARF_LOG=warn`: warnings and errors only)."
    );
    for (count, line) in log_summary {
        let _ = writeln!(out, "- {count}× `{line}`");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_across_chunks() {
        let mut parser = SseParser::default();
        let first = parser.feed(b": keep-alive\n\nevent: line\nid: 7\ndata: <span>bench#3@120us");
        assert!(first.is_empty());
        let events = parser.feed(b" x</span>\ndata: \n\nevent: done\ndata: {}\n\n");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].kind, "line");
        assert_eq!(events[0].id, Some(7));
        assert_eq!(parse_marker(&events[0].data), Some((3, 120)));
        assert_eq!(events[1].kind, "done");
    }

    #[test]
    fn counts_each_line_once() {
        let mut viewer = Viewer::new(2);
        viewer.line("bench#1@1000us a", 3000);
        viewer.line("bench#2@1000us b", 1500);
        viewer.line("bench#2@1000us b", 1600);
        viewer.line("no marker", 1600);
        assert_eq!(viewer.seen, vec![0, 1, 2]);
        assert_eq!(viewer.delays, vec![2.0, 0.5, 0.6]);
    }
}

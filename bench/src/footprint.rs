//! `wharf-bench footprint`: how much memory Wharf holds: the server idle with many services,
//! the server under a steady intake, and an idle agent.
//!
//! Each round starts a fresh `wharf server` on SQLite, creates `--services` services through the
//! API (one of them tracks the pushes), lets it settle and reads its resident set (`VmRSS` in
//! `/proc/PID/status`) every 100 ms for a few seconds: the idle figure is the largest reading.
//! Then it sends signed pushes at `--rate` per second (open loop) for `--seconds`, reading the
//! resident set throughout: the loaded figure is the largest reading, and the report shows the
//! first and the last second's too, so growth shows. Last, a `wharf agent` (labels `build`, so
//! it starts no edge) registers with the server and waits for work; its idle figure is the
//! largest reading once it has long-polled for a while. Rounds are separate runs; the goals
//! must hold on the median and the worst round.

use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::load::{Target, open_loop};
use crate::payload::{Generator, SignedRequest, start_tracking_server};
use crate::procs::{self, Child, Wharf, WharfLaunch};
use crate::report;

/// The goals, in MiB: the server idle, the server loaded, the agent idle.
const SERVER_IDLE_GOAL: f64 = 40.0;
const SERVER_LOADED_GOAL: f64 = 80.0;
const AGENT_IDLE_GOAL: f64 = 20.0;
/// How long a process is left alone before its idle figure is read, and for how long it is read.
const SETTLE: Duration = Duration::from_secs(3);
const IDLE_WINDOW: Duration = Duration::from_secs(3);
/// Between two readings of a resident set.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The `wharf` binary to start as `BIN server` and `BIN agent`.
    #[arg(long)]
    wharf: PathBuf,
    /// Rounds, each on a fresh server.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Services in the store.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Pushes per second while loaded.
    #[arg(long, default_value_t = 450.0)]
    rate: f64,
    /// How long the load lasts, in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Where to write the Markdown report.
    #[arg(long, default_value = "bench/results/footprint.md")]
    out: PathBuf,
}

/// One round's readings, in MiB.
struct Round {
    server_idle: f64,
    server_loaded: f64,
    /// The largest reading in the load's first and last second.
    loaded_first_second: f64,
    loaded_last_second: f64,
    agent_idle: f64,
    /// Pushes answered 2xx, of those sent.
    accepted: u64,
    sent: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.rounds > 0, "--rounds must be positive");
    ensure!(args.services > 0, "--services must be positive");
    let wharf_bin = std::fs::canonicalize(&args.wharf)
        .with_context(|| format!("no wharf binary at {}", args.wharf.display()))?;
    let mut rounds = Vec::with_capacity(args.rounds);
    for round in 1..=args.rounds {
        eprintln!("==> round {round}/{}", args.rounds);
        rounds.push(one_round(&args, &wharf_bin).await?);
    }
    report::publish(&args.out, &render(&args, &wharf_bin, &rounds))
}

async fn one_round(args: &Args, wharf_bin: &Path) -> anyhow::Result<Round> {
    let dir = tempfile::Builder::new()
        .prefix("wharf-bench-footprint-")
        .tempdir()?;
    let secret = procs::random_hex(32)?;
    let generator = Generator::new(&secret, &procs::random_hex(4)?)?;
    let total = (args.rate * args.seconds as f64).round() as usize;
    let pool = generator.pool(total)?;
    let http = procs::http_client(64)?;
    let launch = WharfLaunch::fresh(wharf_bin, dir.path(), &secret)?;
    let mut wharf = start_tracking_server(&launch, &http, "footprint", &[]).await?;
    let outcome = measure(args, &http, &wharf, wharf_bin, pool, dir.path()).await;
    wharf.child.terminate(Duration::from_secs(10))?;
    outcome
}

async fn measure(
    args: &Args,
    http: &reqwest::Client,
    wharf: &Wharf,
    wharf_bin: &Path,
    pool: &'static [SignedRequest],
    dir: &Path,
) -> anyhow::Result<Round> {
    eprintln!("==> {} services", args.services);
    // One service already tracks the pushes.
    for index in 1..args.services {
        wharf
            .admin_post(
                http,
                "/v1/services",
                &json!({
                    "name": format!("svc-{index}"),
                    "repo": format!("https://git.example.com/team/svc-{index}"),
                    "branch": "main",
                    "port": 8080,
                    "domain": format!("svc-{index}.example.com"),
                }),
                reqwest::StatusCode::CREATED,
            )
            .await?;
    }
    let server_pid = wharf.child.pid();
    tokio::time::sleep(SETTLE).await;
    let server_idle = largest_rss(server_pid, IDLE_WINDOW).await?;

    eprintln!("==> {} pushes/s for {} s", args.rate, args.seconds);
    let target = Target::new(http, wharf.webhook_url(), pool, false);
    let (stop, stopped) = watch::channel(false);
    let sampler = tokio::spawn(sample_rss(server_pid, stopped));
    let started = Instant::now();
    let phase = open_loop(&target, args.rate, Duration::from_secs(args.seconds)).await;
    let ended = Instant::now();
    let _ = stop.send(true);
    let readings = sampler.await.context("the sampler")??;
    let largest_between = |from: Instant, to: Instant| {
        readings
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .map(|(_, mib)| *mib)
            .fold(0.0, f64::max)
    };
    let second = Duration::from_secs(1);
    let server_loaded = largest_between(started, ended);
    let loaded_first_second = largest_between(started, started + second);
    let loaded_last_second = largest_between(ended - second, ended);
    let sent = phase.ok + phase.errors();

    eprintln!("==> an idle agent");
    let token = wharf.add_agent(http, "bench-agent").await?;
    let mut command = Command::new(wharf_bin);
    command
        .arg("agent")
        .env_remove("WHARF_CONFIG")
        .env_remove("WHARF_AGENT_TOKEN_FILE")
        .env("WHARF_SERVER", &wharf.url)
        .env("WHARF_AGENT_TOKEN", &token)
        .env("WHARF_LABELS", "build")
        .env("WHARF_WORK_DIR", dir.join("agent-work"))
        .env("WHARF_LOG", "warn");
    let mut agent = Child::spawn("wharf agent", command, &dir.join("agent.log"))?;
    let waiting = procs::poll(Duration::from_secs(30), SAMPLE_EVERY, async || {
        agent.check_running()?;
        let metrics = wharf.metrics(http).await?;
        Ok(
            match procs::metric_sum(&metrics, "wharf_agent_claims_waiting") {
                Some(waiting) if waiting >= 1.0 => ControlFlow::Break(()),
                _ => ControlFlow::Continue("the agent long-polling for work".to_owned()),
            },
        )
    })
    .await;
    if let Err(error) = waiting {
        bail!("{error}; the agent's log:\n{}", agent.log_tail());
    }
    tokio::time::sleep(SETTLE).await;
    let agent_idle = largest_rss(agent.pid(), IDLE_WINDOW).await?;
    agent.terminate(Duration::from_secs(10))?;

    Ok(Round {
        server_idle,
        server_loaded,
        loaded_first_second,
        loaded_last_second,
        agent_idle,
        accepted: phase.ok,
        sent,
    })
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

/// The largest of a process's resident sets read every [`SAMPLE_EVERY`] for `window`.
async fn largest_rss(pid: u32, window: Duration) -> anyhow::Result<f64> {
    let until = Instant::now() + window;
    let mut largest: f64 = 0.0;
    while Instant::now() < until {
        largest = largest.max(rss_mib(pid)?);
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    Ok(largest)
}

/// A process's resident sets, read every [`SAMPLE_EVERY`] until `stop` turns true.
async fn sample_rss(
    pid: u32,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<(Instant, f64)>> {
    let mut readings = Vec::new();
    loop {
        readings.push((Instant::now(), rss_mib(pid)?));
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return Ok(readings),
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
}

fn render(args: &Args, wharf_bin: &Path, rounds: &[Round]) -> String {
    let mut out = String::new();
    report::header(
        &mut out,
        "Footprint: resident memory of the server and an agent",
        wharf_bin,
        &format!(
            "`wharf-bench footprint --rounds {} --services {} --rate {} --seconds {}`: Wharf on \
             SQLite in a temporary directory; resident set (`VmRSS`) read every 100 ms, the \
             largest reading counted",
            args.rounds, args.services, args.rate, args.seconds
        ),
    );
    let _ = writeln!(
        out,
        "\n## Per round (MiB)\n\n| round | server idle, {} services | server at {} pushes/s: largest | first second | last second | pushes accepted | agent idle |\n|---|---:|---:|---:|---:|---:|---:|",
        args.services, args.rate
    );
    for (index, round) in rounds.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {} of {} | {:.1} |",
            index + 1,
            round.server_idle,
            round.server_loaded,
            round.loaded_first_second,
            round.loaded_last_second,
            round.accepted,
            round.sent,
            round.agent_idle
        );
    }
    let goals = [
        (
            "server idle",
            SERVER_IDLE_GOAL,
            rounds
                .iter()
                .map(|round| round.server_idle)
                .collect::<Vec<_>>(),
        ),
        (
            "server loaded",
            SERVER_LOADED_GOAL,
            rounds.iter().map(|round| round.server_loaded).collect(),
        ),
        (
            "agent idle",
            AGENT_IDLE_GOAL,
            rounds.iter().map(|round| round.agent_idle).collect(),
        ),
    ];
    let _ = writeln!(
        out,
        "\n## Against the goals\n\n| measure | median | worst | goal | |\n|---|---:|---:|---:|---|"
    );
    for (what, goal, values) in goals {
        let (median, worst) = report::median_and_worst(&values, false);
        let _ = writeln!(
            out,
            "| {what} | {median:.1} MiB | {worst:.1} MiB | under {goal:.0} MiB | {} |",
            report::met(median < goal && worst < goal)
        );
    }
    out
}

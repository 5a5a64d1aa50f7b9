//! `deploy`: what users of a deployed service see while Wharf deploys it.
//!
//! Everything is real and on 127.0.0.1: the `wharf server` and `wharf agent` binaries (the agent
//! builds, deploys, and runs its own Caddy as the edge), Debian's `docker-registry`, Podman, and
//! the GitHub stand-in serving a repository over git's smart HTTP. Requests go through the
//! edge with a `Host` header at a fixed rate (an open loop: request i is due at t0 + i/rate and
//! sent in its own task, so a stalled edge cannot slow the sender down).
//!
//! 1. Failed requests while the service swaps between two versions, deployed (a) by Wharf
//!    (blue-green, `POST /v1/services/NAME/deploy`) and (b) by the stop-then-start script of a
//!    plain deploy hook (`bench/stop-start-deploy.sh`), behind the same Caddy route.
//! 2. An unhealthy version, blue-green and recreate: from Wharf's `rolled_back` verdict to the
//!    last request the old version did not serve.
//! 3. Push received to the new version answering through the edge, against the raw shell
//!    pipeline (`bench/push-pipeline.sh`: fetch, build, push, pull, run, probe).
//! 4. A pull request opened to its preview answering at its own host name, against push to
//!    live of the same repository (interleaved with 3); and closed to nothing of the preview
//!    left on the host or in the registry.
//!
//! `scene` starts everything and cleans the host up after; `swaps`, `rollback`,
//! `push_to_live` and `previews` measure the four parts; `render` writes the report and the raw samples.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::ensure;

use crate::procs::Child;
use crate::report;

mod previews;
mod push_to_live;
mod render;
mod rollback;
mod scene;
mod swaps;

use previews::PreviewRun;
use push_to_live::PushRun;
use rollback::Rollback;
use scene::{Bench, setup};
use swaps::SwapRun;

#[derive(clap::Args)]
pub struct Args {
    /// The `wharf` binary to measure.
    #[arg(long)]
    wharf: PathBuf,
    /// Requests per second sent through the edge while deploys run.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Version swaps under load, for each way of deploying.
    #[arg(long, default_value_t = 5)]
    swaps: usize,
    /// Timed push-to-live runs of each kind (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where the Markdown report goes.
    #[arg(long, default_value = "bench/results/deploy.md")]
    out: PathBuf,
    /// Also write every request (due, answered, outcome) as CSV, when each deploy started,
    /// and the logs of the server, the agent and Caddy, to this directory.
    #[arg(long)]
    samples: Option<PathBuf>,
}

const APP_ID: u64 = 9002;
const INSTALLATION: u64 = 78;
/// Seconds a stopping container gets between SIGTERM and SIGKILL, for Wharf and the script.
const STOP_GRACE_S: u64 = 1;
/// How long Wharf's old version keeps serving in-flight requests after traffic moved.
const DRAIN_MS: u64 = 1000;
/// Health probes, for Wharf and the scripts alike: every 100 ms, five failures in a row.
const HEALTH_INTERVAL_MS: u64 = 100;
const HEALTH_RETRIES: u32 = 5;
/// Any wait for Wharf or a container.
const DEADLINE: Duration = Duration::from_secs(120);

const STOP_START_SCRIPT: &str = include_str!("../../stop-start-deploy.sh");
const PUSH_PIPELINE_SCRIPT: &str = include_str!("../../push-pipeline.sh");

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.rate >= 1.0, "--rate must be at least 1");
    ensure!(
        args.swaps >= 1 && args.runs >= 1,
        "--swaps and --runs must be at least 1"
    );
    let (bench, cleanup) = setup(&args).await?;
    let outcome = measure(&args, &bench).await;
    if outcome.is_err() {
        eprintln!(
            "the agent's log ends:\n{}",
            cleanup
                .agent
                .as_ref()
                .map(Child::log_tail)
                .unwrap_or_default()
        );
    }
    drop(cleanup);
    if let Some(dir) = &args.samples {
        render::write_samples(dir, &bench, outcome.as_ref().ok()).await?;
    }
    let measured = outcome?;
    let text = render::render(&args, &bench, &measured);
    report::publish(&args.out, &text)
}

/// What one run measured.
struct Measured {
    wharf: SwapRun,
    script: SwapRun,
    /// Blue-green, then recreate.
    rollbacks: [Rollback; 2],
    wharf_runs: Vec<PushRun>,
    pipeline_runs: Vec<f64>,
    preview_runs: Vec<PreviewRun>,
}

async fn measure(args: &Args, bench: &Bench) -> anyhow::Result<Measured> {
    eprintln!("==> images A, B and an unhealthy C, pushed to the registry");
    let images = [
        ("A".to_owned(), bench.push_site_image("A", true).await?),
        ("B".to_owned(), bench.push_site_image("B", true).await?),
    ];
    let sick = bench.push_site_image("C", false).await?;

    eprintln!("==> (a) Wharf blue-green under load");
    let wharf = bench.wharf_swaps(&images, args.swaps, args.rate).await?;
    eprintln!("==> unhealthy version, blue-green");
    let blue_green = bench
        .unhealthy("site", "site.test", &sick, args.rate)
        .await?;
    eprintln!("==> unhealthy version, recreate");
    bench
        .deploy_live("classic", "classic.test", &images[0].1, &images[0].0)
        .await?;
    let recreate = bench
        .unhealthy("classic", "classic.test", &sick, args.rate)
        .await?;
    eprintln!("==> (b) stop-then-start script under load");
    let script = bench.script_swaps(&images, args.swaps, args.rate).await?;

    eprintln!("==> push to live: one untimed run of each, then interleaved runs");
    bench.wharf_push_to_live("wharf warm-up").await?;
    bench.script_push_to_live("pipeline warm-up", 0).await?;
    bench.wharf_preview(1, "preview warm-up").await?;
    let mut wharf_runs = Vec::new();
    let mut pipeline_runs = Vec::new();
    let mut preview_runs = Vec::new();
    for run in 0..args.runs {
        eprintln!(
            "==> push to live and preview: run {} of {}",
            run + 1,
            args.runs
        );
        wharf_runs.push(bench.wharf_push_to_live(&format!("wharf {run}")).await?);
        pipeline_runs.push(
            bench
                .script_push_to_live(&format!("pipeline {run}"), run + 1)
                .await?,
        );
        preview_runs.push(
            bench
                .wharf_preview(run as u64 + 2, &format!("preview {run}"))
                .await?,
        );
    }
    Ok(Measured {
        wharf,
        script,
        rollbacks: [blue_green, recreate],
        wharf_runs,
        pipeline_runs,
        preview_runs,
    })
}

//! `build`: time from "build claimed" to "image pushed" for a small repository, Wharf against
//! the same steps run as a plain script (git fetch of the commit, podman build, podman push),
//! and a second build of the unchanged service against its first (the layer cache).
//!
//! The repository is served by the GitHub stand-in (real `git http-backend` behind token auth),
//! images go to a real registry (Debian's `docker-registry`), Wharf runs as its real binaries
//! (`wharf server` and `wharf agent`), and the script uses an installation token as Wharf does.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use tokio::process::Command;

use crate::github_scene::GithubScene;
use crate::procs::{self, Child, poll, time_from_rfc3339};
use crate::report::{self, median};

#[derive(clap::Args)]
pub struct Args {
    /// The `wharf` binary to measure.
    #[arg(long)]
    wharf: PathBuf,
    /// How many warm builds of each kind to time (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where the Markdown report goes.
    #[arg(long, default_value = "bench/results/build.md")]
    out: PathBuf,
}

const APP_ID: u64 = 9001;
const INSTALLATION: u64 = 77;

/// The repository: a FROM-scratch image whose RUN step stands in for installing dependencies.
const DOCKERFILE: &str = "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\n\
RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox sleep 2; echo dependencies > /deps\"]\n\
COPY index.html /www/index.html\n\
CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n";

/// The scene, and the agent that builds in it.
struct Setup {
    scene: GithubScene,
    _agent: Child,
}

async fn setup(args: &Args) -> anyhow::Result<Setup> {
    let scene = GithubScene::start(&args.wharf, "build", APP_ID, INSTALLATION, "site").await?;
    let agent_token = scene.add_agent("bench-builder").await?;
    let agent = scene.spawn_agent(scene.agent_command(&args.wharf, &agent_token, "warn"))?;
    scene.announce_installation().await?;
    scene
        .create_service(
            &json!({"name": "site", "repo": scene.repository, "branch": "main", "port": 8080}),
        )
        .await?;
    Ok(Setup {
        scene,
        _agent: agent,
    })
}

/// Queues a build of `commit` (a manual build, as the timing starts at the claim anyway) and
/// returns claimed → finished in seconds, read from the build's own timestamps.
async fn wharf_build(setup: &Setup, commit: &str) -> anyhow::Result<f64> {
    let build = setup
        .scene
        .wharf
        .admin_post(
            &setup.scene.http,
            "/v1/services/site/builds",
            &json!({"ref": commit}),
            reqwest::StatusCode::CREATED,
        )
        .await?;
    let id = build["id"].as_i64().context("no build id")?;
    let build = poll(
        Duration::from_secs(300),
        Duration::from_millis(20),
        async || {
            let build = setup.scene.get_json(&format!("/v1/builds/{id}")).await?;
            match build["state"].as_str() {
                Some("completed") => Ok(ControlFlow::Break(build)),
                Some("failed" | "cancelled") => bail!("build #{id} did not complete: {build}"),
                _ => Ok(ControlFlow::Continue(format!(
                    "build #{id} did not finish within 300 s"
                ))),
            }
        },
    )
    .await?;
    let claimed = time_from_rfc3339(build["claimed_at"].as_str().unwrap_or_default());
    let finished = time_from_rfc3339(build["finished_at"].as_str().unwrap_or_default());
    match (claimed, finished) {
        (Some(claimed), Some(finished)) => Ok((finished - claimed) as f64 / 1000.0),
        _ => bail!("build #{id} has no claim or finish time: {build}"),
    }
}

/// The same steps as a plain script: fetch the commit, build, push. Returns seconds.
async fn script_build(setup: &Setup, commit: &str, tag: &str) -> anyhow::Result<f64> {
    let work = tempfile::tempdir()?;
    let script = r#"set -e
cd "$WORK"
git init -q
git remote add origin "$URL"
git fetch -q --depth 1 origin "$COMMIT"
git checkout -q FETCH_HEAD
podman build -q --format docker -t "$TAG" . >/dev/null
podman push -q --tls-verify=false "$TAG"
podman untag "$TAG" "$TAG"
"#;
    let mut command = Command::new("bash");
    command
        .args(["-c", script])
        .env("WORK", work.path())
        .env("URL", setup.scene.clone_url())
        .env("COMMIT", commit)
        .env("TAG", tag);
    // The installation token is minted before the timing starts.
    setup.scene.git_credentials(&mut command).await?;
    let started = Instant::now();
    let status = command.status().await?;
    let elapsed = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("the script failed: {status}");
    }
    Ok(elapsed)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let setup = setup(&args).await?;
    let busybox = std::fs::read("/bin/busybox").context("busybox-static is needed")?;
    let files: Vec<(&str, &[u8])> = vec![
        ("Dockerfile", DOCKERFILE.as_bytes()),
        ("busybox", &busybox),
        ("index.html", b"hello\n"),
    ];
    // A fresh commit with a unique RUN line, so the first build finds nothing in the cache.
    let nonce = procs::random_hex(8)?;
    let dockerfile = DOCKERFILE.replace("echo dependencies", &format!("echo dependencies {nonce}"));
    let mut first_files = files.clone();
    first_files[0] = ("Dockerfile", dockerfile.as_bytes());
    let commit =
        setup
            .scene
            .standin
            .commit_files(&setup.scene.repository, "main", &first_files, "first")?;

    eprintln!("==> Wharf: first build (empty layer cache)");
    let first = wharf_build(&setup, &commit).await?;
    let mut wharf_warm = Vec::new();
    let mut script_warm = Vec::new();
    for run in 0..args.runs {
        eprintln!("==> warm run {} of {}", run + 1, args.runs);
        wharf_warm.push(wharf_build(&setup, &commit).await?);
        let tag = format!(
            "{}/default/site-script:{commit}",
            setup.scene.registry.address
        );
        script_warm.push(script_build(&setup, &commit, &tag).await?);
    }
    let wharf_median = median(&mut wharf_warm);
    let script_median = median(&mut script_warm);
    let ratio = wharf_median / script_median;

    let mut text = String::new();
    report::header(
        &mut text,
        "Build: claimed to pushed, Wharf and a plain script",
        &args.wharf,
        "`wharf server` and `wharf agent` (Podman), registry: Debian `docker-registry` on loopback, repository served by the GitHub stand-in over git's smart HTTP",
    );
    text += &format!(
        "- Repository: a FROM-scratch image with busybox, one RUN step that sleeps 2 s (standing in for installing dependencies) and a COPY; the first build starts with that RUN step not in the layer cache\n\
- Wharf's time is the build's own `claimed_at` → `finished_at` (fetch, build, push, reports, log shipping); the script's is its wall time (`git fetch --depth 1` of the commit, `podman build`, `podman push`, `podman untag`), with an installation token minted before timing\n\
- Warm runs: {runs} of each, interleaved; the median is reported\n\n\
| Measure | Seconds |\n|---|---:|\n\
| Wharf, first build (layer cache empty) | {first:.2} |\n\
| Wharf, later builds of the unchanged service (median) | {wharf_median:.2} |\n\
| Script, same steps (median) | {script_median:.2} |\n\n\
Wharf ÷ script: **{ratio:.2}×** (goal: at most 1.10×) — {ratio_met}.\n\n\
Second build faster than the first: {faster:.2} s against {first:.2} s — {faster_met}.\n\n\
All runs, Wharf warm: {wharf_all:?}; script: {script_all:?}\n",
        runs = args.runs,
        first = first,
        wharf_median = wharf_median,
        script_median = script_median,
        ratio = ratio,
        ratio_met = report::met(ratio <= 1.10),
        faster = wharf_median,
        faster_met = report::met(wharf_median < first),
        wharf_all = wharf_warm
            .iter()
            .map(|value| format!("{value:.2}"))
            .collect::<Vec<_>>(),
        script_all = script_warm
            .iter()
            .map(|value| format!("{value:.2}"))
            .collect::<Vec<_>>(),
    );
    report::publish(&args.out, &text)
}

//! `build`: time from "build claimed" to "image pushed" for a small repository, Wharf against
//! the same steps run as a plain script (git fetch of the commit, podman build, podman push),
//! and a second build of the unchanged service against its first (the layer cache).
//!
//! The repository is served by the GitHub stand-in (real `git http-backend` behind token auth),
//! images go to a real registry (Debian's `docker-registry`), Wharf runs as its real binaries
//! (`wharf server` and `wharf agent`), and the script uses an installation token as Wharf does.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::process::Command;
use wharf_github::{AppConfig, GithubApp};
use wharf_github_standin::{AppKey, GithubStandin, StandinConfig};
use wharf_runtime::registry::LocalRegistry;

use crate::procs::{self, Child, WharfLaunch};
use crate::report;

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

/// Milliseconds since the epoch of an RFC 3339 time, as the API gives times.
pub(crate) fn time_from_rfc3339(text: &str) -> Option<i128> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|instant| instant.unix_timestamp_nanos() / 1_000_000)
}

struct Setup {
    standin: GithubStandin,
    registry: LocalRegistry,
    app: GithubApp,
    http: reqwest::Client,
    wharf: procs::Wharf,
    _agent: Child,
    _dir: tempfile::TempDir,
}

async fn setup(args: &Args) -> anyhow::Result<Setup> {
    let dir = tempfile::tempdir()?;
    let key = AppKey::generate()?;
    let mut config = StandinConfig::new(APP_ID, &key.public_pem);
    config.openapi_path = None;
    let standin = GithubStandin::start(config).await?;
    standin.add_installation(INSTALLATION, "acme");
    standin.add_repository(INSTALLATION, "acme/site")?;
    let registry = LocalRegistry::start(&dir.path().join("registry"), "127.0.0.1:0").await?;
    let http = procs::http_client(4)?;
    let token = procs::random_hex(16)?;
    let secret = procs::random_hex(16)?;
    let launch = WharfLaunch {
        bin: args.wharf.clone(),
        data_dir: dir.path().join("data"),
        log_dir: dir.path().to_path_buf(),
        token: token.clone(),
        webhook_secret: secret.clone(),
    };
    let app_id = APP_ID.to_string();
    let api_url = standin.api_url();
    let wharf = launch
        .start(
            &http,
            "build",
            &[
                ("WHARF_GITHUB_APP_ID", &app_id),
                ("WHARF_GITHUB_APP_PRIVATE_KEY", &key.private_pem),
                ("WHARF_GITHUB_API_URL", &api_url),
            ],
        )
        .await?;
    let agent_token = wharf
        .admin_post(
            &http,
            "/v1/agents",
            &json!({"name": "bench-builder"}),
            reqwest::StatusCode::CREATED,
        )
        .await?["token"]
        .as_str()
        .context("no agent token")?
        .to_owned();
    let mut agent_command = std::process::Command::new(&args.wharf);
    agent_command
        .arg("agent")
        .env("WHARF_SERVER", &wharf.url)
        .env("WHARF_AGENT_TOKEN", &agent_token)
        .env("WHARF_WORK_DIR", dir.path().join("work"))
        .env("WHARF_REGISTRY", &registry.address)
        .env("WHARF_REGISTRY_INSECURE", "true")
        .env("WHARF_LOG", "warn");
    let agent = Child::spawn("wharf agent", agent_command, &dir.path().join("agent.log"))?;
    // The installation, as GitHub would announce it, then the service.
    let installed = json!({
        "action": "created",
        "installation": {"id": INSTALLATION, "account": {"login": "acme", "type": "Organization"}},
        "repositories": [{"id": 1, "full_name": "acme/site", "private": true}]
    });
    webhook(
        &http,
        &wharf.url,
        &secret,
        "installation",
        &procs::random_hex(8)?,
        &installed,
    )
    .await?;
    wharf
        .admin_post(
            &http,
            "/v1/services",
            &json!({"name": "site", "repo": "acme/site", "branch": "main", "port": 8080}),
            reqwest::StatusCode::CREATED,
        )
        .await?;
    let app = GithubApp::new(&AppConfig {
        app_id: APP_ID,
        private_key: SecretString::from(key.private_pem.clone()),
        api_url,
    })?;
    Ok(Setup {
        standin,
        registry,
        app,
        http,
        wharf,
        _agent: agent,
        _dir: dir,
    })
}

pub(crate) async fn webhook(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    event: &str,
    delivery: &str,
    body: &Value,
) -> anyhow::Result<()> {
    let bytes = body.to_string().into_bytes();
    let response = http
        .post(format!("{url}/api/webhooks/github"))
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header(
            "x-hub-signature-256",
            wharf_domain::signature::sign(secret.as_bytes(), &bytes),
        )
        .body(bytes)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("the {event} webhook answered {}", response.status());
    }
    Ok(())
}

/// Queues a build of `commit` (a manual build, as the timing starts at the claim anyway) and
/// returns claimed → finished in seconds, read from the build's own timestamps.
async fn wharf_build(setup: &Setup, commit: &str) -> anyhow::Result<f64> {
    let build = setup
        .wharf
        .admin_post(
            &setup.http,
            "/v1/services/site/builds",
            &json!({"ref": commit}),
            reqwest::StatusCode::CREATED,
        )
        .await?;
    let id = build["id"].as_i64().context("no build id")?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let build: Value = setup
            .http
            .get(format!("{}/v1/builds/{id}", setup.wharf.url))
            .bearer_auth(setup.wharf_token())
            .send()
            .await?
            .json()
            .await?;
        match build["state"].as_str() {
            Some("completed") => {
                let claimed = time_from_rfc3339(build["claimed_at"].as_str().unwrap_or_default());
                let finished = time_from_rfc3339(build["finished_at"].as_str().unwrap_or_default());
                return match (claimed, finished) {
                    (Some(claimed), Some(finished)) => Ok((finished - claimed) as f64 / 1000.0),
                    _ => bail!("build #{id} has no claim or finish time: {build}"),
                };
            }
            Some("failed" | "cancelled") => bail!("build #{id} did not complete: {build}"),
            _ => {}
        }
        if Instant::now() > deadline {
            bail!("build #{id} did not finish within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Setup {
    fn wharf_token(&self) -> &str {
        self.wharf.token()
    }
}

/// The same steps as a plain script: fetch the commit, build, push. Returns seconds.
async fn script_build(setup: &Setup, commit: &str, tag: &str) -> anyhow::Result<f64> {
    let token = setup.app.installation_token(INSTALLATION).await?;
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
    let header = format!(
        "Authorization: Basic {}",
        base64_encode(&format!("x-access-token:{}", token.token.expose_secret()))
    );
    let started = Instant::now();
    let status = Command::new("bash")
        .args(["-c", script])
        .env("WORK", work.path())
        .env("URL", setup.standin.clone_url("acme/site"))
        .env("COMMIT", commit)
        .env("TAG", tag)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.extraHeader")
        .env("GIT_CONFIG_VALUE_0", header)
        .status()
        .await?;
    let elapsed = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("the script failed: {status}");
    }
    Ok(elapsed)
}

pub(crate) fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
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
    let commit = setup
        .standin
        .commit_files("acme/site", "main", &first_files, "first")?;

    eprintln!("==> Wharf: first build (empty layer cache)");
    let first = wharf_build(&setup, &commit).await?;
    let mut wharf_warm = Vec::new();
    let mut script_warm = Vec::new();
    for run in 0..args.runs {
        eprintln!("==> warm run {} of {}", run + 1, args.runs);
        wharf_warm.push(wharf_build(&setup, &commit).await?);
        let tag = format!("{}/default/site-script:{commit}", setup.registry.address);
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
    report::write(&args.out, &text)?;
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_api_times() {
        assert_eq!(time_from_rfc3339("1970-01-01T00:00:01.250Z"), Some(1250));
        assert_eq!(
            time_from_rfc3339("2026-11-23T15:35:29.123Z"),
            Some(1_795_448_129_123)
        );
        assert_eq!(
            base64_encode("x-access-token:abc"),
            "eC1hY2Nlc3MtdG9rZW46YWJj"
        );
    }
}

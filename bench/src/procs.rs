//! Child processes under test (the Wharf server, adnanh/webhook): starting them on a free
//! loopback port, waiting until they answer, killing them, and reading their CPU time.
//!
//! Children log to files in the run's temporary directory; the tail of a log is shown only when
//! a child fails. Secrets reach children through the environment or a private file, never argv.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// A child process that is killed (SIGKILL) when dropped.
pub struct Child {
    name: String,
    child: std::process::Child,
    log: PathBuf,
}

impl Child {
    /// Starts `command` with stdout and stderr going to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Child> {
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Child {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails, with the end of its log, when the child has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); the end of its log:\n{}",
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// The last lines of the child's log.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The most frequent lines of the child's log, with timestamps removed and every number
    /// shown as `#`: (count, line).
    pub fn log_summary(&self, most: usize) -> (usize, Vec<(usize, String)>) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut total = 0;
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            total += 1;
            // tracing's format starts with an RFC 3339 timestamp; drop it so lines group.
            let line = match line.split_once(' ') {
                Some((first, rest)) if first.len() > 18 && first.as_bytes()[4] == b'-' => rest,
                _ => line,
            };
            // Numbers vary from line to line (durations, ids); group lines without them.
            let mut grouped = String::new();
            for c in line.trim().chars().take(300) {
                if !c.is_ascii_digit() {
                    grouped.push(c);
                } else if !grouped.ends_with('#') {
                    grouped.push('#');
                }
            }
            *counts.entry(grouped).or_default() += 1;
        }
        let mut lines: Vec<(usize, String)> = counts
            .into_iter()
            .map(|(line, count)| (count, line))
            .collect();
        lines.sort_by_key(|line| std::cmp::Reverse(line.0));
        lines.truncate(most);
        (total, lines)
    }

    /// Sends SIGKILL (no chance to flush or shut down) and reaps the child.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child
                .kill()
                .with_context(|| format!("cannot kill {}", self.name))?;
        }
        self.child.wait()?;
        Ok(())
    }

    /// Sends SIGTERM so the child can shut down (and stop what it started), waits up to
    /// `within` for it to exit, then kills it.
    pub fn terminate(&mut self, within: Duration) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status();
            let deadline = Instant::now() + within;
            while self.child.try_wait()?.is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.kill()
    }

    /// CPU time the child used so far, itself and its reaped children, in seconds.
    pub fn cpu(&self) -> CpuTime {
        CpuTime::of(&format!("/proc/{}/stat", self.pid()))
    }

    /// CPU seconds used so far by the child's threads, grouped by thread name without trailing
    /// digits (`tokio-runtime-w`, `sqlx-sqlite-wor`, …).
    pub fn thread_cpu(&self) -> BTreeMap<String, f64> {
        let mut by_name = BTreeMap::new();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return by_name;
        };
        for task in tasks.flatten() {
            let stat = task.path().join("stat");
            let name = std::fs::read_to_string(&stat)
                .ok()
                .and_then(|text| {
                    let start = text.find('(')?;
                    let end = text.rfind(')')?;
                    text.get(start + 1..end).map(str::to_owned)
                })
                .unwrap_or_default();
            let name = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
            let cpu = CpuTime::of(&stat.to_string_lossy());
            *by_name.entry(name.to_owned()).or_insert(0.0) += cpu.own;
        }
        by_name
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// CPU seconds from `/proc/PID/stat`: the process's own, and its waited-for children's.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTime {
    pub own: f64,
    pub children: f64,
}

impl CpuTime {
    /// This benchmark process.
    pub fn of_self() -> CpuTime {
        CpuTime::of("/proc/self/stat")
    }

    fn of(path: &str) -> CpuTime {
        let Ok(text) = std::fs::read_to_string(path) else {
            return CpuTime::default();
        };
        // Fields after the command name, which is in parentheses and may hold spaces.
        let Some((_, rest)) = text.rsplit_once(')') else {
            return CpuTime::default();
        };
        let fields: Vec<f64> = rest
            .split_whitespace()
            .map(|field| field.parse().unwrap_or(0.0))
            .collect();
        let tick = clock_ticks();
        let field = |index: usize| fields.get(index).copied().unwrap_or(0.0) / tick;
        // utime, stime, cutime, cstime are fields 14-17 of stat; here 0 is field 3.
        CpuTime {
            own: field(11) + field(12),
            children: field(13) + field(14),
        }
    }

    /// What was used between `earlier` and `self`.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            own: self.own - earlier.own,
            children: self.children - earlier.children,
        }
    }
}

/// CPU seconds the whole machine has been busy (all CPUs, all processes), from `/proc/stat`.
pub fn machine_busy() -> f64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|line| line.starts_with("cpu ")) else {
        return 0.0;
    };
    let fields: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
    let busy: f64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|index| fields.get(*index))
        .sum();
    busy / clock_ticks()
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 when it cannot be read.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|ticks: &f64| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

/// Runs `attempt` every `every` until it breaks with a value; once `within` has passed, fails
/// with what its last `Continue` said it was still waiting for.
pub async fn poll<T>(
    within: Duration,
    every: Duration,
    mut attempt: impl AsyncFnMut() -> anyhow::Result<ControlFlow<T, String>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + within;
    loop {
        match attempt().await? {
            ControlFlow::Break(value) => return Ok(value),
            ControlFlow::Continue(waiting) => {
                if Instant::now() >= deadline {
                    bail!("{waiting}");
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `bytes` random bytes as hex, from the kernel.
pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buffer = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut buffer))
        .context("cannot read /dev/urandom")?;
    Ok(hex::encode(buffer))
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    wharf_runtime::files::write_private_file(path, contents)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The HTTP client of the benchmark: keep-alive HTTP/1.1 on loopback, no proxy.
pub fn http_client(connections: usize) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(connections.max(1) * 4)
        .pool_idle_timeout(Duration::from_secs(90))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")
}

/// A running `wharf server` and how to reach it.
pub struct Wharf {
    pub child: Child,
    pub url: String,
    token: String,
}

/// How to start `wharf server`; kept so that it can be started again on the same data.
pub struct WharfLaunch {
    pub bin: PathBuf,
    pub data_dir: PathBuf,
    pub log_dir: PathBuf,
    pub token: String,
    pub webhook_secret: String,
}

impl WharfLaunch {
    /// `bin` on a fresh SQLite data directory in `dir`, logging beside it, with a new admin token.
    pub fn fresh(bin: &Path, dir: &Path, webhook_secret: &str) -> anyhow::Result<WharfLaunch> {
        Ok(WharfLaunch {
            bin: bin.to_owned(),
            data_dir: dir.join("wharf-data"),
            log_dir: dir.to_owned(),
            token: format!("bench_admin_{}", random_hex(20)?),
            webhook_secret: webhook_secret.to_owned(),
        })
    }

    /// Starts `BIN server` on a free port and waits until `/healthz` answers 200.
    pub async fn start(
        &self,
        http: &reqwest::Client,
        label: &str,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Wharf> {
        let port = free_port()?;
        let mut command = Command::new(&self.bin);
        command
            .arg("server")
            .env_remove("WHARF_CONFIG")
            .env_remove("WHARF_DATABASE_URL")
            .env_remove("WHARF_TOKEN_FILE")
            .env_remove("WHARF_GITHUB_WEBHOOK_SECRET_FILE")
            .env_remove("WHARF_GITHUB_APP_ID")
            .env_remove("WHARF_GITHUB_APP_PRIVATE_KEY")
            .env_remove("WHARF_GITHUB_APP_PRIVATE_KEY_FILE")
            .env("WHARF_LISTEN", format!("127.0.0.1:{port}"))
            .env("WHARF_DATA_DIR", &self.data_dir)
            .env("WHARF_TOKEN", &self.token)
            .env("WHARF_GITHUB_WEBHOOK_SECRET", &self.webhook_secret)
            .env("WHARF_LOG", "warn");
        for (key, value) in extra_env {
            command.env(key, value);
        }
        let log = self.log_dir.join(format!("wharf-{label}.log"));
        let child = Child::spawn("wharf server", command, &log)?;
        let mut wharf = Wharf {
            child,
            url: format!("http://127.0.0.1:{port}"),
            token: self.token.clone(),
        };
        wharf.wait_healthy(http, Duration::from_secs(30)).await?;
        Ok(wharf)
    }
}

impl Wharf {
    /// Where GitHub's webhook deliveries go.
    pub fn webhook_url(&self) -> String {
        format!("{}/api/webhooks/github", self.url)
    }

    /// The admin token it was started with.
    pub fn token(&self) -> &str {
        &self.token
    }

    async fn wait_healthy(
        &mut self,
        http: &reqwest::Client,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let url = format!("{}/healthz", self.url);
        loop {
            self.child.check_running()?;
            if let Ok(response) = http.get(&url).send().await
                && response.status() == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "wharf server did not answer GET /healthz with 200 within {within:?}; the end of its log:\n{}",
                    self.child.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POSTs JSON with the admin token and expects `expected`; returns the answer's JSON.
    pub async fn admin_post(
        &self,
        http: &reqwest::Client,
        path: &str,
        body: &Value,
        expected: reqwest::StatusCode,
    ) -> anyhow::Result<Value> {
        post_json(http, &self.url, &self.token, path, body, expected).await
    }

    /// Registers an agent called `name`; returns its token.
    pub async fn add_agent(&self, http: &reqwest::Client, name: &str) -> anyhow::Result<String> {
        let agent = self
            .admin_post(
                http,
                "/v1/agents",
                &serde_json::json!({"name": name}),
                reqwest::StatusCode::CREATED,
            )
            .await?;
        Ok(agent["token"]
            .as_str()
            .context("POST /v1/agents answered without a token")?
            .to_owned())
    }

    /// The text of `GET /metrics`.
    pub async fn metrics(&self, http: &reqwest::Client) -> anyhow::Result<String> {
        let response = http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .context("GET /metrics")?;
        if !response.status().is_success() {
            bail!("GET /metrics answered {}", response.status());
        }
        Ok(response.text().await?)
    }
}

/// Milliseconds since the epoch of an RFC 3339 time, as Wharf's API gives times.
pub fn time_from_rfc3339(text: &str) -> Option<i128> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|instant| instant.unix_timestamp_nanos() / 1_000_000)
}

/// Sums every sample of the metric `name` (all label sets) in Prometheus text.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let value = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let Some(value) = value {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`.
pub async fn wait_listening(child: &mut Child, port: u16, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        child.check_running()?;
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "nothing listens on 127.0.0.1:{port} after {within:?}; the end of the log:\n{}",
                child.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POSTs JSON to `url` + `path` with the bearer `token` and expects `expected`; returns the
/// answer's JSON.
pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    path: &str,
    body: &Value,
    expected: reqwest::StatusCode,
) -> anyhow::Result<Value> {
    let response = http
        .post(format!("{url}{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {path}"))?;
    let status = response.status();
    let text = response.text().await?;
    if status != expected {
        bail!("POST {path} answered {status} (expected {expected}): {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("POST {path} answered non-JSON"))
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
    }

    #[test]
    fn sums_metric_samples() {
        let text = "# HELP wharf_builds x\nwharf_builds{state=\"pending\"} 1\nwharf_builds{state=\"cancelled\"} 41\nwharf_builds_other 5\nwharf_agent_claims_waiting 1\n";
        assert_eq!(metric_sum(text, "wharf_builds"), Some(42.0));
        assert_eq!(metric_sum(text, "wharf_agent_claims_waiting"), Some(1.0));
        assert_eq!(metric_sum(text, "missing"), None);
    }
}

//! Whether a new version is healthy: its image's `HEALTHCHECK` run by Wharf through `exec`,
//! else HTTP on its published port, else "still running" after the start period; probes
//! timed by the service's health settings, and the log tail of a version that failed them.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use wharf_runtime::process::Ended;
use wharf_wire::{HealthSettings, ProbeResult, RolloutJob, text};

use super::{Deployer, Started};

/// Log lines of an unhealthy container kept on its rollout.
const LOG_TAIL_LINES: usize = 30;

/// Probe results kept on a rollout.
pub(super) const PROBES_KEPT: usize = 20;

/// A failed probe asks whether the container exited, once it has had this long to start…
const EXIT_CHECK_AFTER: Duration = Duration::from_millis(250);

/// …and then at most this often.
const EXIT_CHECK_EVERY: Duration = Duration::from_millis(500);

/// How a new version proves it is healthy.
#[derive(Debug, Clone)]
pub(super) enum Probe {
    /// The image's own HEALTHCHECK command, run inside the container.
    Exec(Vec<String>),
    /// An HTTP GET of this path on the published port.
    Http(String),
    /// No port and no HEALTHCHECK: still running after the start period.
    Running,
}

/// A version that did not become healthy.
pub(super) struct Unhealthy {
    pub(super) reason: String,
    pub(super) probes: Vec<ProbeResult>,
    pub(super) log_tail: Vec<String>,
}

impl Deployer {
    /// Waits until every new container passes the release's probe, or decides it is unhealthy.
    pub(super) async fn wait_healthy(
        &self,
        job: &RolloutJob,
        started: &[Started],
    ) -> Result<Vec<ProbeResult>, Unhealthy> {
        let probe = self.probe_for(job).await;
        self.wait_until_healthy(job, &probe, &job.settings.health, started)
            .await
    }

    /// Waits until every container in `started` passes `probe`, timed by `health`, or
    /// decides it is unhealthy. Every probe goes into `job`'s deploy log.
    pub(super) async fn wait_until_healthy(
        &self,
        job: &RolloutJob,
        probe: &Probe,
        health: &HealthSettings,
        started: &[Started],
    ) -> Result<Vec<ProbeResult>, Unhealthy> {
        let begun = Instant::now();
        let deadline = begun + Duration::from_millis(health.deadline_ms);
        let start_period = Duration::from_millis(health.start_period_ms);
        let interval = Duration::from_millis(health.interval_ms);
        let mut probes: Vec<ProbeResult> = Vec::new();
        let mut failures_in_a_row = 0u32;
        let mut healthy: BTreeSet<String> = BTreeSet::new();
        let mut exit_checked: Option<Instant> = None;
        loop {
            let round = Instant::now();
            let mut detail = String::new();
            let mut exited = None;
            for container in started {
                if healthy.contains(&container.name) {
                    continue;
                }
                match self.probe_once(probe, container, health, begun).await {
                    Ok(()) => {
                        healthy.insert(container.name.clone());
                    }
                    Err(why) => {
                        detail = why;
                        // Asking the runtime costs as much as a probe or two: not on the first
                        // probes of a container that has just started, then twice a second.
                        if begun.elapsed() >= EXIT_CHECK_AFTER
                            && exit_checked.is_none_or(|at| at.elapsed() >= EXIT_CHECK_EVERY)
                        {
                            exit_checked = Some(Instant::now());
                            if let Some(code) = self.exit_code_if_stopped(&container.name).await {
                                exited = Some((container.name.clone(), code));
                            }
                        }
                        break;
                    }
                }
            }
            let all_healthy = healthy.len() == started.len();
            let after_ms = begun.elapsed().as_millis() as u64;
            probes.push(ProbeResult {
                after_ms,
                healthy: all_healthy,
                detail: if all_healthy {
                    probe_success(probe, health)
                } else {
                    detail.clone()
                },
            });
            if let Some(last) = probes.last() {
                let verdict = if last.healthy {
                    "healthy"
                } else {
                    "not healthy"
                };
                self.note(
                    job,
                    format!(
                        "probe after {} ms: {verdict}: {}",
                        last.after_ms, last.detail
                    ),
                );
            }
            if probes.len() > PROBES_KEPT {
                probes.remove(0);
            }
            if all_healthy {
                return Ok(probes);
            }
            let unhealthy = |reason: String, probes: Vec<ProbeResult>| async move {
                Unhealthy {
                    log_tail: self.log_tail(started).await,
                    reason,
                    probes,
                }
            };
            if let Some((name, code)) = exited {
                return Err(unhealthy(
                    format!(
                        "the new version exited with code {code} ({name}) before it was healthy"
                    ),
                    probes,
                )
                .await);
            }
            if begun.elapsed() >= start_period {
                failures_in_a_row += 1;
                if health.retries > 0 && failures_in_a_row >= health.retries {
                    return Err(unhealthy(
                        format!(
                            "{failures_in_a_row} health probes in a row failed; last: {detail}"
                        ),
                        probes,
                    )
                    .await);
                }
            }
            if Instant::now() >= deadline {
                return Err(unhealthy(
                    format!(
                        "not healthy within {} ms; last probe: {detail}",
                        health.deadline_ms
                    ),
                    probes,
                )
                .await);
            }
            let next = (round + interval).min(deadline);
            tokio::time::sleep_until(next.into()).await;
        }
    }

    pub(super) async fn probe_for(&self, job: &RolloutJob) -> Probe {
        let check = self.image_healthcheck(&job.image).await;
        match (check, job.port) {
            (Some(command), _) => Probe::Exec(command),
            (None, Some(_)) => {
                Probe::Http(job.health_path.clone().unwrap_or_else(|| "/".to_owned()))
            }
            (None, None) => Probe::Running,
        }
    }

    /// The command of the image's own `HEALTHCHECK`, if it has one.
    pub(super) async fn image_healthcheck(&self, image: &str) -> Option<Vec<String>> {
        match self.config.runtime.image_healthcheck(image).await {
            Ok(check) => check,
            Err(error) => {
                tracing::debug!(image, %error, "the image's HEALTHCHECK cannot be read");
                None
            }
        }
    }

    async fn probe_once(
        &self,
        probe: &Probe,
        container: &Started,
        health: &HealthSettings,
        begun: Instant,
    ) -> Result<(), String> {
        let timeout = Duration::from_millis(health.timeout_ms);
        match probe {
            Probe::Http(path) => {
                let port = container.port.ok_or("no published port")?;
                let url = format!("http://127.0.0.1:{port}{path}");
                match self.http.get(&url).timeout(timeout).send().await {
                    Ok(response) if response.status().as_u16() == health.status => Ok(()),
                    Ok(response) => Err(format!(
                        "GET {path} answered {} (expected {})",
                        response.status().as_u16(),
                        health.status
                    )),
                    Err(error) if error.is_timeout() => Err(format!(
                        "GET {path} timed out after {} ms",
                        health.timeout_ms
                    )),
                    Err(error) if error.is_connect() => {
                        Err(format!("GET {path}: connection refused"))
                    }
                    Err(error) => Err(format!("GET {path}: {error}")),
                }
            }
            Probe::Exec(command) => {
                match self
                    .config
                    .runtime
                    .exec(&container.name, command, timeout)
                    .await
                {
                    Ok(output) => match output.ended {
                        Ended::Exited(0) => Ok(()),
                        Ended::TimedOut { .. } | Ended::Cancelled => Err(format!(
                            "HEALTHCHECK timed out after {} ms",
                            health.timeout_ms
                        )),
                        ended => Err(format!("HEALTHCHECK {ended}: {}", output.last_line())),
                    },
                    Err(error) => Err(error.to_string()),
                }
            }
            Probe::Running => {
                let settle = Duration::from_millis(health.start_period_ms.max(health.interval_ms));
                if let Some(code) = self.exit_code_if_stopped(&container.name).await {
                    return Err(format!("exited with code {code}"));
                }
                if begun.elapsed() >= settle {
                    Ok(())
                } else {
                    Err("running; waiting out the start period".to_owned())
                }
            }
        }
    }

    /// The exit code of a container that is no longer running.
    async fn exit_code_if_stopped(&self, name: &str) -> Option<i64> {
        let found = self
            .config
            .runtime
            .inspect_containers(&[name.to_owned()])
            .await
            .ok()?;
        let container = found.into_iter().next()?;
        (!container.running).then_some(container.exit_code)
    }

    async fn log_tail(&self, started: &[Started]) -> Vec<String> {
        let mut lines = Vec::new();
        for container in started {
            if let Ok(tail) = self
                .config
                .runtime
                .logs_tail(&container.name, LOG_TAIL_LINES)
                .await
            {
                lines.extend(
                    tail.into_iter()
                        .map(|line| text::clip_owned(line, text::LOG_LINE_CHARS)),
                );
            }
        }
        let skip = lines.len().saturating_sub(LOG_TAIL_LINES);
        lines.split_off(skip)
    }
}

fn probe_success(probe: &Probe, health: &HealthSettings) -> String {
    match probe {
        Probe::Http(path) => format!("GET {path} answered {}", health.status),
        Probe::Exec(_) => "HEALTHCHECK passed".to_owned(),
        Probe::Running => "running".to_owned(),
    }
}

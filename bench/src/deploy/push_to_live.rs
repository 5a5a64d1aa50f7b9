//! Push received to the new version answering through the edge: Wharf from a signed `push`
//! webhook, against the raw shell pipeline (`bench/push-pipeline.sh`).

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use super::scene::{Bench, podman, site_dockerfile};
use super::{DEADLINE, INSTALLATION, PUSH_PIPELINE_SCRIPT};
use crate::edge_load::wall_ms;
use crate::procs::{self, poll, time_from_rfc3339};

/// One push-to-live run of Wharf, timed by the benchmark and broken down by the server's own
/// timestamps (milliseconds).
pub(super) struct PushRun {
    pub(super) build_id: i64,
    /// Webhook sent → the edge answers the new version.
    pub(super) seconds: f64,
    /// Webhook sent → build created (the server accepted the push).
    pub(super) to_queued_ms: f64,
    /// Build created → claimed by the agent.
    pub(super) to_claimed_ms: f64,
    /// Build claimed → image pushed (the build's `finished_at`).
    pub(super) build_ms: f64,
    /// Build finished → release created.
    pub(super) to_release_ms: f64,
    /// Release created → rollout `live` (the release's `finished_at`).
    pub(super) rollout_ms: f64,
}

impl Bench {
    /// Commits a new version of the app to `acme/app` (`main`), the page saying `version`.
    pub(super) fn commit_app(&self, version: &str) -> anyhow::Result<String> {
        self.commit_app_to("main", version)
    }

    /// Commits a new version of the app to `branch` of `acme/app`, the page saying `version`.
    pub(super) fn commit_app_to(&self, branch: &str, version: &str) -> anyhow::Result<String> {
        let busybox = std::fs::read("/bin/busybox").context("busybox-static is needed")?;
        let page = format!("{version}\n");
        let files: Vec<(&str, &[u8])> = vec![
            ("Dockerfile", site_dockerfile().as_bytes()),
            ("busybox", &busybox),
            ("www/index.html", page.as_bytes()),
        ];
        self.scene
            .standin
            .commit_files(&self.scene.repository, branch, &files, version)
    }

    /// Pushes a new version of the app as GitHub would, and times until the edge answers it.
    pub(super) async fn wharf_push_to_live(&self, version: &str) -> anyhow::Result<PushRun> {
        let commit = self.commit_app(version)?;
        let zero = "0".repeat(40);
        let payload = json!({
            "ref": "refs/heads/main", "before": zero, "after": commit,
            "created": false, "deleted": false, "forced": false, "base_ref": null,
            "compare": format!("https://github.com/acme/app/compare/{}", &commit[..12]),
            "commits": [], "head_commit": null,
            "repository": {"id": 1, "name": "app", "full_name": "acme/app", "private": true,
                           "owner": {"login": "acme", "id": 1},
                           "clone_url": "https://github.com/acme/app.git", "default_branch": "main"},
            "pusher": {"name": "octocat", "email": "octocat@example.com"},
            "sender": {"login": "octocat", "id": 1},
            "installation": {"id": INSTALLATION}
        });
        let push = self.scene.delivery("push", &payload)?;
        let sent_ms = wall_ms();
        let started = Instant::now();
        let response = push.send().await?;
        ensure!(
            response.status() == reqwest::StatusCode::ACCEPTED,
            "the push answered {}",
            response.status()
        );
        let answer: Value = response.json().await?;
        let build_id = answer["builds"][0]
            .as_i64()
            .with_context(|| format!("the push queued no build: {answer}"))?;
        self.wait_for_edge("app.test", version).await?;
        let seconds = started.elapsed().as_secs_f64();

        let build = self
            .scene
            .get_json(&format!("/v1/builds/{build_id}"))
            .await?;
        // The edge moves to the new version just before the agent reports it live.
        let release = poll(DEADLINE, Duration::from_millis(10), async || {
            let releases = self.scene.get_json("/v1/services/app/releases").await?;
            let release = releases
                .as_array()
                .and_then(|all| all.iter().find(|r| r["build_id"] == build_id))
                .with_context(|| format!("no release of build #{build_id}"))?
                .clone();
            if release["state"] == "live" {
                return Ok(ControlFlow::Break(release));
            }
            ensure!(
                !["failed", "rolled_back", "superseded"]
                    .contains(&release["state"].as_str().unwrap_or_default()),
                "the release is not live: {release}"
            );
            Ok(ControlFlow::Continue(format!(
                "the release is not live: {release}"
            )))
        })
        .await?;
        self.remember_image(release["image"].as_str().unwrap_or_default());
        let time = |value: &Value, field: &str| -> anyhow::Result<f64> {
            value[field]
                .as_str()
                .and_then(time_from_rfc3339)
                .map(|ms| ms as f64)
                .with_context(|| format!("no {field} in {value}"))
        };
        let queued = time(&build, "created_at")?;
        let claimed = time(&build, "claimed_at")?;
        let built = time(&build, "finished_at")?;
        let released = time(&release, "created_at")?;
        let live = time(&release, "finished_at")?;
        self.wait_for_one_container("app").await?;
        Ok(PushRun {
            build_id,
            seconds,
            to_queued_ms: queued - sent_ms,
            to_claimed_ms: claimed - queued,
            build_ms: built - claimed,
            to_release_ms: released - built,
            rollout_ms: live - released,
        })
    }

    /// The raw pipeline for a new version of the app; returns its wall time in seconds.
    pub(super) async fn script_push_to_live(
        &self,
        version: &str,
        run: usize,
    ) -> anyhow::Result<f64> {
        let commit = self.commit_app(version)?;
        let work = tempfile::tempdir()?;
        let name = format!("bench-pipeline-{}-{run}", self.agent_name);
        let port = procs::free_port()?;
        let tag = format!(
            "{}/bench/app-pipeline:{commit}",
            self.scene.registry.address
        );
        self.remember_image(&tag);
        let mut pipeline = self.script(PUSH_PIPELINE_SCRIPT, "push-pipeline.sh", &[], &name, port);
        pipeline
            .env("WORK", work.path())
            .env("URL", self.scene.clone_url())
            .env("COMMIT", &commit)
            .env("TAG", &tag);
        // The installation token is minted before the timing starts.
        self.scene.git_credentials(&mut pipeline).await?;
        let started = Instant::now();
        let out = pipeline.output().await.context("cannot run bash")?;
        let seconds = started.elapsed().as_secs_f64();
        ensure!(
            out.status.success(),
            "push-pipeline.sh failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let answer = reqwest::get(format!("http://127.0.0.1:{port}/"))
            .await?
            .text()
            .await?;
        ensure!(
            answer.trim() == version,
            "the pipeline's container answers {answer:?}"
        );
        // The previous run's container goes after the timing (Wharf retires its old version in
        // the background too).
        if run > 0 {
            let previous = format!("bench-pipeline-{}-{}", self.agent_name, run - 1);
            let _ = podman(&["rm", "--force", "--time", "0", &previous]).await;
        }
        Ok(seconds)
    }
}

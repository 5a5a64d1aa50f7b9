//! A pull request's preview: opened → its head answering at the preview's own host name, timed
//! against push → live of the same repository in the same run; and closed → nothing of the
//! preview left on the host (containers, networks, volumes, the route, its image) nor in the
//! registry (its manifest).

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use super::scene::{Bench, podman};
use super::{DEADLINE, INSTALLATION};
use crate::edge_load::Answer;
use crate::procs::poll;

/// One preview's run: seconds from the `pull_request` webhook to the preview answering, and
/// from the close to nothing of it left.
pub(super) struct PreviewRun {
    pub(super) seconds: f64,
    pub(super) removed_seconds: f64,
}

impl Bench {
    /// Opens pull request `pr` of `acme/app` (its head a new version saying `version` on the
    /// branch `pr-{pr}`), times until its preview answers, then closes it and times until
    /// nothing of the preview is left.
    pub(super) async fn wharf_preview(&self, pr: u64, version: &str) -> anyhow::Result<PreviewRun> {
        let branch = format!("pr-{pr}");
        let head = self.commit_app_to(&branch, version)?;
        let host = format!("pr-{pr}.app.test");
        let started = Instant::now();
        self.send_pull_request(pr, "opened", &head, &branch).await?;
        self.wait_for_edge(&host, version).await?;
        let seconds = started.elapsed().as_secs_f64();

        let environment = format!("app-pr-{pr}");
        let release = poll(DEADLINE, Duration::from_millis(10), async || {
            let releases = self.scene.get_json("/v1/services/app/releases").await?;
            let live = releases.as_array().and_then(|all| {
                all.iter()
                    .find(|r| r["environment"] == environment.as_str() && r["state"] == "live")
                    .cloned()
            });
            Ok(match live {
                Some(release) => ControlFlow::Break(release),
                None => ControlFlow::Continue(format!("{environment} has no live release")),
            })
        })
        .await?;
        let image = release["image"]
            .as_str()
            .context("the preview's release names no image")?
            .to_owned();
        let digest = image
            .split_once('@')
            .map(|(_, digest)| digest.to_owned())
            .context("the preview's image is not pinned by digest")?;

        let started = Instant::now();
        self.send_pull_request(pr, "closed", &head, &branch).await?;
        poll(DEADLINE, Duration::from_millis(20), async || {
            let left = self
                .preview_leftovers(&environment, &host, &image, &digest)
                .await?;
            Ok(if left.is_empty() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(format!("left of {environment}: {}", left.join(", ")))
            })
        })
        .await?;
        let removed_seconds = started.elapsed().as_secs_f64();
        Ok(PreviewRun {
            seconds,
            removed_seconds,
        })
    }

    /// What is still there of a preview: its containers, networks and volumes on the host, its
    /// route, its image on the host, its manifest in the registry.
    async fn preview_leftovers(
        &self,
        environment: &str,
        host: &str,
        image: &str,
        digest: &str,
    ) -> anyhow::Result<Vec<String>> {
        let mut left = Vec::new();
        let agent = format!("label=wharf.deploy.agent={}", self.agent_name);
        let of_environment = format!("label=wharf.deploy.environment={environment}");
        for kind in [&["ps", "--all"][..], &["network", "ls"], &["volume", "ls"]] {
            let mut args = kind.to_vec();
            args.extend(["--filter", &agent, "--filter", &of_environment]);
            args.extend(["--format", "{{.Name}}"]);
            let names = podman(&args).await.unwrap_or_default();
            left.extend(
                names
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(|n| format!("{} {n}", kind[0])),
            );
        }
        if matches!(self.edge_answer(host).await, Answer::Ok(_)) {
            left.push(format!("the route for {host}"));
        }
        if podman(&["image", "exists", image]).await.is_ok() {
            left.push(format!("the image {image}"));
        }
        let repository = image
            .split_once('@')
            .map(|(reference, _)| reference)
            .and_then(|reference| reference.split_once('/'))
            .map(|(_, repository)| repository)
            .context("the image names no repository")?;
        let manifest = format!(
            "http://{}/v2/{repository}/manifests/{digest}",
            self.scene.registry.address
        );
        let answer = self
            .edge_client
            .head(&manifest)
            .header(
                "accept",
                "application/vnd.oci.image.manifest.v1+json, \
                 application/vnd.docker.distribution.manifest.v2+json",
            )
            .send()
            .await?;
        if answer.status() != reqwest::StatusCode::NOT_FOUND {
            left.push(format!("the manifest {digest} ({})", answer.status()));
        }
        Ok(left)
    }

    /// Sends pull request `pr`'s `action` as GitHub would: from `acme/app` itself, by its owner.
    async fn send_pull_request(
        &self,
        pr: u64,
        action: &str,
        head: &str,
        branch: &str,
    ) -> anyhow::Result<()> {
        let repository = json!({"id": 1, "name": "app", "full_name": "acme/app", "private": true,
                                "owner": {"login": "acme", "id": 1}});
        let payload = json!({
            "action": action,
            "number": pr,
            "pull_request": {
                "id": 1000 + pr, "number": pr,
                "state": if action == "closed" { "closed" } else { "open" },
                "draft": false, "merged": false, "author_association": "OWNER",
                "head": {"ref": branch, "sha": head, "repo": repository},
                "base": {"ref": "main", "sha": head, "repo": repository}
            },
            "repository": repository,
            "sender": {"login": "acme", "id": 1},
            "installation": {"id": INSTALLATION}
        });
        let response = self
            .scene
            .delivery("pull_request", &payload)?
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "the pull request's {action} answered {}",
            response.status()
        );
        let answer: Value = response.json().await.unwrap_or_default();
        if action == "opened" {
            ensure!(
                answer["builds"][0].as_i64().is_some(),
                "the pull request queued no build: {answer}"
            );
        }
        Ok(())
    }
}

//! Failed requests while the version changes: Wharf's blue-green deploys and the stop-then-start
//! script each swap `site` between two versions under the same load, behind the same route.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use wharf_domain::identity::DeployIdentity;

use super::scene::Bench;
use super::{HEALTH_RETRIES, STOP_GRACE_S, STOP_START_SCRIPT};
use crate::edge_load::{Sample, Summary, before, wall_ms};
use crate::procs;

/// One version swap of a deploy method: which version, and how long the deploy took.
pub(super) struct Swap {
    pub(super) version: String,
    /// When it was asked for, in milliseconds since the epoch.
    pub(super) started_ms: f64,
    pub(super) seconds: f64,
}

/// The stop-then-start script's swaps or Wharf's, with the load they ran under.
pub(super) struct SwapRun {
    pub(super) swaps: Vec<Swap>,
    pub(super) summary: Summary,
    /// The requests due before the first deploy started: the machine's own noise.
    pub(super) before: Summary,
    pub(super) samples: Vec<Sample>,
}

impl SwapRun {
    /// The swaps done and the requests that ran while they did.
    pub(super) fn of(swaps: Vec<Swap>, samples: Vec<Sample>) -> SwapRun {
        let first = swaps.first().map_or(f64::MAX, |swap| swap.started_ms);
        SwapRun {
            swaps,
            summary: Summary::of(&samples),
            before: before(&samples, first),
            samples,
        }
    }
}

impl Bench {
    /// (a): Wharf swaps `site` between the two versions `swaps` times under load. Each swap
    /// waits for the old version to drain and stop before the next, so the whole of every
    /// deploy is inside the window.
    pub(super) async fn wharf_swaps(
        &self,
        images: &[(String, String); 2],
        swaps: usize,
        rate: f64,
    ) -> anyhow::Result<SwapRun> {
        let (first_version, first_image) = &images[0];
        self.deploy_live("site", "site.test", first_image, first_version)
            .await?;
        self.wait_for_one_container("site").await?;
        self.swaps_under_load(
            "Wharf blue-green",
            images,
            swaps,
            rate,
            async |version, image| {
                let seconds = self
                    .deploy_live("site", "site.test", image, version)
                    .await?;
                self.wait_for_one_container("site").await?;
                Ok(seconds)
            },
        )
        .await
    }

    /// Swaps `site` between the two versions `swaps` times under load, starting with the
    /// second, each swap by `swap_to(version, image)`, which returns how long the deploy took
    /// in seconds. The load starts 1 s before the first swap and ends 1 s after the last.
    pub(super) async fn swaps_under_load(
        &self,
        method: &str,
        images: &[(String, String); 2],
        swaps: usize,
        rate: f64,
        swap_to: impl AsyncFn(&str, &str) -> anyhow::Result<f64>,
    ) -> anyhow::Result<SwapRun> {
        let load = self.start_load("site.test", rate);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut done = Vec::new();
        for swap in 0..swaps {
            let (version, image) = &images[(swap + 1) % 2];
            eprintln!("==> {method}: swap {} of {swaps} to {version}", swap + 1);
            let started_ms = wall_ms();
            let seconds = swap_to(version, image).await?;
            done.push(Swap {
                version: version.clone(),
                started_ms,
                seconds,
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(SwapRun::of(done, load.finish().await))
    }

    /// Runs the stop-then-start script for `image`, the app on `port`; returns its exit code.
    pub(super) async fn stop_start(&self, image: &str, port: u16) -> anyhow::Result<i32> {
        let app = format!("bench-stop-start-{}", self.agent_name);
        let out = self
            .script(
                STOP_START_SCRIPT,
                "stop-start-deploy.sh",
                &[image],
                &app,
                port,
            )
            .env("STOP_GRACE", STOP_GRACE_S.to_string())
            .env("HEALTH_RETRIES", HEALTH_RETRIES.to_string())
            .output()
            .await
            .context("cannot run bash")?;
        let code = out.status.code().unwrap_or(-1);
        if code != 0 {
            eprintln!(
                "stop-start-deploy.sh exited {code}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(code)
    }

    /// Points Wharf's route for `site` at `127.0.0.1:port` through Caddy's admin API, keeping
    /// everything else of the route (its host match, its retry settings).
    pub(super) async fn point_route_at(&self, port: u16) -> anyhow::Result<()> {
        let route = DeployIdentity::new("site", "production")?.route_id();
        let url = format!("http://{}/id/{route}", self.edge_admin);
        let mut route: Value = self.scene.http.get(&url).send().await?.json().await?;
        route["handle"][0]["upstreams"] = json!([{"dial": format!("127.0.0.1:{port}")}]);
        let response = self.scene.http.patch(&url).json(&route).send().await?;
        ensure!(
            response.status().is_success(),
            "Caddy refused the route: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// (b): the stop-then-start script swaps the same two versions behind the same route.
    pub(super) async fn script_swaps(
        &self,
        images: &[(String, String); 2],
        swaps: usize,
        rate: f64,
    ) -> anyhow::Result<SwapRun> {
        let port = procs::free_port()?;
        let (first_version, first_image) = &images[0];
        ensure!(
            self.stop_start(first_image, port).await? == 0,
            "the script could not start {first_version}"
        );
        self.point_route_at(port).await?;
        self.wait_for_edge("site.test", first_version).await?;
        let swap_to = async |version: &str, image: &str| {
            let started = Instant::now();
            let code = self.stop_start(image, port).await?;
            ensure!(code == 0, "the script's deploy of {version} exited {code}");
            let seconds = started.elapsed().as_secs_f64();
            self.wait_for_edge("site.test", version).await?;
            Ok(seconds)
        };
        self.swaps_under_load("stop-then-start script", images, swaps, rate, swap_to)
            .await
    }
}

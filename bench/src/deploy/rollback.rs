//! An unhealthy version under load: how long after Wharf's `rolled_back` verdict the old version
//! serves every request again.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use super::scene::Bench;
use crate::edge_load::{Answer, Sample, Summary, before, wall_ms};
use crate::procs::time_from_rfc3339;

/// Requests the old version did not serve: they failed, or another version answered them.
/// (A request held up but then answered 200 by the old version was served by it, late.)
pub(super) fn not_served_by<'a>(
    samples: &'a [Sample],
    old: &'a str,
) -> impl Iterator<Item = &'a Sample> {
    samples
        .iter()
        .filter(move |sample| sample.answer != Answer::Ok(old.to_owned()))
}

/// A deploy of an unhealthy version under load, and what the load saw.
pub(super) struct Rollback {
    pub(super) old: String,
    /// The deploy request was sent, and the server recorded `rolled_back` (its `finished_at`).
    pub(super) deploy_sent_ms: f64,
    pub(super) verdict_ms: f64,
    pub(super) reason: String,
    pub(super) summary: Summary,
    /// Requests the old version did not serve, and of those, the ones another version served.
    pub(super) not_served: usize,
    pub(super) other_version: usize,
    /// When the first and the last request the old version did not serve were due.
    pub(super) not_served_span: Option<(f64, f64)>,
    /// Requests due after the verdict that were held more than [`HELD_MS`](crate::edge_load::HELD_MS).
    pub(super) held_after_verdict: usize,
    /// The requests due before the deploy was sent: the machine's own noise.
    pub(super) before: Summary,
    pub(super) samples: Vec<Sample>,
}

impl Rollback {
    pub(super) fn new(
        old: String,
        deploy_sent_ms: f64,
        release: &Value,
        samples: Vec<Sample>,
    ) -> anyhow::Result<Rollback> {
        let verdict_ms = release["finished_at"]
            .as_str()
            .and_then(time_from_rfc3339)
            .context("the rolled-back release has no finished_at")? as f64;
        let bad: Vec<&Sample> = not_served_by(&samples, &old).collect();
        let span = match (
            bad.iter().map(|s| s.due_ms).reduce(f64::min),
            bad.iter().map(|s| s.due_ms).reduce(f64::max),
        ) {
            (Some(first), Some(last)) => Some((first, last)),
            _ => None,
        };
        Ok(Rollback {
            deploy_sent_ms,
            verdict_ms,
            reason: release["reason"].as_str().unwrap_or_default().to_owned(),
            summary: Summary::of(&samples),
            not_served: bad.len(),
            other_version: bad
                .iter()
                .filter(|s| matches!(&s.answer, Answer::Ok(body) if *body != old))
                .count(),
            not_served_span: span,
            held_after_verdict: samples
                .iter()
                .filter(|s| s.due_ms >= verdict_ms && s.held())
                .count(),
            old,
            before: before(&samples, deploy_sent_ms),
            samples,
        })
    }

    /// From the verdict to the due time of the last request the old version did not serve
    /// (every later request it served); `None` when it served all of them. Negative: it served
    /// everything sent from before the verdict on.
    pub(super) fn verdict_to_restored_ms(&self) -> Option<f64> {
        self.not_served_span.map(|(_, last)| last - self.verdict_ms)
    }

    /// The goal: within 1 s of the verdict every request is served by the old version.
    pub(super) fn goal_met(&self) -> bool {
        self.verdict_to_restored_ms().is_none_or(|ms| ms < 1000.0)
    }
}

impl Bench {
    /// Deploys the unhealthy image to `service` under load and measures the way back.
    pub(super) async fn unhealthy(
        &self,
        service: &str,
        host: &str,
        sick_image: &str,
        rate: f64,
    ) -> anyhow::Result<Rollback> {
        let old = match self.edge_answer(host).await {
            Answer::Ok(body) => body,
            other => bail!("{host} does not answer before the unhealthy deploy: {other:?}"),
        };
        let load = self.start_load(host, rate);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sent = wall_ms();
        let id = self.deploy(service, sick_image).await?;
        let release = self.wait_settled(id).await?;
        ensure!(
            release["state"] == "rolled_back",
            "the unhealthy release was not rolled back: {release}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let samples = load.finish().await;
        Rollback::new(old, sent, &release, samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge_load::tests::sample;
    use serde_json::json;

    #[test]
    fn the_way_back_is_measured_from_the_verdict() {
        let release = json!({"finished_at": "1970-01-01T00:00:01.000Z", "reason": "404"});
        let samples = vec![
            sample(900.0, 901.0, Answer::Ok("A".to_owned())),
            sample(950.0, 2300.0, Answer::Ok("A".to_owned())),
            sample(1500.0, 11500.0, Answer::Failed("timeout".to_owned())),
            sample(2400.0, 2401.0, Answer::Ok("A".to_owned())),
        ];
        let failed = Rollback::new("A".to_owned(), 0.0, &release, samples).unwrap();
        assert_eq!(failed.not_served, 1);
        assert_eq!(failed.held_after_verdict, 0);
        assert_eq!(failed.verdict_to_restored_ms(), Some(500.0));
        assert!(failed.goal_met());
        let held = vec![sample(950.0, 2300.0, Answer::Ok("A".to_owned()))];
        let held = Rollback::new("A".to_owned(), 0.0, &release, held).unwrap();
        assert_eq!(held.verdict_to_restored_ms(), None);
        let clean = vec![sample(900.0, 901.0, Answer::Ok("A".to_owned()))];
        let clean = Rollback::new("A".to_owned(), 0.0, &release, clean).unwrap();
        assert_eq!(clean.verdict_to_restored_ms(), None);
        assert!(clean.goal_met());
        let late = vec![sample(2000.0, 2001.0, Answer::Ok("C".to_owned()))];
        let late = Rollback::new("A".to_owned(), 0.0, &release, late).unwrap();
        assert_eq!(late.other_version, 1);
        assert!(!late.goal_met());
    }
}

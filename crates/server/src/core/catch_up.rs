//! Catching up what GitHub could not tell Wharf while it was down. GitHub never sends a failed
//! webhook again by itself, so on start and every `github_catch_up_interval` one server replica
//! (the one that takes the schedule in the store) makes a pass:
//!
//! 1. it lists the App's webhook deliveries since its last good pass (or as far back as GitHub
//!    keeps them) and asks GitHub to deliver again each event Wharf reads whose attempts all
//!    failed and that Wharf neither stored nor asked for before (each is asked for once: the
//!    store remembers);
//! 2. for outages longer than GitHub keeps deliveries, it compares the head of each branch a
//!    service follows with the service's newest build and queues the head when it differs. A
//!    repository with a push asked for again in this pass waits for the next pass, so that the
//!    head is never queued before a push the redelivery brings.
//!
//! 3. it lists the open pull requests of each repository with previews, and removes the
//!    previews of pull requests closed meanwhile.
//!
//! Both meet the same rule in the store as every push: a commit that is already the service's
//! newest build queues nothing, so a redelivery that arrives after its branch's head was queued
//! builds nothing more.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use tokio::sync::watch;
use wharf_domain::names::{CommitSha, RepoSource};
use wharf_github::{GithubApp, WebhookDelivery};
use wharf_store::BranchHead;

use crate::core::jobs::stopped;
use crate::core::{Core, CoreError, now_millis};

/// The schedule's name in the store.
const SCHEDULE: &str = "github_catch_up";
/// How long GitHub keeps webhook deliveries.
const GITHUB_KEEPS_DELIVERIES: Duration = Duration::from_secs(3 * 24 * 3600);
/// How far before the last good pass the next one looks again, for deliveries GitHub recorded
/// late (an attempt is dated when it began, and may take a while to fail).
const LOOK_BACK: Duration = Duration::from_secs(15 * 60);
/// The events Wharf reads; a failed delivery of any other is not worth asking for again.
const EVENTS_READ: [&str; 5] = [
    "ping",
    "push",
    "pull_request",
    "installation",
    "installation_repositories",
];

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct CatchUp {
    /// The deliveries asked for again, by their delivery ids.
    pub redelivered: Vec<String>,
    /// The branch heads queued: (service, commit, build id).
    pub heads_queued: Vec<(String, String, i64)>,
    /// The previews removed because their pull request was closed: (service, number).
    pub previews_removed: Vec<(String, i64)>,
}

/// Runs a pass at start and every `github_catch_up_interval` while a GitHub App is configured,
/// until shutdown.
pub(crate) async fn run(core: Core, mut shutdown: watch::Receiver<bool>) {
    let Some(app) = core.wait_for_github_app(&mut shutdown).await else {
        return;
    };
    let interval = core.config.github_catch_up_interval;
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Err(error) = core.catch_up(&app).await {
                    tracing::warn!(%error, "catching up missed webhooks failed; the next pass tries again");
                }
            }
            _ = stopped(&mut shutdown) => return,
        }
    }
}

impl Core {
    /// One pass, when this replica takes the schedule's turn; `None` when another has it.
    pub(crate) async fn catch_up(&self, app: &GithubApp) -> Result<Option<CatchUp>, CoreError> {
        let began_at = now_millis();
        let interval = millis(self.config.github_catch_up_interval);
        let Some(last_good) = self
            .store
            .take_schedule(SCHEDULE, began_at + interval, began_at)
            .await?
        else {
            tracing::debug!("catch-up pass skipped: another server replica has this turn");
            return Ok(None);
        };
        let keeps = began_at - millis(GITHUB_KEEPS_DELIVERIES);
        let since = last_good.map_or(keeps, |last| (last - millis(LOOK_BACK)).max(keeps));
        let mut done = CatchUp::default();
        let pushed_repositories = self.redeliver_failed(app, since, &mut done).await?;
        self.queue_branch_heads(app, &pushed_repositories, &mut done)
            .await?;
        self.remove_closed_previews(app, &mut done).await?;
        let forgotten = self
            .store
            .forget_redeliveries(keeps - millis(GITHUB_KEEPS_DELIVERIES))
            .await?;
        if forgotten > 0 {
            tracing::debug!(forgotten, "redeliveries GitHub no longer keeps forgotten");
        }
        self.store.finish_schedule(SCHEDULE, began_at).await?;
        self.metrics.count_catch_up(&done);
        tracing::debug!(
            redelivered = done.redelivered.len(),
            heads_queued = done.heads_queued.len(),
            "catch-up pass done"
        );
        Ok(Some(done))
    }

    /// Asks GitHub to deliver again the events whose attempts since `since` (ms) all failed and
    /// that Wharf never stored nor asked for; answers the repositories of the pushes among them.
    async fn redeliver_failed(
        &self,
        app: &GithubApp,
        since: i64,
        done: &mut CatchUp,
    ) -> Result<BTreeSet<u64>, CoreError> {
        let deliveries = app
            .webhook_deliveries(since / 1000)
            .await
            .map_err(|error| CoreError::Upstream(error.to_string()))?;
        let failed = failed_events(&deliveries);
        let guids: Vec<String> = failed.iter().map(|attempt| attempt.guid.clone()).collect();
        let unknown: BTreeSet<String> = self
            .store
            .unknown_deliveries(&guids)
            .await?
            .into_iter()
            .collect();
        let mut pushed = BTreeSet::new();
        for attempt in failed
            .into_iter()
            .filter(|attempt| unknown.contains(&attempt.guid))
        {
            if let Err(error) = app.redeliver(attempt.id).await {
                // Not remembered: the next pass asks again.
                tracing::warn!(delivery = %attempt.guid, %error, "asking GitHub to deliver a missed webhook again failed");
                continue;
            }
            self.store
                .record_redelivery(&attempt.guid, attempt.id as i64, now_millis())
                .await?;
            tracing::info!(
                delivery = %attempt.guid,
                event = %attempt.event,
                failed_with = attempt.status_code,
                "caught up a missed webhook: asked GitHub to deliver it again"
            );
            if attempt.event == "push"
                && let Some(repository) = attempt.repository_id
            {
                pushed.insert(repository);
            }
            done.redelivered.push(attempt.guid.clone());
        }
        Ok(pushed)
    }

    /// Removes the previews whose pull request GitHub no longer lists as open: their close
    /// event never reached Wharf. GitHub lists pull requests by pages, so one closed while the
    /// pages are read can shift another off the list; a preview goes only when its pull request
    /// is missing from two listings in a row.
    async fn remove_closed_previews(
        &self,
        app: &GithubApp,
        done: &mut CatchUp,
    ) -> Result<(), CoreError> {
        let previews = self.store.previews_not_removed().await?;
        let mut repositories: BTreeMap<(i64, String), Vec<_>> = BTreeMap::new();
        for preview in previews {
            if let (Some(installation), Ok(RepoSource::GitHub(_))) =
                (preview.installation_id, RepoSource::parse(&preview.repo))
            {
                repositories
                    .entry((installation, preview.repo.clone()))
                    .or_default()
                    .push(preview);
            }
        }
        for ((installation, repo), previews) in repositories {
            let Ok(RepoSource::GitHub(name)) = RepoSource::parse(&repo) else {
                continue;
            };
            let list = || app.open_pull_requests(installation as u64, name.owner(), name.name());
            let mut closed: Vec<_> = match list().await {
                Ok(open) => previews
                    .into_iter()
                    .filter(|preview| !open.contains(&(preview.number as u64)))
                    .collect(),
                Err(error) => {
                    tracing::warn!(repository = %repo, %error, "cannot list the open pull requests; their previews wait for the next pass");
                    continue;
                }
            };
            if closed.is_empty() {
                continue;
            }
            match list().await {
                Ok(open) => closed.retain(|preview| !open.contains(&(preview.number as u64))),
                Err(error) => {
                    tracing::warn!(repository = %repo, %error, "cannot list the open pull requests again; their previews wait for the next pass");
                    continue;
                }
            }
            for preview in closed {
                let service = self.store.service_by_id(preview.service_id).await?;
                self.take_preview_down(
                    &service,
                    preview.number,
                    "the pull request is closed (its close event never reached Wharf)",
                )
                .await?;
                tracing::info!(service = %service.name, pr = preview.number, "caught up a closed pull request: its preview is removed");
                done.previews_removed.push((service.name, preview.number));
            }
        }
        Ok(())
    }

    /// Queues the head of each branch a service follows when it is not the service's newest
    /// build, except in `waiting` repositories (a redelivered push is on its way).
    async fn queue_branch_heads(
        &self,
        app: &GithubApp,
        waiting: &BTreeSet<u64>,
        done: &mut CatchUp,
    ) -> Result<(), CoreError> {
        let tracked = self.store.tracked_branches().await?;
        let mut heads: HashMap<(i64, String, String), Option<String>> = HashMap::new();
        for branch in tracked {
            if waiting.contains(&(branch.repository_id as u64)) {
                continue;
            }
            let key = (
                branch.installation_id,
                branch.repo_full_name.to_ascii_lowercase(),
                branch.branch.clone(),
            );
            let head = match heads.get(&key) {
                Some(head) => head.clone(),
                None => {
                    let head = self.branch_head_now(app, &branch).await;
                    heads.insert(key, head.clone());
                    head
                }
            };
            let Some(head) = head else { continue };
            if head == branch.newest_commit {
                continue;
            }
            let queued = self
                .store
                .queue_branch_head(
                    &BranchHead {
                        service_id: branch.service_id,
                        branch: branch.branch.clone(),
                        commit_sha: head.clone(),
                        installation_id: branch.installation_id,
                        max_attempts: self.config.max_attempts,
                    },
                    now_millis(),
                )
                .await?;
            if let Some(build) = queued {
                tracing::info!(
                    build,
                    service = %branch.service,
                    branch = %branch.branch,
                    commit = %head,
                    "caught up a missed push: queued the branch's head"
                );
                self.signals.queue.notify();
                self.signals.states.notify();
                done.heads_queued
                    .push((branch.service.clone(), head, build));
            }
        }
        Ok(())
    }

    /// The commit a tracked branch points at, or `None` (logged) when GitHub cannot say.
    async fn branch_head_now(
        &self,
        app: &GithubApp,
        branch: &wharf_store::TrackedBranch,
    ) -> Option<String> {
        let (owner, name) = branch.repo_full_name.split_once('/')?;
        match app
            .branch_head(branch.installation_id as u64, owner, name, &branch.branch)
            .await
        {
            Ok(sha) => match CommitSha::parse(&sha) {
                Ok(sha) => Some(sha.to_string()),
                Err(error) => {
                    tracing::warn!(service = %branch.service, %error, "GitHub named a branch head that is no commit");
                    None
                }
            },
            Err(error) if error.status() == Some(404) => {
                tracing::debug!(service = %branch.service, branch = %branch.branch, "the branch is gone: nothing to catch up");
                None
            }
            Err(error) => {
                tracing::warn!(service = %branch.service, %error, "reading a branch head to catch up failed");
                None
            }
        }
    }
}

/// Of GitHub's attempts, the newest failed one of each event Wharf reads that has no attempt
/// that succeeded, oldest event first.
fn failed_events(deliveries: &[WebhookDelivery]) -> Vec<WebhookDelivery> {
    let mut events: BTreeMap<&str, (bool, Option<&WebhookDelivery>, u64)> = BTreeMap::new();
    for attempt in deliveries {
        let entry = events
            .entry(attempt.guid.as_str())
            .or_insert((false, None, u64::MAX));
        entry.0 |= attempt.succeeded();
        entry.2 = entry.2.min(attempt.id);
        if !attempt.succeeded() && entry.1.is_none_or(|newest| newest.id < attempt.id) {
            entry.1 = Some(attempt);
        }
    }
    let mut failed: Vec<(u64, WebhookDelivery)> = events
        .into_values()
        .filter_map(|(succeeded, newest_failed, first)| {
            let attempt = newest_failed.filter(|_| !succeeded)?;
            EVENTS_READ
                .contains(&attempt.event.as_str())
                .then(|| (first, attempt.clone()))
        })
        .collect();
    failed.sort_by_key(|(first, _)| *first);
    failed.into_iter().map(|(_, attempt)| attempt).collect()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(id: u64, guid: &str, event: &str, status_code: i64) -> WebhookDelivery {
        WebhookDelivery {
            id,
            guid: guid.to_owned(),
            delivered_at: 0,
            redelivery: false,
            status_code,
            event: event.to_owned(),
            action: None,
            installation_id: Some(42),
            repository_id: Some(7),
        }
    }

    #[test]
    fn asks_again_once_per_event_whose_attempts_all_failed_oldest_first() {
        // Newest first, as GitHub lists them.
        let deliveries = [
            attempt(6, "c", "push", 0),
            attempt(5, "b", "push", 202),
            attempt(4, "a", "push", 502),
            attempt(3, "b", "push", 0),
            attempt(2, "x", "issues", 0),
            attempt(1, "a", "push", 0),
        ];
        let failed: Vec<(u64, String)> = failed_events(&deliveries)
            .into_iter()
            .map(|attempt| (attempt.id, attempt.guid))
            .collect();
        // "a" failed twice: its newest attempt is asked for, in the place of its first; "b"
        // got through on its second attempt; "issues" is no event Wharf reads.
        assert_eq!(failed, vec![(4, "a".to_owned()), (6, "c".to_owned())]);
    }
}

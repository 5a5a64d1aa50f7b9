//! Webhook deliveries from GitHub, once their signature was checked: what each event Wharf
//! reads does (builds to queue, installations and repositories to record, previews of pull
//! requests to build or remove), stored with the delivery in one transaction.
//!
//! Group commit: concurrent deliveries are stored together, one transaction (one write to disk)
//! for as many as are waiting, and each caller gets its answer only after its batch is
//! committed. A 2xx therefore still means "stored durably", at a fraction of the cost of one
//! transaction per delivery.

use tokio::sync::{mpsc, oneshot};
use wharf_domain::webhook::{
    InstallationAction, InstallationEvent, InstallationRepositoriesEvent, PullRequestEvent,
    PushEvent, PushTarget, WebhookEvent, WebhookRepository,
};
use wharf_store::{
    DeliveryEffect, DeliveryOutcome, InstallationChange, NewDelivery, PullRequestChange, Store,
    StoreError,
};

use crate::core::{Core, CoreError, now_millis};

impl Core {
    /// Stores the delivery `delivery_id` of `event` (its raw `body` kept) with its effects, and
    /// wakes the agents when it queued builds. An event Wharf does not use is not stored:
    /// `None`.
    pub async fn record_delivery(
        &self,
        delivery_id: &str,
        event: &WebhookEvent,
        body: &[u8],
    ) -> Result<Option<DeliveryOutcome>, CoreError> {
        let max_attempts = self.config.max_attempts;
        let effect = match event {
            WebhookEvent::Ignored(_) => return Ok(None),
            WebhookEvent::Ping => DeliveryEffect::Nothing {
                outcome: "pong".to_owned(),
            },
            WebhookEvent::Push(push) => push_effect(push, max_attempts),
            WebhookEvent::PullRequest(pull_request) => {
                pull_request_effect(pull_request, max_attempts)
            }
            WebhookEvent::Installation(installation) => installation_effect(installation),
            WebhookEvent::InstallationRepositories(change) => repositories_effect(change),
        };
        // Known by what it did (a push of a branch) or by its signed body (everything else),
        // so a delivery replayed under a new id is a duplicate.
        let dedupe_key = Some(event.dedupe_key(body));
        // The body parsed as JSON, so it is UTF-8; this cannot fail, but is checked rather than
        // assumed.
        let text = std::str::from_utf8(body)
            .map_err(|_| CoreError::Invalid("the body is not UTF-8".to_owned()))?;
        let delivery = NewDelivery {
            id: delivery_id.to_owned(),
            event: event.name().to_owned(),
            action: event.action().map(str::to_owned),
            dedupe_key,
            body: text.to_owned(),
        };
        let outcome = self.deliveries.record(delivery, effect).await?;
        if let DeliveryOutcome::Recorded {
            outcome,
            build_ids,
            releases_due,
        } = &outcome
        {
            if !build_ids.is_empty() {
                self.signals.queue.notify();
                self.signals.states.notify();
            }
            if *releases_due {
                self.signals.releases.notify();
                self.signals.states.notify();
            }
            tracing::info!(delivery = delivery_id, event = event.name(), %outcome, "webhook delivery stored");
        }
        Ok(Some(outcome))
    }
}

/// The most earlier deliveries keyed again in one transaction.
const REKEY_BATCH: i64 = 500;

impl Core {
    /// Gives the deliveries an earlier Wharf stored the keys of today, derived from their
    /// stored bodies as [`Core::record_delivery`] derives them, in batches until none is left;
    /// answers how many. A body that no longer parses keeps its delivery's key as it was.
    pub(crate) async fn rekey_earlier_deliveries(&self) -> Result<usize, StoreError> {
        let mut rekeyed = 0;
        loop {
            let batch = self.store.earlier_deliveries(REKEY_BATCH).await?;
            let keys: Vec<(String, Option<String>)> = batch
                .iter()
                .map(|delivery| {
                    let body = delivery.body.as_bytes();
                    let key = WebhookEvent::parse(&delivery.event, body)
                        .ok()
                        .filter(|event| !matches!(event, WebhookEvent::Ignored(_)))
                        .map(|event| event.dedupe_key(body));
                    (delivery.id.clone(), key)
                })
                .collect();
            self.store.rekey_deliveries(&keys).await?;
            rekeyed += keys.len();
            if keys.len() < REKEY_BATCH as usize {
                return Ok(rekeyed);
            }
        }
    }
}

/// The most deliveries one transaction takes.
const MAX_BATCH: usize = 256;

struct Job {
    delivery: NewDelivery,
    effect: DeliveryEffect,
    reply: oneshot::Sender<Result<DeliveryOutcome, StoreError>>,
}

/// Hands deliveries to the writer task.
#[derive(Clone)]
pub(crate) struct DeliveryWriter {
    sender: mpsc::Sender<Job>,
}

impl DeliveryWriter {
    /// Starts the writer task; it ends when the last `DeliveryWriter` is dropped.
    pub fn start(store: Store) -> DeliveryWriter {
        let (sender, receiver) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_batches(store, receiver));
        DeliveryWriter { sender }
    }

    /// Stores a delivery with its effect; returns once it is committed.
    pub async fn record(
        &self,
        delivery: NewDelivery,
        effect: DeliveryEffect,
    ) -> Result<DeliveryOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            delivery,
            effect,
            reply,
        };
        self.sender
            .send(job)
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn write_batches(store: Store, mut receiver: mpsc::Receiver<Job>) {
    while let Some(first) = receiver.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let (items, replies): (Vec<_>, Vec<_>) = jobs
            .into_iter()
            .map(|job| ((job.delivery, job.effect), job.reply))
            .unzip();
        match store.record_deliveries(&items, now_millis()).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) if items.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(error));
                }
            }
            Err(error) => {
                // One bad delivery must not fail the others: store them one by one.
                tracing::warn!(%error, batch = items.len(), "batch failed; storing its deliveries one by one");
                for ((delivery, effect), reply) in items.iter().zip(replies) {
                    let outcome = store.record_delivery(delivery, effect, now_millis()).await;
                    let _ = reply.send(outcome);
                }
            }
        }
    }
}

fn push_effect(push: &PushEvent, max_attempts: i64) -> DeliveryEffect {
    match &push.target {
        PushTarget::Branch { branch, after } => DeliveryEffect::QueueBuilds {
            repo_key: push.repository.full_name.key(),
            repo_full_name: push.repository.full_name.to_string(),
            repository_id: i64::try_from(push.repository.id).unwrap_or(i64::MAX),
            branch: branch.to_string(),
            commit_sha: after.to_string(),
            installation_id: push.installation_id.and_then(|id| i64::try_from(id).ok()),
            max_attempts,
        },
        PushTarget::BranchDeleted { branch } => DeliveryEffect::Nothing {
            outcome: format!("branch {branch} was deleted: nothing to build"),
        },
        PushTarget::OtherRef => DeliveryEffect::Nothing {
            outcome: format!("{} is not a branch: nothing to build", push.git_ref),
        },
    }
}

/// A pull request's event acts on the previews of the services tracking its base branch.
fn pull_request_effect(event: &PullRequestEvent, max_attempts: i64) -> DeliveryEffect {
    DeliveryEffect::PullRequest(PullRequestChange {
        repo_key: event.repository.full_name.key(),
        repository_id: i64::try_from(event.repository.id).unwrap_or(i64::MAX),
        repo_full_name: event.repository.full_name.to_string(),
        base_branch: event.base_branch.clone(),
        number: i64::try_from(event.number).unwrap_or(i64::MAX),
        action: event.action.clone(),
        head_sha: event.head_sha.to_string(),
        head_branch: event.head_branch.clone(),
        from_fork: event.from_fork,
        author_association: event.author_association.clone(),
        draft: event.draft,
        label: event.label.clone(),
        sender: event.sender.clone(),
        installation_id: event.installation_id.and_then(|id| i64::try_from(id).ok()),
        max_attempts,
    })
}

fn repository_row(repository: &WebhookRepository) -> (i64, String, bool) {
    (
        i64::try_from(repository.id).unwrap_or(i64::MAX),
        repository.full_name.to_string(),
        repository.private,
    )
}

fn installation_effect(event: &InstallationEvent) -> DeliveryEffect {
    let mut change = InstallationChange {
        installation_id: i64::try_from(event.installation_id).unwrap_or(i64::MAX),
        account_login: event.account.login.clone(),
        account_type: event.account.kind.clone(),
        outcome: format!(
            "installation {} for {}: {}",
            event.installation_id,
            event.account.login,
            event.action.as_str()
        ),
        ..InstallationChange::default()
    };
    match event.action {
        InstallationAction::Created => {
            change.suspended = Some(false);
            change.add_repositories = event.repositories.iter().map(repository_row).collect();
        }
        InstallationAction::Deleted => change.deleted = true,
        InstallationAction::Suspend => change.suspended = Some(true),
        InstallationAction::Unsuspend => change.suspended = Some(false),
        InstallationAction::NewPermissionsAccepted | InstallationAction::Other => {}
    }
    DeliveryEffect::Installation(change)
}

fn repositories_effect(event: &InstallationRepositoriesEvent) -> DeliveryEffect {
    DeliveryEffect::Installation(InstallationChange {
        installation_id: i64::try_from(event.installation_id).unwrap_or(i64::MAX),
        account_login: event.account.login.clone(),
        account_type: event.account.kind.clone(),
        add_repositories: event.added.iter().map(repository_row).collect(),
        remove_repositories: event
            .removed
            .iter()
            .map(|repository| i64::try_from(repository.id).unwrap_or(i64::MAX))
            .collect(),
        outcome: format!(
            "installation {}: {} repositories added, {} removed",
            event.installation_id,
            event.added.len(),
            event.removed.len()
        ),
        ..InstallationChange::default()
    })
}

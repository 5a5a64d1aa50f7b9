//! Group commit for webhook deliveries: concurrent deliveries are stored together, one
//! transaction (one write to disk) for as many as are waiting, and each request is answered only
//! after its batch is committed. A 2xx therefore still means "stored durably", at a fraction of
//! the cost of one transaction per delivery.

use tokio::sync::{mpsc, oneshot};
use wharf_store::{DeliveryEffect, DeliveryOutcome, NewDelivery, Store, StoreError};

use crate::core::now_millis;

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

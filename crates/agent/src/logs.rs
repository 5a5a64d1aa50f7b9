//! Shipping a log to the server while its work runs (a build's output, or a rollout's deploy
//! log): lines are batched (up to 500, or every 200 ms), secrets are masked before they leave
//! the agent, and memory stays bounded whatever a build prints: the channel is bounded (a slow
//! server slows the build's output), and once the server says the log is full, lines are
//! dropped here instead of sent.

use std::time::Duration;

use tokio::sync::mpsc;
use wharf_client::ApiClient;
use wharf_runtime::process::{OutputLine, Stream};
use wharf_wire::{AppendLogs, AppendLogsAnswer, AppendRolloutLogs, LogStream, NewLogLine};

use crate::masking::mask;

const BATCH_LINES: usize = 500;
const BATCH_DELAY: Duration = Duration::from_millis(200);

/// Whose log lines are shipped to.
#[derive(Debug, Clone, Copy)]
pub enum LogTarget {
    /// A build's log, while the agent holds the build.
    Build(i64),
    /// The deploy log of a rollout's release, while the agent runs the rollout.
    Rollout(i64),
}

impl LogTarget {
    async fn send(
        self,
        client: &ApiClient,
        lines: Vec<NewLogLine>,
    ) -> Result<AppendLogsAnswer, wharf_client::ClientError> {
        match self {
            LogTarget::Build(id) => client.send(&AppendLogs { id, lines }).await,
            LogTarget::Rollout(id) => client.send(&AppendRolloutLogs { id, lines }).await,
        }
    }
}

/// The sending side of a log.
pub struct LogShipper {
    sender: mpsc::Sender<OutputLine>,
    task: tokio::task::JoinHandle<()>,
}

impl LogShipper {
    /// Starts shipping lines to `target`; every value in `secrets` is masked.
    pub fn start(client: ApiClient, target: LogTarget, secrets: Vec<String>) -> LogShipper {
        let (sender, receiver) = mpsc::channel(1024);
        let task = tokio::spawn(ship(client, target, secrets, receiver));
        LogShipper { sender, task }
    }

    /// Where a running command's lines go.
    pub fn sender(&self) -> &mpsc::Sender<OutputLine> {
        &self.sender
    }

    /// Adds a line of Wharf's own.
    pub async fn note(&self, text: impl Into<String>) {
        let _ = self
            .sender
            .send(OutputLine {
                stream: Stream::Note,
                text: text.into(),
            })
            .await;
    }

    /// Sends what is left and waits until it is stored.
    pub async fn finish(self) {
        drop(self.sender);
        let _ = self.task.await;
    }
}

async fn ship(
    client: ApiClient,
    target: LogTarget,
    secrets: Vec<String>,
    mut receiver: mpsc::Receiver<OutputLine>,
) {
    let mut full = false;
    let mut batch: Vec<NewLogLine> = Vec::with_capacity(BATCH_LINES);
    loop {
        let first = receiver.recv().await;
        let Some(first) = first else { break };
        push(&mut batch, first, &secrets, full);
        let deadline = tokio::time::Instant::now() + BATCH_DELAY;
        while batch.len() < BATCH_LINES {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(line)) => push(&mut batch, line, &secrets, full),
                Ok(None) | Err(_) => break,
            }
        }
        if !batch.is_empty() {
            match target.send(&client, std::mem::take(&mut batch)).await {
                Ok(answer) => full = answer.truncated,
                Err(error) => {
                    tracing::warn!(?target, %error, "could not ship log lines");
                }
            }
        }
    }
    if !batch.is_empty() && !full {
        let _ = target.send(&client, batch).await;
    }
}

fn push(batch: &mut Vec<NewLogLine>, line: OutputLine, secrets: &[String], full: bool) {
    if full {
        return;
    }
    let stream = match line.stream {
        Stream::Stdout => LogStream::Stdout,
        Stream::Stderr => LogStream::Stderr,
        Stream::Note => LogStream::Wharf,
    };
    batch.push(NewLogLine {
        stream,
        text: mask(&line.text, secrets),
    });
}

//! Shipping a build's output to the server while it runs: lines are batched (up to 500, or
//! every 200 ms), secrets are masked before they leave the agent, and memory stays bounded
//! whatever a build prints: the channel is bounded (a slow server slows the build's output),
//! and once the server says the log is full, lines are dropped here instead of sent.

use std::time::Duration;

use tokio::sync::mpsc;
use wharf_client::ApiClient;
use wharf_runtime::process::{OutputLine, Stream};
use wharf_wire::{AppendLogs, LogStream, NewLogLine};

use crate::masking::mask;

const BATCH_LINES: usize = 500;
const BATCH_DELAY: Duration = Duration::from_millis(200);

/// The sending side of a build's log.
pub struct LogShipper {
    sender: mpsc::Sender<OutputLine>,
    task: tokio::task::JoinHandle<()>,
}

impl LogShipper {
    /// Starts shipping lines of build `build_id`; every value in `secrets` is masked.
    pub fn start(client: ApiClient, build_id: i64, secrets: Vec<String>) -> LogShipper {
        let (sender, receiver) = mpsc::channel(1024);
        let task = tokio::spawn(ship(client, build_id, secrets, receiver));
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
    build_id: i64,
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
            let request = AppendLogs {
                id: build_id,
                lines: std::mem::take(&mut batch),
            };
            match client.send(&request).await {
                Ok(answer) => full = answer.truncated,
                Err(error) => {
                    tracing::warn!(build = build_id, %error, "could not ship log lines");
                }
            }
        }
    }
    if !batch.is_empty() && !full {
        let _ = client
            .send(&AppendLogs {
                id: build_id,
                lines: batch,
            })
            .await;
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

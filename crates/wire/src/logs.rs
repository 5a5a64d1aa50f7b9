//! Logs: the lines an agent appends to a build's log or a release's deploy log, and the pages a
//! reader follows.

use serde::{Deserialize, Serialize};

use crate::api::api_request;
use crate::{BuildState, ReleaseState};

/// Which output a log line came from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Wharf's own notes: which step runs, what it runs, how it ended.
    Wharf,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Wharf => "wharf",
        }
    }

    pub fn parse(name: &str) -> Option<LogStream> {
        [LogStream::Stdout, LogStream::Stderr, LogStream::Wharf]
            .into_iter()
            .find(|stream| stream.as_str() == name)
    }
}

/// A line an agent sends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct NewLogLine {
    pub stream: LogStream,
    pub text: String,
}

/// `POST /v1/agent/builds/{id}/logs`: the leasing agent appends lines, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct AppendLogs {
    #[serde(skip)]
    pub id: i64,
    pub lines: Vec<NewLogLine>,
}

/// The answer to [`AppendLogs`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct AppendLogsAnswer {
    /// True once the build's log reached its size limit: further lines are dropped.
    pub truncated: bool,
}

api_request!(AppendLogs: Post "/v1/agent/builds/{}/logs" [id] -> AppendLogsAnswer);

/// `POST /v1/agent/rollouts/{id}/logs`: the agent running a rollout appends lines to its
/// release's deploy log, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct AppendRolloutLogs {
    #[serde(skip)]
    pub id: i64,
    pub lines: Vec<NewLogLine>,
}

api_request!(AppendRolloutLogs: Post "/v1/agent/rollouts/{}/logs" [id] -> AppendLogsAnswer);

/// A stored log line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct LogLine {
    /// 1, 2, 3… within the build or release.
    pub seq: i64,
    pub stream: LogStream,
    pub text: String,
    pub at: String,
    /// In a release's deploy log, the host (agent) that wrote the line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// `GET /v1/builds/{id}/logs?after=SEQ`: the lines after `after`, and whether more can come.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct GetLogs {
    #[serde(skip)]
    pub id: i64,
    #[serde(skip)]
    pub after: i64,
    /// How long the server may wait for a new line while the build runs.
    #[serde(skip)]
    pub wait_ms: u64,
}

/// The answer to [`GetLogs`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct BuildLogs {
    pub lines: Vec<LogLine>,
    pub state: BuildState,
    /// True when the build has finished and every stored line is in this answer or before it.
    pub complete: bool,
    pub truncated: bool,
}

api_request!(
    GetLogs: Get "/v1/builds/{}/logs?after={}&wait_ms={}" [id, after, wait_ms] -> BuildLogs
);

/// `GET /v1/releases/{id}/logs?after=SEQ`: the release's deploy log after `after`, every host's
/// lines in the order the server took them, and whether more can come.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct GetReleaseLogs {
    #[serde(skip)]
    pub id: i64,
    #[serde(skip)]
    pub after: i64,
    /// How long the server may wait for a new line while the release rolls out.
    #[serde(skip)]
    pub wait_ms: u64,
}

/// The answer to [`GetReleaseLogs`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ReleaseLogs {
    pub lines: Vec<LogLine>,
    pub state: ReleaseState,
    /// True when the release and each of its rollouts have settled and every stored line is in
    /// this answer or before it.
    pub complete: bool,
    pub truncated: bool,
}

api_request!(
    GetReleaseLogs: Get "/v1/releases/{}/logs?after={}&wait_ms={}" [id, after, wait_ms] -> ReleaseLogs
);

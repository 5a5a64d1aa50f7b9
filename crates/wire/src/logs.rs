//! Build logs: the lines an agent appends and the pages a reader follows.

use serde::{Deserialize, Serialize};

use crate::BuildState;
use crate::api::api_request;

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

/// A stored log line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct LogLine {
    /// 1, 2, 3… within the build.
    pub seq: i64,
    pub stream: LogStream,
    pub text: String,
    pub at: String,
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

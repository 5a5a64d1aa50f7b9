//! Notifications: the sinks Wharf tells when something happens (a generic webhook, Slack,
//! Discord, email), the events it tells them of, and each message's deliveries.

use serde::{Deserialize, Serialize};

use crate::SecretText;
use crate::api::api_request;

/// What a notification tells of.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub enum NotificationEvent {
    /// A build failed.
    #[serde(rename = "build.failed")]
    BuildFailed,
    /// A release went live on every host.
    #[serde(rename = "release.live")]
    ReleaseLive,
    /// A release's image could not be pulled, or no host could take it.
    #[serde(rename = "release.failed")]
    ReleaseFailed,
    /// A release's new version was unhealthy and the old one kept serving.
    #[serde(rename = "release.rolled_back")]
    ReleaseRolledBack,
    /// A build or rollout whose agent has not been heard from for a lease.
    #[serde(rename = "rollout.stuck")]
    RolloutStuck,
    /// An agent has not been heard from for a lease.
    #[serde(rename = "agent.offline")]
    AgentOffline,
    /// An agent reported offline is heard from again.
    #[serde(rename = "agent.online")]
    AgentOnline,
    /// A test message, sent to one sink on request.
    #[serde(rename = "test")]
    Test,
    /// A build's deployment and check on GitHub, kept in step with the build and its release:
    /// what the built-in `github` sink carries, and only it (not in [`NotificationEvent::ALL`]).
    #[serde(rename = "deployment")]
    Deployment,
}

impl NotificationEvent {
    /// The events a sink may ask for.
    pub const ALL: [NotificationEvent; 8] = [
        NotificationEvent::BuildFailed,
        NotificationEvent::ReleaseLive,
        NotificationEvent::ReleaseFailed,
        NotificationEvent::ReleaseRolledBack,
        NotificationEvent::RolloutStuck,
        NotificationEvent::AgentOffline,
        NotificationEvent::AgentOnline,
        NotificationEvent::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationEvent::BuildFailed => "build.failed",
            NotificationEvent::ReleaseLive => "release.live",
            NotificationEvent::ReleaseFailed => "release.failed",
            NotificationEvent::ReleaseRolledBack => "release.rolled_back",
            NotificationEvent::RolloutStuck => "rollout.stuck",
            NotificationEvent::AgentOffline => "agent.offline",
            NotificationEvent::AgentOnline => "agent.online",
            NotificationEvent::Test => "test",
            NotificationEvent::Deployment => "deployment",
        }
    }

    pub fn parse(name: &str) -> Option<NotificationEvent> {
        NotificationEvent::ALL
            .into_iter()
            .find(|event| event.as_str() == name)
    }

    /// Whether the event is a failed outcome of a service's build or release.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            NotificationEvent::BuildFailed
                | NotificationEvent::ReleaseFailed
                | NotificationEvent::ReleaseRolledBack
        )
    }
}

impl std::fmt::Display for NotificationEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a sink's messages go, and in which format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// Wharf's own JSON body, signed with the sink's secret.
    Webhook,
    /// A Slack incoming webhook.
    Slack,
    /// A Discord webhook.
    Discord,
    /// Email, sent through an SMTP server with STARTTLS.
    Email,
    /// GitHub: each build's deployment with its statuses, and the check on its commit. Built in
    /// as the sink named `github` while a GitHub App is configured; it cannot be added or
    /// removed.
    Github,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Webhook => "webhook",
            SinkKind::Slack => "slack",
            SinkKind::Discord => "discord",
            SinkKind::Email => "email",
            SinkKind::Github => "github",
        }
    }

    pub fn parse(name: &str) -> Option<SinkKind> {
        [
            SinkKind::Webhook,
            SinkKind::Slack,
            SinkKind::Discord,
            SinkKind::Email,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }
}

/// Who an email sink writes to, and as whom.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct EmailAddresses {
    /// The recipients, one address each (`ops@example.com`).
    pub to: Vec<String>,
    /// The sender (`wharf@example.com` or `Wharf <wharf@example.com>`).
    pub from: String,
}

/// A notification sink as the API shows it: its URL without what may hold a token, and never
/// its secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct NotificationSink {
    pub name: String,
    pub kind: SinkKind,
    /// The URL, with its path and query left out when they may hold a token; an email sink's
    /// SMTP server as `smtp://host:port`, without its user.
    pub url: String,
    /// An email sink's recipients and sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailAddresses>,
    /// The events it gets; empty: every event.
    pub events: Vec<NotificationEvent>,
    /// The services whose events it gets; empty: every service's, and those of no service.
    pub services: Vec<String>,
    /// Messages waiting to be sent, or sent again.
    pub pending: i64,
    /// Messages given up on after the most attempts (`wharf notify retry` sends them again).
    pub dead: i64,
    pub created_at: String,
}

/// `POST /v1/notifications`: adds a sink. A webhook given no secret gets a generated one,
/// shown once in the answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct CreateSink {
    pub name: String,
    pub kind: SinkKind,
    /// Sealed at rest: a Slack or Discord URL holds its token. An email sink's SMTP server:
    /// `smtp://[USER@]HOST[:PORT]` (port 587 by default; STARTTLS is required).
    pub url: SecretText,
    /// A webhook's signing secret, generated when absent; an email sink's SMTP password, which
    /// it needs when its URL names a user. Not for Slack or Discord.
    #[serde(default)]
    pub secret: Option<SecretText>,
    /// An email sink's recipients and sender; only for an email sink.
    #[serde(default)]
    pub email: Option<EmailAddresses>,
    #[serde(default)]
    pub events: Vec<NotificationEvent>,
    #[serde(default)]
    pub services: Vec<String>,
}

/// The answer to [`CreateSink`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct SinkCreated {
    pub sink: NotificationSink,
    /// The webhook's signing secret when Wharf generated it: shown this once.
    pub generated_secret: Option<SecretText>,
}

api_request!(CreateSink: Post "/v1/notifications" -> SinkCreated);

/// `GET /v1/notifications`: every sink, by name.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ListSinks {}

api_request!(ListSinks: Get "/v1/notifications" -> Vec<NotificationSink>);

/// `DELETE /v1/notifications/{name}`: removes a sink with its deliveries; answers the sinks
/// left.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RemoveSink {
    #[serde(skip)]
    pub name: String,
}

api_request!(RemoveSink: Delete "/v1/notifications/{}" [name] -> Vec<NotificationSink>);

/// `POST /v1/notifications/{name}/test`: sends the sink a `test` message.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct TestSink {
    #[serde(skip)]
    pub name: String,
}

/// The answer to [`TestSink`]: the test event, which its delivery names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct SinkTested {
    pub sink: String,
    pub event_id: i64,
}

api_request!(TestSink: Post "/v1/notifications/{}/test" [name] -> SinkTested);

/// How far a message to one sink has got.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum NotificationDeliveryState {
    /// Waiting for its first or next attempt.
    Pending,
    /// The sink answered 2xx.
    Delivered,
    /// Given up on after the most attempts; `retry` makes it pending again.
    Dead,
}

impl NotificationDeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationDeliveryState::Pending => "pending",
            NotificationDeliveryState::Delivered => "delivered",
            NotificationDeliveryState::Dead => "dead",
        }
    }

    pub fn parse(name: &str) -> Option<NotificationDeliveryState> {
        [
            NotificationDeliveryState::Pending,
            NotificationDeliveryState::Delivered,
            NotificationDeliveryState::Dead,
        ]
        .into_iter()
        .find(|state| state.as_str() == name)
    }
}

impl std::fmt::Display for NotificationDeliveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message to one sink. For the `github` sink, one build's deployment: `id` is the build,
/// `message_id` GitHub's deployment id (empty before GitHub made it), `event` is `deployment`
/// and `disposition` the last status GitHub accepted (`queued`, `in_progress`, `success`, …).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct NotificationDelivery {
    pub id: i64,
    /// Its `X-Wharf-Delivery`, the same on every attempt.
    pub message_id: String,
    pub event: NotificationEvent,
    pub service: Option<String>,
    /// `sent`, `still_failing` or `recovered`.
    pub disposition: String,
    pub state: NotificationDeliveryState,
    pub attempts: i64,
    /// The sink's last HTTP status, or an SMTP server's last reply code.
    pub last_status: Option<i64>,
    /// Why the last attempt failed, in one line.
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

/// `GET /v1/notifications/{name}/deliveries?failed=BOOL`: a sink's messages, newest first;
/// with `failed`, those not delivered yet that failed at least once, and dead ones.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ListSinkDeliveries {
    #[serde(skip)]
    pub name: String,
    #[serde(skip)]
    pub failed: bool,
}

api_request!(
    ListSinkDeliveries: Get "/v1/notifications/{}/deliveries?failed={}" [name, failed]
        -> Vec<NotificationDelivery>
);

/// `POST /v1/notifications/{name}/retry`: makes a sink's dead messages pending again.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RetrySink {
    #[serde(skip)]
    pub name: String,
}

/// The answer to [`RetrySink`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct SinkRetried {
    pub sink: String,
    /// The dead messages made pending again.
    pub retried: i64,
}

api_request!(RetrySink: Post "/v1/notifications/{}/retry" [name] -> SinkRetried);

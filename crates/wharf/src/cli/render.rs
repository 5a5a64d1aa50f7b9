//! What the CLI prints: tables, summaries and messages for people, pretty JSON with `--json`.
//! Everything here turns API values into text; only `emit` writes it.

use std::fmt::Write as _;

use serde::Serialize;
use wharf_wire::{
    Agent, AgentCredentials, Build, DeploySecret, EnvVar, LogLine, LogStream, NotificationDelivery,
    NotificationSink, Preview, RegistryLoginSet, Release, ReleaseState, RevokedAgent, Service,
    SinkCreated, SinkRetried, SinkTested, User, UserCredentials,
};

/// One column of a table: its heading, and the cell a value fills it with.
pub(super) type Column<T> = (&'static str, fn(&T) -> String);

/// How much of a build's reason its row shows.
const BUILD_REASON_CHARS: usize = 60;

/// How much of a commit's SHA a build's row shows.
const SHORT_SHA_CHARS: usize = 12;

pub(super) const SERVICES: &[Column<Service>] = &[
    ("NAME", |service| service.name.clone()),
    ("PROJECT", |service| service.project.clone()),
    ("REPO", |service| service.repo.clone()),
    ("BRANCH", |service| service.branch.clone()),
    ("PORT", |service| or_dash(service.port)),
    ("DOMAIN", |service| or_dash(service.domain.as_ref())),
];

pub(super) const BUILDS: &[Column<Build>] = &[
    ("ID", |build| build.id.to_string()),
    ("SERVICE", |build| build.service.clone()),
    ("COMMIT", |build| {
        build.commit_sha.chars().take(SHORT_SHA_CHARS).collect()
    }),
    ("STATE", |build| build.state.to_string()),
    ("TRIGGER", |build| build.trigger.as_str().to_owned()),
    ("ATTEMPT", |build| {
        format!("{}/{}", build.attempt, build.max_attempts)
    }),
    ("CREATED", |build| build.created_at.clone()),
    ("REASON", |build| {
        let reason = build.reason.as_deref().unwrap_or_default();
        reason.chars().take(BUILD_REASON_CHARS).collect()
    }),
];

pub(super) const RELEASES: &[Column<Release>] = &[
    ("ID", |release| release.id.to_string()),
    ("STATE", |release| release.state.to_string()),
    ("TRIGGER", |release| release.trigger.as_str().to_owned()),
    ("BUILD", |release| {
        release
            .build_id
            .map(|id| id.to_string())
            .unwrap_or_default()
    }),
    ("IMAGE", |release| release.image.clone()),
    ("CREATED", |release| release.created_at.clone()),
    ("REASON", |release| {
        release.reason.clone().unwrap_or_default()
    }),
];

/// A service's variables; the server never sends a secret's value, and the table says so.
pub(super) const VARIABLES: &[Column<EnvVar>] = &[
    ("NAME", |variable| variable.name.clone()),
    ("VALUE", |variable| {
        variable
            .value
            .clone()
            .unwrap_or_else(|| "********".to_owned())
    }),
    ("SECRET", |variable| yes_or_no(variable.secret)),
    ("BUILD", |variable| yes_or_no(variable.build)),
    ("MEMBERS", |variable| variable.members.to_string()),
    ("FOR", |variable| {
        if variable.preview { "previews" } else { "all" }.to_owned()
    }),
    ("UPDATED", |variable| variable.updated_at.clone()),
];

/// Pull request previews: where each stands and where it answers.
pub(super) const PREVIEWS: &[Column<Preview>] = &[
    ("SERVICE", |preview| preview.service.clone()),
    ("PR", |preview| format!("#{}", preview.pr)),
    ("STATE", |preview| preview.state.to_string()),
    ("URL", |preview| or_dash(preview.url.as_ref())),
    ("COMMIT", |preview| {
        preview.commit_sha.chars().take(SHORT_SHA_CHARS).collect()
    }),
    ("PUSHED", |preview| preview.pushed_at.clone()),
    ("APPROVED BY", |preview| {
        or_dash(preview.approved_by.as_ref())
    }),
    ("REASON", |preview| {
        let reason = preview.reason.as_deref().unwrap_or_default();
        reason.chars().take(BUILD_REASON_CHARS).collect()
    }),
];

/// One preview, after approving or removing it.
pub(super) fn preview(preview: &Preview) -> String {
    let mut text = format!(
        "Preview of {} pull request #{} ({}): {}",
        preview.service, preview.pr, preview.environment, preview.state
    );
    if let Some(url) = &preview.url {
        let _ = write!(text, " at {url}");
    }
    text.push('\n');
    if let Some(reason) = &preview.reason {
        let _ = writeln!(text, "  {reason}");
    }
    if let Some(by) = &preview.approved_by {
        let _ = writeln!(
            text,
            "  commit {} approved by {by}",
            preview
                .commit_sha
                .chars()
                .take(SHORT_SHA_CHARS)
                .collect::<String>()
        );
    }
    text
}

/// Dashboard users and their roles.
pub(super) const USERS: &[Column<User>] = &[
    ("NAME", |user| user.name.clone()),
    ("ROLE", |user| user.role.to_string()),
    ("CREATED", |user| user.created_at.clone()),
];

/// Agents: the labels each registered with, what its token allows, and whether it was revoked.
pub(super) const AGENTS: &[Column<Agent>] = &[
    ("NAME", |agent| agent.name.clone()),
    ("LABELS", |agent| agent.labels.join(",")),
    ("ALLOWED", |agent| agent.allowed_labels.join(",")),
    ("SERVES", served),
    ("VERSION", |agent| or_dash(agent.version.as_ref())),
    ("HOST", |agent| or_dash(agent.hostname.as_ref())),
    ("LAST SEEN", |agent| {
        agent
            .last_seen_at
            .clone()
            .unwrap_or_else(|| "never".to_owned())
    }),
    ("REVOKED", |agent| or_dash(agent.revoked_at.as_ref())),
];

/// The services an agent's token serves: `any`, or its projects and services.
fn served(agent: &Agent) -> String {
    if agent.projects.is_empty() && agent.services.is_empty() {
        return "any".to_owned();
    }
    let projects = agent.projects.iter().map(|name| format!("project:{name}"));
    let services = agent.services.iter().map(|name| format!("service:{name}"));
    projects.chain(services).collect::<Vec<_>>().join(",")
}

/// Notification sinks; their URLs come without what may hold a token.
pub(super) const SINKS: &[Column<NotificationSink>] = &[
    ("NAME", |sink| sink.name.clone()),
    ("KIND", |sink| sink.kind.as_str().to_owned()),
    ("URL", |sink| match &sink.email {
        Some(email) => format!("{} via {}", email.to.join(","), sink.url),
        None => sink.url.clone(),
    }),
    ("EVENTS", |sink| {
        if sink.events.is_empty() {
            "all".to_owned()
        } else {
            let names: Vec<&str> = sink.events.iter().map(|event| event.as_str()).collect();
            names.join(",")
        }
    }),
    ("SERVICES", |sink| {
        if sink.services.is_empty() {
            "all".to_owned()
        } else {
            sink.services.join(",")
        }
    }),
    ("PENDING", |sink| sink.pending.to_string()),
    ("DEAD", |sink| sink.dead.to_string()),
];

/// How much of a delivery's last error its row shows.
const DELIVERY_ERROR_CHARS: usize = 60;

/// A sink's messages.
pub(super) const SINK_DELIVERIES: &[Column<NotificationDelivery>] = &[
    ("ID", |delivery| delivery.id.to_string()),
    ("EVENT", |delivery| delivery.event.as_str().to_owned()),
    ("SERVICE", |delivery| or_dash(delivery.service.as_ref())),
    ("STATE", |delivery| delivery.state.to_string()),
    ("ATTEMPTS", |delivery| delivery.attempts.to_string()),
    ("STATUS", |delivery| or_dash(delivery.last_status)),
    ("CREATED", |delivery| delivery.created_at.clone()),
    ("ERROR", |delivery| {
        let error = delivery.last_error.as_deref().unwrap_or_default();
        error.chars().take(DELIVERY_ERROR_CHARS).collect()
    }),
];

fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}

fn yes_or_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

/// One value: for people, or pretty JSON with `--json`.
pub(super) fn one<T: Serialize>(
    value: &T,
    json: bool,
    human: impl FnOnce(&T) -> String,
) -> anyhow::Result<String> {
    if json {
        pretty_json(value)
    } else {
        Ok(human(value))
    }
}

/// A listing: a table with a heading line, or a JSON array with `--json`.
pub(super) fn list<T: Serialize>(
    values: &[T],
    json: bool,
    columns: &[Column<T>],
) -> anyhow::Result<String> {
    if json {
        pretty_json(values)
    } else {
        Ok(table(values, columns))
    }
}

/// A value as indented JSON and a newline.
pub(super) fn pretty_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    Ok(format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// Left-aligned columns two spaces apart under their headings, with no trailing spaces.
fn table<T>(values: &[T], columns: &[Column<T>]) -> String {
    let headings = columns.iter().map(|(heading, _)| (*heading).to_owned());
    let rows: Vec<Vec<String>> = std::iter::once(headings.collect())
        .chain(
            values
                .iter()
                .map(|value| columns.iter().map(|(_, cell)| cell(value)).collect()),
        )
        .collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, &width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// A service as a few lines for people.
pub(super) fn service_summary(service: &Service) -> String {
    let deploy = &service.deploy;
    let hosts = if deploy.hosts.is_empty() {
        wharf_wire::DEFAULT_HOST.to_owned()
    } else {
        deploy.hosts.join(", ")
    };
    let names: Vec<&str> = service.host_names().collect();
    format!(
        "Service {} (project {})\n  repository   {} (branch {})\n  build        {}, network {}\n  port         {}\n  \
         host names   {}\n  environment  {} on {} ({} per host), auto-deploy {}\n  health       {} \
         (every {} ms, healthy within {} ms)\n",
        service.name,
        service.project,
        service.repo,
        service.branch,
        service
            .compose
            .as_ref()
            .map(|compose| format!("compose file {compose}"))
            .or_else(|| service.dockerfile.clone())
            .unwrap_or_else(|| "Dockerfile or Containerfile at the root".to_owned()),
        service.build_network.as_str(),
        or_dash(service.port),
        or_dash((!names.is_empty()).then(|| names.join(", "))),
        deploy.environment,
        hosts,
        deploy.replicas,
        if deploy.auto_deploy { "on" } else { "off" },
        service.health_path.as_deref().unwrap_or("/"),
        deploy.health.interval_ms,
        deploy.health.deadline_ms,
    )
}

pub(super) fn service_created(service: &Service) -> String {
    format!(
        "Created service {} ({}, branch {}) in project {}\n",
        service.name, service.repo, service.branch, service.project
    )
}

pub(super) fn service_changed(service: &Service) -> String {
    format!(
        "Changed service {}; new settings apply from its next build and release\n",
        service.name
    )
}

/// A new deploy secret of `service`, shown this once, with how to use it.
pub(super) fn deploy_secret(service: &str, secret: &DeploySecret) -> String {
    format!(
        "The deploy secret of {service}, shown only now (the previous one no longer works):\n\n    {}\n\n\
         Sign each POST /deploy with it: X-Wharf-Timestamp: the Unix time in seconds, and\n\
         X-Hub-Signature-256: sha256=HMAC-SHA256 of \"{{timestamp}}.{{body}}\".\n",
        secret.secret.expose()
    )
}

/// A build as a few lines for people.
pub(super) fn build_details(build: &Build) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Build #{}", build.id);
    let _ = writeln!(out, "  service:   {}", build.service);
    let _ = writeln!(out, "  commit:    {}", build.commit_sha);
    let _ = writeln!(out, "  branch:    {}", or_dash(build.branch.as_ref()));
    let _ = writeln!(out, "  state:     {}", build.state);
    let _ = writeln!(out, "  trigger:   {}", build.trigger.as_str());
    let _ = writeln!(
        out,
        "  attempt:   {} of {}",
        build.attempt, build.max_attempts
    );
    let _ = writeln!(out, "  agent:     {}", or_dash(build.agent.as_ref()));
    let _ = writeln!(out, "  created:   {}", build.created_at);
    let _ = writeln!(out, "  claimed:   {}", or_dash(build.claimed_at.as_ref()));
    let _ = writeln!(out, "  finished:  {}", or_dash(build.finished_at.as_ref()));
    if let Some(reason) = &build.reason {
        let _ = writeln!(out, "  reason:    {reason}");
    }
    if let Some(retry_of) = build.retry_of {
        let _ = writeln!(out, "  retry of:  #{retry_of}");
    }
    out
}

/// A build's log lines; Wharf's own notes stand out with an arrow.
pub(super) fn log_lines(lines: &[LogLine]) -> String {
    let mut out = String::new();
    for line in lines {
        let arrow = match line.stream {
            LogStream::Wharf => "==> ",
            _ => "",
        };
        let host = line
            .host
            .as_ref()
            .map_or(String::new(), |host| format!("[{host}] "));
        let _ = writeln!(out, "{host}{arrow}{}", line.text);
    }
    out
}

/// The first line `wharf deploy` and `wharf rollback` print.
pub(super) fn release_created(release: &Release) -> String {
    format!(
        "Release #{} of {}: {} ({})\n",
        release.id, release.service, release.image, release.state
    )
}

/// Each state a followed release moves on to.
pub(super) fn release_moved(state: ReleaseState) -> String {
    format!("  {state}\n")
}

pub(super) fn variable_set(service: &str, variable: &EnvVar) -> String {
    let secret = if variable.secret { " (secret)" } else { "" };
    let scope = if variable.preview { "'s previews" } else { "" };
    format!(
        "Set {} on {service}{scope}{secret}; members: {}\n",
        variable.name, variable.members
    )
}

pub(super) fn variable_removed(service: &str, name: &str, preview: bool) -> String {
    let scope = if preview { "'s previews" } else { "" };
    format!("Removed {name} from {service}{scope}\n")
}

/// A new agent's token, shown this once, with what it allows and how to run the agent.
pub(super) fn agent_created(credentials: &AgentCredentials) -> String {
    let agent = &credentials.agent;
    format!(
        "Agent {} created; its token allows the labels {} for {}.\n\
         The token is shown only now:\n\n    WHARF_AGENT_TOKEN={}\n\n\
         Run it with: wharf agent --server URL --token \"$WHARF_AGENT_TOKEN\" --labels {}\n",
        agent.name,
        agent.allowed_labels.join(","),
        match served(agent).as_str() {
            "any" => "any service".to_owned(),
            scope => scope.to_owned(),
        },
        credentials.token,
        agent.allowed_labels.join(","),
    )
}

/// A new user's password, shown this once, with where to use it.
pub(super) fn user_created(credentials: &UserCredentials) -> String {
    format!(
        "User {} added as {}. The password is shown only now:\n\n    {}\n\n         Sign in at the server's address with the user name and this password.\n",
        credentials.user.name, credentials.user.role, credentials.password
    )
}

/// What revoking an agent's token did.
pub(super) fn agent_revoked(revoked: &RevokedAgent) -> String {
    let ids = |ids: &[i64]| {
        ids.iter()
            .map(|id| format!("#{id}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!(
        "Revoked agent {}: its token no longer works.\n",
        revoked.agent.name
    );
    if !revoked.requeued_builds.is_empty() {
        let _ = writeln!(
            text,
            "Builds back in the queue: {}",
            ids(&revoked.requeued_builds)
        );
    }
    if !revoked.failed_rollouts.is_empty() {
        let _ = writeln!(
            text,
            "Rollouts failed (what was live on its host stays live): {}",
            ids(&revoked.failed_rollouts)
        );
    }
    text
}

/// A new sink; a generated signing secret is shown this once.
pub(super) fn sink_created(created: &SinkCreated) -> String {
    let sink = &created.sink;
    let mut text = format!(
        "Added {} sink {} ({})\n",
        sink.kind.as_str(),
        sink.name,
        sink.url
    );
    if let Some(secret) = &created.generated_secret {
        let _ = write!(
            text,
            "Its signing secret is shown only now:\n\n    {}\n\n\
             Check each message's X-Wharf-Signature-256 with it (the HMAC-SHA256 of \
             \"{{X-Wharf-Timestamp}}.{{body}}\").\n",
            secret.expose()
        );
    }
    text
}

pub(super) fn sink_tested(tested: &SinkTested) -> String {
    format!(
        "A test message for {} is on its way (see wharf notify deliveries {})\n",
        tested.sink, tested.sink
    )
}

pub(super) fn sink_removed(name: &str) -> String {
    format!("Removed sink {name}\n")
}

pub(super) fn sink_retried(retried: &SinkRetried) -> String {
    match retried.retried {
        0 => format!("{} has no dead messages\n", retried.sink),
        1 => format!("1 dead message of {} will be sent again\n", retried.sink),
        count => format!(
            "{count} dead messages of {} will be sent again\n",
            retried.sink
        ),
    }
}

pub(super) fn registry_login_set(set: &RegistryLoginSet) -> String {
    format!(
        "Builds of installation {} push as {}\n",
        set.installation_id, set.username
    )
}

/// Writes to stdout; a reader that went away (`wharf builds | head`) is not an error.
pub(super) fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use wharf_wire::{LogLine, LogStream, ReleaseState, SecretText};

    use super::*;
    use crate::cli::samples;

    /// Checks text as the CLI prints it; `expected` may open with a line break, so that a raw
    /// string shows the text as a terminal would.
    #[track_caller]
    fn check(rendered: &str, expected: &str) {
        let expected = expected.strip_prefix('\n').unwrap_or(expected);
        assert_eq!(
            rendered, expected,
            "\nrendered:\n{rendered}\nexpected:\n{expected}"
        );
    }

    #[test]
    fn services_table() {
        let services = [samples::service(), samples::compose_service()];
        check(
            &list(&services, false, SERVICES).unwrap(),
            r"
NAME    PROJECT  REPO                                 BRANCH   PORT  DOMAIN
web     shop     acme/web                             main     8080  web.example.com
worker  default  https://git.example.com/acme/worker  release  -     -
",
        );
    }

    #[test]
    fn builds_table_shortens_commits_and_reasons() {
        let builds = [samples::failed_build(), samples::build()];
        check(
            &list(&builds, false, BUILDS).unwrap(),
            r"
ID  SERVICE  COMMIT        STATE      TRIGGER  ATTEMPT  CREATED               REASON
8   web      fedcba987654  failed     retry    3/3      2025-03-01T10:00:00Z  the build step failed: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
7   web      0123456789ab  completed  push     1/3      2025-03-01T10:00:00Z
",
        );
    }

    #[test]
    fn releases_table() {
        let releases = [samples::rolled_back_release(), samples::release()];
        check(
            &list(&releases, false, RELEASES).unwrap(),
            r"
ID  STATE        TRIGGER  BUILD  IMAGE                                      CREATED               REASON
4   rolled_back  manual          registry.example.com/shop/web:hotfix       2025-03-01T10:02:01Z  unhealthy: GET /healthz answered 503
3   live         build    7      registry.example.com/shop/web@sha256:5e1f  2025-03-01T10:02:01Z
",
        );
    }

    #[test]
    fn sinks_and_their_messages() {
        use wharf_wire::{NotificationDeliveryState, NotificationEvent, SinkKind};
        let sinks = vec![
            NotificationSink {
                name: "ops".to_owned(),
                kind: SinkKind::Webhook,
                url: "https://ops.example.com/wharf".to_owned(),
                email: None,
                events: Vec::new(),
                services: Vec::new(),
                pending: 0,
                dead: 2,
                created_at: "2025-03-01T09:00:00Z".to_owned(),
            },
            NotificationSink {
                name: "team".to_owned(),
                kind: SinkKind::Slack,
                url: "https://hooks.slack.com/…".to_owned(),
                email: None,
                events: vec![
                    NotificationEvent::ReleaseLive,
                    NotificationEvent::BuildFailed,
                ],
                services: vec!["web".to_owned()],
                pending: 1,
                dead: 0,
                created_at: "2025-03-01T09:01:00Z".to_owned(),
            },
        ];
        check(
            &list(&sinks, false, SINKS).unwrap(),
            r"
NAME  KIND     URL                            EVENTS                     SERVICES  PENDING  DEAD
ops   webhook  https://ops.example.com/wharf  all                        all       0        2
team  slack    https://hooks.slack.com/…      release.live,build.failed  web       1        0
",
        );
        let deliveries = vec![NotificationDelivery {
            id: 9,
            message_id: "0f3a".to_owned(),
            event: NotificationEvent::ReleaseRolledBack,
            service: Some("web".to_owned()),
            disposition: "sent".to_owned(),
            state: NotificationDeliveryState::Dead,
            attempts: 10,
            last_status: Some(500),
            last_error: Some("the sink answered 500 Internal Server Error".to_owned()),
            created_at: "2025-03-01T09:02:00Z".to_owned(),
            delivered_at: None,
        }];
        check(
            &list(&deliveries, false, SINK_DELIVERIES).unwrap(),
            r"
ID  EVENT                SERVICE  STATE  ATTEMPTS  STATUS  CREATED               ERROR
9   release.rolled_back  web      dead   10        500     2025-03-01T09:02:00Z  the sink answered 500 Internal Server Error
",
        );
        let created = SinkCreated {
            sink: sinks[0].clone(),
            generated_secret: Some(SecretText::new("whn_abc")),
        };
        check(
            &sink_created(&created),
            r#"
Added webhook sink ops (https://ops.example.com/wharf)
Its signing secret is shown only now:

    whn_abc

Check each message's X-Wharf-Signature-256 with it (the HMAC-SHA256 of "{X-Wharf-Timestamp}.{body}").
"#,
        );
        check(
            &sink_retried(&SinkRetried {
                sink: "ops".to_owned(),
                retried: 2,
            }),
            "2 dead messages of ops will be sent again\n",
        );
    }

    #[test]
    fn agents_table() {
        check(
            &list(&samples::agents(), false, AGENTS).unwrap(),
            r"
NAME    LABELS        ALLOWED       SERVES                     VERSION  HOST             LAST SEEN             REVOKED
edge-a  build,deploy  build,deploy  any                        0.1.0    edge-a.internal  2025-03-01T10:05:00Z  -
edge-b                deploy,eu     project:shop,service:blog  -        -                never                 2025-03-01T11:00:00Z
",
        );
    }

    #[test]
    fn revoking_says_what_went_back_to_the_queue_and_what_failed() {
        let mut revoked = RevokedAgent {
            agent: samples::agents().remove(1),
            requeued_builds: vec![12, 13],
            failed_rollouts: vec![4],
        };
        check(
            &agent_revoked(&revoked),
            r"
Revoked agent edge-b: its token no longer works.
Builds back in the queue: #12, #13
Rollouts failed (what was live on its host stays live): #4
",
        );
        revoked.requeued_builds.clear();
        revoked.failed_rollouts.clear();
        check(
            &agent_revoked(&revoked),
            "Revoked agent edge-b: its token no longer works.\n",
        );
    }

    #[test]
    fn variables_hide_secret_values_in_the_table_and_in_json() {
        let variables = samples::variables();
        check(
            &list(&variables, false, VARIABLES).unwrap(),
            r"
NAME          VALUE     SECRET  BUILD  MEMBERS      FOR       UPDATED
LOG_LEVEL     debug     no      yes    all          all       2025-03-01T09:10:00Z
DATABASE_URL  ********  yes     no     web,migrate  all       2025-03-01T09:11:00Z
SESSION_KEY   ********  yes     no     routed       all       2025-03-01T09:12:00Z
SESSION_KEY   ********  yes     no     routed       previews  2025-03-01T09:13:00Z
",
        );
        check(
            &list(&variables, true, VARIABLES).unwrap(),
            r#"
[
  {
    "name": "LOG_LEVEL",
    "value": "debug",
    "secret": false,
    "build": true,
    "members": "all",
    "preview": false,
    "updated_at": "2025-03-01T09:10:00Z"
  },
  {
    "name": "DATABASE_URL",
    "value": null,
    "secret": true,
    "build": false,
    "members": [
      "web",
      "migrate"
    ],
    "preview": false,
    "updated_at": "2025-03-01T09:11:00Z"
  },
  {
    "name": "SESSION_KEY",
    "value": null,
    "secret": true,
    "build": false,
    "members": "routed",
    "preview": false,
    "updated_at": "2025-03-01T09:12:00Z"
  },
  {
    "name": "SESSION_KEY",
    "value": null,
    "secret": true,
    "build": false,
    "members": "routed",
    "preview": true,
    "updated_at": "2025-03-01T09:13:00Z"
  }
]
"#,
        );
    }

    #[test]
    fn an_empty_listing_is_its_heading_or_an_empty_array() {
        let none: [Agent; 0] = [];
        check(
            &list(&none, false, AGENTS).unwrap(),
            "NAME  LABELS  ALLOWED  SERVES  VERSION  HOST  LAST SEEN  REVOKED\n",
        );
        check(&list(&none, true, AGENTS).unwrap(), "[]\n");
    }

    #[test]
    fn json_is_the_api_answer_as_it_came() {
        let credentials = AgentCredentials {
            agent: samples::agents().remove(1),
            token: "wharf_agent_t0ken".to_owned(),
        };
        check(
            &one(&credentials, true, agent_created).unwrap(),
            r#"
{
  "agent": {
    "id": 2,
    "name": "edge-b",
    "labels": [],
    "allowed_labels": [
      "deploy",
      "eu"
    ],
    "projects": [
      "shop"
    ],
    "services": [
      "blog"
    ],
    "version": null,
    "hostname": null,
    "created_at": "2025-03-01T08:30:00Z",
    "last_seen_at": null,
    "revoked_at": "2025-03-01T11:00:00Z"
  },
  "token": "wharf_agent_t0ken"
}
"#,
        );
        let secret = DeploySecret {
            secret: SecretText::new("whsec_1"),
        };
        check(
            &one(&secret, true, |secret| deploy_secret("web", secret)).unwrap(),
            "{\n  \"secret\": \"whsec_1\"\n}\n",
        );
        let build = samples::build();
        let parsed: Build = serde_json::from_str(&one(&build, true, build_details).unwrap())
            .expect("a build's JSON reads back");
        assert_eq!(parsed, build);
    }

    #[test]
    fn service_summaries() {
        check(
            &service_summary(&samples::service()),
            r"
Service web (project shop)
  repository   acme/web (branch main)
  build        docker/Dockerfile, network isolated
  port         8080
  host names   web.example.com
  environment  production on edge-a (1 per host), auto-deploy on
  health       /healthz (every 1000 ms, healthy within 30000 ms)
",
        );
        check(
            &service_summary(&samples::compose_service()),
            r"
Service worker (project default)
  repository   https://git.example.com/acme/worker (branch release)
  build        compose file compose.yml, network open
  port         -
  host names   -
  environment  production on local (1 per host), auto-deploy off
  health       / (every 1000 ms, healthy within 30000 ms)
",
        );
    }

    #[test]
    fn build_details_show_what_is_known() {
        check(
            &build_details(&samples::build()),
            r"
Build #7
  service:   web
  commit:    0123456789abcdef0123456789abcdef01234567
  branch:    main
  state:     completed
  trigger:   push
  attempt:   1 of 3
  agent:     edge-a
  created:   2025-03-01T10:00:00Z
  claimed:   2025-03-01T10:00:01Z
  finished:  2025-03-01T10:02:00Z
",
        );
        let mut failed = samples::failed_build();
        failed.reason = Some("cancelled by a newer push".to_owned());
        check(
            &build_details(&failed),
            r"
Build #8
  service:   web
  commit:    fedcba9876543210fedcba9876543210fedcba98
  branch:    -
  state:     failed
  trigger:   retry
  attempt:   3 of 3
  agent:     -
  created:   2025-03-01T10:00:00Z
  claimed:   -
  finished:  -
  reason:    cancelled by a newer push
  retry of:  #7
",
        );
    }

    #[test]
    fn log_lines_mark_wharf_notes() {
        let line = |seq, stream, text: &str| LogLine {
            seq,
            stream,
            text: text.to_owned(),
            at: "2025-03-01T10:00:02Z".to_owned(),
            host: None,
        };
        let lines = [
            line(1, LogStream::Wharf, "build: podman build ."),
            line(2, LogStream::Stdout, "STEP 1/2: FROM alpine"),
            line(3, LogStream::Stderr, "warning: no cache"),
        ];
        check(
            &log_lines(&lines),
            r"
==> build: podman build .
STEP 1/2: FROM alpine
warning: no cache
",
        );
        check(&log_lines(&[]), "");
    }

    #[test]
    fn messages() {
        let service = samples::service();
        let mut secret_variable = samples::variables().remove(1);
        let plain_variable = samples::variables().remove(0);
        let credentials = AgentCredentials {
            agent: samples::agents().remove(0),
            token: "wharf_agent_t0ken".to_owned(),
        };
        let scoped_credentials = AgentCredentials {
            agent: samples::agents().remove(1),
            token: "wharf_agent_t0ken".to_owned(),
        };
        let secret = DeploySecret {
            secret: SecretText::new("whsec_1"),
        };
        let mut pending = samples::release();
        pending.state = ReleaseState::Pending;
        let cases = [
            (
                service_created(&service),
                "Created service web (acme/web, branch main) in project shop\n",
            ),
            (
                service_changed(&service),
                "Changed service web; new settings apply from its next build and release\n",
            ),
            (
                deploy_secret("web", &secret),
                r#"
The deploy secret of web, shown only now (the previous one no longer works):

    whsec_1

Sign each POST /deploy with it: X-Wharf-Timestamp: the Unix time in seconds, and
X-Hub-Signature-256: sha256=HMAC-SHA256 of "{timestamp}.{body}".
"#,
            ),
            (
                agent_created(&credentials),
                r#"
Agent edge-a created; its token allows the labels build,deploy for any service.
The token is shown only now:

    WHARF_AGENT_TOKEN=wharf_agent_t0ken

Run it with: wharf agent --server URL --token "$WHARF_AGENT_TOKEN" --labels build,deploy
"#,
            ),
            (
                agent_created(&scoped_credentials),
                r#"
Agent edge-b created; its token allows the labels deploy,eu for project:shop,service:blog.
The token is shown only now:

    WHARF_AGENT_TOKEN=wharf_agent_t0ken

Run it with: wharf agent --server URL --token "$WHARF_AGENT_TOKEN" --labels deploy,eu
"#,
            ),
            (
                variable_set("web", &plain_variable),
                "Set LOG_LEVEL on web; members: all\n",
            ),
            (
                variable_set("web", &secret_variable),
                "Set DATABASE_URL on web (secret); members: web,migrate\n",
            ),
            (
                variable_removed("web", "LOG_LEVEL", false),
                "Removed LOG_LEVEL from web\n",
            ),
            (
                variable_removed("web", "SESSION_KEY", true),
                "Removed SESSION_KEY from web's previews\n",
            ),
            (
                registry_login_set(&RegistryLoginSet {
                    installation_id: 42,
                    username: "acme-builds".to_owned(),
                }),
                "Builds of installation 42 push as acme-builds\n",
            ),
            (
                release_created(&pending),
                "Release #3 of web: registry.example.com/shop/web@sha256:5e1f (pending)\n",
            ),
            (
                release_moved(ReleaseState::HealthChecking),
                "  health_checking\n",
            ),
        ];
        for (rendered, expected) in &cases {
            check(rendered, expected);
        }
        // A secret's value is never part of what the CLI prints about it.
        secret_variable.value = Some("postgres://u:p@db/app".to_owned());
        assert!(!variable_set("web", &secret_variable).contains("postgres"));
    }
}

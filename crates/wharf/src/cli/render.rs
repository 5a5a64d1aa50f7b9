//! What the CLI prints: tables, summaries and messages for people, pretty JSON with `--json`.
//! Everything here turns API values into text; only `emit` writes it.

use std::fmt::Write as _;

use serde::Serialize;
use wharf_wire::{
    Agent, AgentCredentials, Build, DeploySecret, EnvVar, LogLine, LogStream, RegistryLoginSet,
    Release, ReleaseState, Service,
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
    ("UPDATED", |variable| variable.updated_at.clone()),
];

pub(super) const AGENTS: &[Column<Agent>] = &[
    ("NAME", |agent| agent.name.clone()),
    ("LABELS", |agent| agent.labels.join(",")),
    ("VERSION", |agent| or_dash(agent.version.as_ref())),
    ("HOST", |agent| or_dash(agent.hostname.as_ref())),
    ("LAST SEEN", |agent| {
        agent
            .last_seen_at
            .clone()
            .unwrap_or_else(|| "never".to_owned())
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
        let _ = writeln!(out, "{arrow}{}", line.text);
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
    format!("Set {} on {service}{secret}\n", variable.name)
}

pub(super) fn variable_removed(service: &str, name: &str) -> String {
    format!("Removed {name} from {service}\n")
}

/// A new agent's token, shown this once, with how to run the agent.
pub(super) fn agent_created(credentials: &AgentCredentials) -> String {
    format!(
        "Agent {} created. Its token is shown only now:\n\n    WHARF_AGENT_TOKEN={}\n\n\
         Run it with: wharf agent --server URL --token \"$WHARF_AGENT_TOKEN\"\n",
        credentials.agent.name, credentials.token
    )
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
    fn agents_table() {
        check(
            &list(&samples::agents(), false, AGENTS).unwrap(),
            r"
NAME    LABELS        VERSION  HOST             LAST SEEN
edge-a  build,deploy  0.1.0    edge-a.internal  2025-03-01T10:05:00Z
edge-b                -        -                never
",
        );
    }

    #[test]
    fn variables_hide_secret_values_in_the_table_and_in_json() {
        let variables = samples::variables();
        check(
            &list(&variables, false, VARIABLES).unwrap(),
            r"
NAME          VALUE     SECRET  BUILD  UPDATED
LOG_LEVEL     debug     no      yes    2025-03-01T09:10:00Z
DATABASE_URL  ********  yes     no     2025-03-01T09:11:00Z
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
    "updated_at": "2025-03-01T09:10:00Z"
  },
  {
    "name": "DATABASE_URL",
    "value": null,
    "secret": true,
    "build": false,
    "updated_at": "2025-03-01T09:11:00Z"
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
            "NAME  LABELS  VERSION  HOST  LAST SEEN\n",
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
    "version": null,
    "hostname": null,
    "created_at": "2025-03-01T08:30:00Z",
    "last_seen_at": null
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
Agent edge-a created. Its token is shown only now:

    WHARF_AGENT_TOKEN=wharf_agent_t0ken

Run it with: wharf agent --server URL --token "$WHARF_AGENT_TOKEN"
"#,
            ),
            (
                variable_set("web", &plain_variable),
                "Set LOG_LEVEL on web\n",
            ),
            (
                variable_set("web", &secret_variable),
                "Set DATABASE_URL on web (secret)\n",
            ),
            (
                variable_removed("web", "LOG_LEVEL"),
                "Removed LOG_LEVEL from web\n",
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

//! What the CLI prints: tables and summaries for people, pretty JSON with `--json`.

use std::fmt::Write as _;

use serde::Serialize;
use wharf_wire::{Agent, Build, EnvVar, Release, Service};

pub(super) fn releases_table(releases: &[Release]) -> Vec<Vec<String>> {
    let mut rows = vec![
        vec![
            "ID", "STATE", "TRIGGER", "BUILD", "IMAGE", "CREATED", "REASON",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect(),
    ];
    for release in releases {
        rows.push(vec![
            release.id.to_string(),
            release.state.to_string(),
            release.trigger.as_str().to_owned(),
            release
                .build_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            release.image.clone(),
            release.created_at.clone(),
            release.reason.clone().unwrap_or_default(),
        ]);
    }
    rows
}

/// A service as a few lines for people.
pub(super) fn service_summary(service: &Service) -> String {
    let none = || "-".to_owned();
    let deploy = &service.deploy;
    let hosts = if deploy.hosts.is_empty() {
        wharf_wire::DEFAULT_HOST.to_owned()
    } else {
        deploy.hosts.join(", ")
    };
    let names: Vec<&str> = service.host_names().collect();
    format!(
        "Service {} (project {})\n  repository   {} (branch {})\n  build        {}\n  port         {}\n  \
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
        service.port.map_or_else(none, |port| port.to_string()),
        if names.is_empty() {
            none()
        } else {
            names.join(", ")
        },
        deploy.environment,
        hosts,
        deploy.replicas,
        if deploy.auto_deploy { "on" } else { "off" },
        service.health_path.as_deref().unwrap_or("/"),
        deploy.health.interval_ms,
        deploy.health.deadline_ms,
    )
}

pub(super) fn print_one<T: Serialize>(
    value: &T,
    json: bool,
    human: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        emit(&format!("{}\n", serde_json::to_string_pretty(value)?))
    } else {
        emit(&human(value))
    }
}

pub(super) fn print_list<T: Serialize>(
    values: &[T],
    json: bool,
    table: impl Fn(&[T]) -> Vec<Vec<String>>,
) -> anyhow::Result<()> {
    if json {
        emit(&format!("{}\n", serde_json::to_string_pretty(values)?))
    } else {
        emit(&render_table(&table(values)))
    }
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

/// Renders rows as left-aligned columns; the first row is the header.
fn render_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(column, cell)| format!("{cell:<width$}", width = widths[column]))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

pub(super) fn services_table(services: &[Service]) -> Vec<Vec<String>> {
    let mut rows = vec![
        vec!["NAME", "PROJECT", "REPO", "BRANCH", "PORT", "DOMAIN"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
    ];
    for service in services {
        rows.push(vec![
            service.name.clone(),
            service.project.clone(),
            service.repo.clone(),
            service.branch.clone(),
            service
                .port
                .map(|port| port.to_string())
                .unwrap_or_else(|| "-".to_owned()),
            service.domain.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    rows
}

fn short_sha(sha: &str) -> String {
    sha.chars().take(12).collect()
}

pub(super) fn builds_table(builds: &[Build]) -> Vec<Vec<String>> {
    let mut rows = vec![
        vec![
            "ID", "SERVICE", "COMMIT", "STATE", "TRIGGER", "ATTEMPT", "CREATED", "REASON",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect(),
    ];
    for build in builds {
        rows.push(vec![
            build.id.to_string(),
            build.service.clone(),
            short_sha(&build.commit_sha),
            build.state.to_string(),
            build.trigger.as_str().to_owned(),
            format!("{}/{}", build.attempt, build.max_attempts),
            build.created_at.clone(),
            build
                .reason
                .clone()
                .map(|reason| reason.chars().take(60).collect())
                .unwrap_or_default(),
        ]);
    }
    rows
}

pub(super) fn build_details(build: &Build) -> String {
    let mut out = String::new();
    let optional = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    let _ = writeln!(out, "Build #{}", build.id);
    let _ = writeln!(out, "  service:   {}", build.service);
    let _ = writeln!(out, "  commit:    {}", build.commit_sha);
    let _ = writeln!(out, "  branch:    {}", optional(&build.branch));
    let _ = writeln!(out, "  state:     {}", build.state);
    let _ = writeln!(out, "  trigger:   {}", build.trigger.as_str());
    let _ = writeln!(
        out,
        "  attempt:   {} of {}",
        build.attempt, build.max_attempts
    );
    let _ = writeln!(out, "  agent:     {}", optional(&build.agent));
    let _ = writeln!(out, "  created:   {}", build.created_at);
    let _ = writeln!(out, "  claimed:   {}", optional(&build.claimed_at));
    let _ = writeln!(out, "  finished:  {}", optional(&build.finished_at));
    if let Some(reason) = &build.reason {
        let _ = writeln!(out, "  reason:    {reason}");
    }
    if let Some(retry_of) = build.retry_of {
        let _ = writeln!(out, "  retry of:  #{retry_of}");
    }
    out
}

pub(super) fn env_table(variables: &[EnvVar]) -> Vec<Vec<String>> {
    let mut rows = vec![
        vec!["NAME", "VALUE", "SECRET", "BUILD", "UPDATED"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
    ];
    for variable in variables {
        rows.push(vec![
            variable.name.clone(),
            variable
                .value
                .clone()
                .unwrap_or_else(|| "********".to_owned()),
            if variable.secret { "yes" } else { "no" }.to_owned(),
            if variable.build { "yes" } else { "no" }.to_owned(),
            variable.updated_at.clone(),
        ]);
    }
    rows
}

pub(super) fn agents_table(agents: &[Agent]) -> Vec<Vec<String>> {
    let mut rows = vec![
        vec!["NAME", "LABELS", "VERSION", "HOST", "LAST SEEN"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
    ];
    for agent in agents {
        rows.push(vec![
            agent.name.clone(),
            agent.labels.join(","),
            agent.version.clone().unwrap_or_else(|| "-".to_owned()),
            agent.hostname.clone().unwrap_or_else(|| "-".to_owned()),
            agent
                .last_seen_at
                .clone()
                .unwrap_or_else(|| "never".to_owned()),
        ]);
    }
    rows
}

//! What an agent's token allows: the labels it may register with, and the projects and services
//! it may serve. The admin sets them when issuing the token; registering can only narrow the
//! labels. `build` lets an agent take builds (with their secrets and registry login), `deploy`
//! run releases (with their runtime secrets), and any other label makes it a host of the
//! services whose hosts name `label:NAME`.

use std::collections::BTreeSet;

use crate::names::DnsLabel;

/// The label that lets an agent take builds.
pub const BUILD_LABEL: &str = "build";
/// The label that lets an agent run releases.
pub const DEPLOY_LABEL: &str = "deploy";

/// What one agent token allows, read from where it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentScope {
    /// The labels the agent may register with.
    pub labels: BTreeSet<String>,
    /// The projects whose services it may serve.
    pub projects: BTreeSet<String>,
    /// The services it may serve besides those of `projects`.
    pub services: BTreeSet<String>,
}

/// A label an agent asked to register with that its token does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this agent's token does not allow the label {0}")]
pub struct LabelNotAllowed(pub String);

impl AgentScope {
    /// The scope of a new token: `labels` (default: `build` and `deploy`), `projects` and
    /// `services`, each checked, without repeats. An error says which value is malformed.
    pub fn issue(
        labels: &[String],
        projects: &[String],
        services: &[String],
    ) -> Result<AgentScope, String> {
        let labels: BTreeSet<String> = if labels.iter().all(|label| label.trim().is_empty()) {
            AgentScope::default_token().labels
        } else {
            parse_labels(labels)?.into_iter().collect()
        };
        let names = |what: &str, values: &[String]| -> Result<BTreeSet<String>, String> {
            values
                .iter()
                .map(|value| value.trim())
                .filter(|value| !value.is_empty())
                .map(|value| {
                    DnsLabel::parse(what, value)
                        .map(|name| name.as_str().to_owned())
                        .map_err(|error| error.0)
                })
                .collect()
        };
        Ok(AgentScope {
            labels,
            projects: names("project", projects)?,
            services: names("service", services)?,
        })
    }

    /// The scope of a token issued without labels, projects or services: `build` and `deploy`,
    /// for any service.
    pub fn default_token() -> AgentScope {
        AgentScope {
            labels: [BUILD_LABEL, DEPLOY_LABEL].map(str::to_owned).into(),
            ..AgentScope::default()
        }
    }

    /// The scope stored as comma-separated lists (an empty text is an empty list).
    pub fn from_stored(labels: &str, projects: &str, services: &str) -> AgentScope {
        AgentScope {
            labels: split_list(labels).collect(),
            projects: split_list(projects).collect(),
            services: split_list(services).collect(),
        }
    }

    /// The scope of `agent`'s token, as the server answers it.
    pub fn of(agent: &wharf_wire::Agent) -> AgentScope {
        AgentScope {
            labels: agent.allowed_labels.iter().cloned().collect(),
            projects: agent.projects.iter().cloned().collect(),
            services: agent.services.iter().cloned().collect(),
        }
    }

    /// Whether the token allows `label`.
    pub fn allows_label(&self, label: &str) -> bool {
        self.labels.contains(label)
    }

    /// Whether the agent may build or run the service `service` of project `project`: any
    /// service when the token names neither projects nor services.
    pub fn serves(&self, project: &str, service: &str) -> bool {
        (self.projects.is_empty() && self.services.is_empty())
            || self.projects.contains(project)
            || self.services.contains(service)
    }

    /// The labels an agent asking for `asked` registers with: the labels asked for, checked
    /// and without repeats, when the token allows each one. An agent asks only for what its
    /// host offers, so a label the token lacks is a mistake to show, not one to drop quietly.
    pub fn register(&self, asked: &[String]) -> Result<Vec<String>, RegisterError> {
        let asked = parse_labels(asked).map_err(RegisterError::Malformed)?;
        if let Some(label) = asked.iter().find(|label| !self.allows_label(label)) {
            return Err(RegisterError::NotAllowed(LabelNotAllowed(label.clone())));
        }
        Ok(asked)
    }
}

/// Why an agent cannot register with the labels it asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("{0}")]
    Malformed(String),
    #[error(transparent)]
    NotAllowed(#[from] LabelNotAllowed),
}

/// Labels as given (trimmed, blanks dropped, each once, in the order first given), each made
/// of letters, digits, `-` and `_`, at most 63.
pub fn parse_labels(labels: &[String]) -> Result<Vec<String>, String> {
    let mut parsed: Vec<String> = Vec::new();
    for label in labels.iter().map(|label| label.trim()) {
        if label.is_empty() || parsed.iter().any(|have| have == label) {
            continue;
        }
        if label.len() > 63
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("labels are letters, digits, '-' and '_', at most 63 each".to_owned());
        }
        parsed.push(label.to_owned());
    }
    Ok(parsed)
}

/// The items of a stored comma-separated list, each once.
pub fn split_list(text: &str) -> impl Iterator<Item = String> + '_ {
    let mut seen = BTreeSet::new();
    text.split(',')
        .filter(|item| !item.is_empty())
        .filter(move |item| seen.insert(*item))
        .map(str::to_owned)
}

/// A list as it is stored: comma-separated.
pub fn join_list<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
    items
        .into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    #[test]
    fn a_token_allows_build_and_deploy_unless_its_labels_are_given() {
        let default = AgentScope::issue(&[], &[], &[]).unwrap();
        assert_eq!(default.labels, set(&["build", "deploy"]));
        let deploy_eu = AgentScope::issue(&strings(&["deploy", " eu", "deploy"]), &[], &[]);
        assert_eq!(deploy_eu.unwrap().labels, set(&["deploy", "eu"]));
        assert!(AgentScope::issue(&strings(&["no spaces"]), &[], &[]).is_err());
        let error = AgentScope::issue(&[], &strings(&["Shop"]), &[]).unwrap_err();
        assert!(error.contains("project"), "{error}");
        assert!(AgentScope::issue(&[], &[], &strings(&["web_1"])).is_err());
    }

    #[test]
    fn registering_narrows_the_labels_and_names_one_the_token_lacks() {
        let scope = AgentScope::from_stored("build,deploy,build", "", "");
        assert_eq!(scope.labels, set(&["build", "deploy"]));
        assert_eq!(
            scope.register(&strings(&["deploy", "deploy"])).unwrap(),
            strings(&["deploy"])
        );
        assert_eq!(scope.register(&[]).unwrap(), Vec::<String>::new());
        assert_eq!(
            scope.register(&strings(&["deploy", "gpu"])),
            Err(RegisterError::NotAllowed(LabelNotAllowed("gpu".to_owned())))
        );
        assert_eq!(
            scope.register(&strings(&["gpu"])).unwrap_err().to_string(),
            "this agent's token does not allow the label gpu"
        );
        assert!(matches!(
            scope.register(&strings(&["a,b"])),
            Err(RegisterError::Malformed(_))
        ));
    }

    #[test]
    fn a_token_serves_its_projects_and_services_or_any_when_it_names_none() {
        let any = AgentScope::from_stored("build", "", "");
        assert!(any.serves("shop", "web"));
        let shop_and_blog = AgentScope::from_stored("build", "shop", "blog");
        assert!(shop_and_blog.serves("shop", "web"));
        assert!(shop_and_blog.serves("site", "blog"));
        assert!(!shop_and_blog.serves("site", "docs"));
    }

    #[test]
    fn lists_are_stored_comma_separated() {
        let labels = set(&["deploy", "build"]);
        assert_eq!(join_list(&labels), "build,deploy");
        assert_eq!(split_list("").count(), 0);
        assert_eq!(
            split_list("a,,b,a").collect::<Vec<_>>(),
            strings(&["a", "b"])
        );
    }
}

//! Reading a repository's compose file: which of its services Wharf builds (those with a
//! `build:` section), with their contexts and Dockerfiles checked to stay inside the repository.
//!
//! Only what building needs is read here; [`super::plan_stack`] reads the file again for the
//! deploy that runs the stack.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::names::{NameError, check_repo_path};

/// The largest compose file Wharf reads.
pub const MAX_COMPOSE_BYTES: usize = 1024 * 1024;

/// One image to build for a compose service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeBuild {
    /// The compose service's name (a DNS label: it becomes part of the image's path).
    pub component: String,
    /// The build context, relative to the repository root.
    pub context: String,
    /// The Dockerfile, relative to the repository root.
    pub dockerfile: String,
    /// Build arguments the compose file gives.
    pub args: Vec<(String, String)>,
}

/// Why a compose file cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ComposeError(pub String);

impl From<NameError> for ComposeError {
    fn from(error: NameError) -> ComposeError {
        ComposeError(error.0)
    }
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    services: BTreeMap<String, RawService>,
}

#[derive(Deserialize)]
struct RawService {
    #[serde(default)]
    build: Option<RawBuild>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawBuild {
    Context(String),
    Full {
        #[serde(default)]
        context: Option<String>,
        #[serde(default)]
        dockerfile: Option<String>,
        #[serde(default)]
        args: Option<RawArgs>,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawArgs {
    Map(BTreeMap<String, Option<serde_yaml_ng::Value>>),
    List(Vec<String>),
}

/// Joins a path relative to the compose file's directory onto it, resolving `.` and `..` as
/// text, and refuses anything that leaves the repository.
fn join_inside(base: &str, relative: &str, what: &str) -> Result<String, ComposeError> {
    if relative.starts_with('/') {
        return Err(ComposeError(format!(
            "the {what} {relative:?} is an absolute path: give a path inside the repository"
        )));
    }
    let mut parts: Vec<&str> = base
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(ComposeError(format!(
                        "the {what} {relative:?} leaves the repository"
                    )));
                }
            }
            other => parts.push(other),
        }
    }
    let joined = if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    };
    check_repo_path(what, &joined)?;
    Ok(joined)
}

/// Reads a compose file at `path` (relative to the repository) and lists what to build.
pub fn builds(path: &str, text: &str) -> Result<Vec<ComposeBuild>, ComposeError> {
    if text.len() > MAX_COMPOSE_BYTES {
        return Err(ComposeError(format!(
            "the compose file {path} is larger than {} KiB",
            MAX_COMPOSE_BYTES / 1024
        )));
    }
    let file: RawFile = serde_yaml_ng::from_str(text)
        .map_err(|error| ComposeError(format!("the compose file {path} is not valid: {error}")))?;
    let directory = path.rsplit_once('/').map_or("", |(dir, _)| dir);
    let mut builds = Vec::new();
    for (component, service) in file.services {
        let Some(build) = service.build else { continue };
        crate::names::DnsLabel::parse("compose service name", &component)?;
        let (context, dockerfile, raw_args) = match build {
            RawBuild::Context(context) => (context, None, None),
            RawBuild::Full {
                context,
                dockerfile,
                args,
            } => (context.unwrap_or_else(|| ".".to_owned()), dockerfile, args),
        };
        let context = join_inside(directory, &context, "build context")?;
        let dockerfile = join_inside(
            &context,
            dockerfile.as_deref().unwrap_or("Dockerfile"),
            "Dockerfile",
        )?;
        let args = match raw_args {
            None => Vec::new(),
            Some(RawArgs::List(items)) => items
                .into_iter()
                .filter_map(|item| {
                    item.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                })
                .collect(),
            Some(RawArgs::Map(map)) => map
                .into_iter()
                .filter_map(|(key, value)| {
                    let value = match value? {
                        serde_yaml_ng::Value::String(text) => text,
                        serde_yaml_ng::Value::Number(number) => number.to_string(),
                        serde_yaml_ng::Value::Bool(flag) => flag.to_string(),
                        _ => return None,
                    };
                    Some((key, value))
                })
                .collect(),
        };
        builds.push(ComposeBuild {
            component,
            context,
            dockerfile,
            args,
        });
    }
    if builds.is_empty() {
        return Err(ComposeError(format!(
            "nothing to build: no service in {path} has a build: section"
        )));
    }
    Ok(builds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_services_with_a_build_section() {
        let text = "services:\n  web:\n    build: ./web\n  api:\n    build:\n      context: api\n      dockerfile: docker/Api.Dockerfile\n      args:\n        MODE: prod\n        LEVEL: 3\n  db:\n    image: postgres:15\n";
        let builds = builds("deploy/compose.yml", text).unwrap();
        assert_eq!(
            builds,
            vec![
                ComposeBuild {
                    component: "api".into(),
                    context: "deploy/api".into(),
                    dockerfile: "deploy/api/docker/Api.Dockerfile".into(),
                    args: vec![("LEVEL".into(), "3".into()), ("MODE".into(), "prod".into())],
                },
                ComposeBuild {
                    component: "web".into(),
                    context: "deploy/web".into(),
                    dockerfile: "deploy/web/Dockerfile".into(),
                    args: vec![],
                },
            ]
        );
    }

    #[test]
    fn refuses_paths_out_of_the_repository_and_empty_files() {
        for text in [
            "services:\n  web:\n    build: ../../etc\n",
            "services:\n  web:\n    build: /etc\n",
            "services:\n  web:\n    build:\n      context: .\n      dockerfile: ../../../x\n",
            "services:\n  Web_1:\n    build: .\n",
            "services:\n  db:\n    image: postgres\n",
            "not: [valid",
        ] {
            assert!(builds("compose.yml", text).is_err(), "{text}");
        }
        assert!(builds("sub/compose.yml", "services:\n  web:\n    build: ..\n").is_ok());
    }
}

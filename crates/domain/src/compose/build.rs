//! The build view of a compose file: which of its services Wharf builds (those with a `build:`
//! section), with their contexts and Dockerfiles checked to stay inside the repository.
//!
//! Only the `build:` sections are read, from the file as the parser gives it before merge keys
//! are applied: a `build:` that reaches a service only through `<<` is not read here, though the
//! run view sees it. Only what building needs is checked, so a file that builds may still be
//! refused when it is deployed. Services are listed in the order of their names.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::file::{ComposeFile, MAX_COMPOSE_BYTES, ParseError};
use crate::names::{NameError, check_repo_path};

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
    Map(BTreeMap<String, Option<Value>>),
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

/// The `build:` section of each service that has one, by service name. Other top-level keys and
/// a service's other fields are passed over; a missing or empty `services:` has no services, and
/// an empty service no `build:`.
fn build_sections(
    path: &str,
    document: &Value,
) -> Result<BTreeMap<String, RawBuild>, ComposeError> {
    let services = match document {
        Value::Null => return Ok(BTreeMap::new()),
        Value::Mapping(root) => match root.get("services") {
            None | Some(Value::Null) => return Ok(BTreeMap::new()),
            Some(Value::Mapping(services)) => services,
            Some(_) => return Err(not_valid(path, "services: expected a mapping of services")),
        },
        _ => return Err(not_valid(path, "expected a mapping with services:")),
    };
    let mut sections = BTreeMap::new();
    for (name, service) in services {
        // A plain number or boolean names a service by its text, as YAML readers that expect a
        // string take it; the run view refuses such names.
        let name = match name {
            Value::String(name) => name.clone(),
            Value::Number(number) => number.to_string(),
            Value::Bool(flag) => flag.to_string(),
            _ => return Err(not_valid(path, "services: a service name is not a string")),
        };
        let build = match service {
            Value::Null => continue,
            Value::Mapping(fields) => match fields.get("build") {
                None | Some(Value::Null) => continue,
                Some(build) => build,
            },
            _ => {
                return Err(not_valid(
                    path,
                    format!("services.{name}: expected a mapping of settings"),
                ));
            }
        };
        let build = serde_yaml_ng::from_value(build.clone())
            .map_err(|error| not_valid(path, format!("services.{name}.build: {error}")))?;
        sections.insert(name, build);
    }
    Ok(sections)
}

/// The error for a file that is YAML but not shaped as a compose file.
fn not_valid(path: &str, reason: impl std::fmt::Display) -> ComposeError {
    ComposeError(format!("the compose file {path} is not valid: {reason}"))
}

/// Reads a compose file at `path` (relative to the repository) and lists what to build.
pub fn builds(path: &str, text: &str) -> Result<Vec<ComposeBuild>, ComposeError> {
    let file = ComposeFile::parse(text).map_err(|error| match error {
        ParseError::TooLarge => ComposeError(format!(
            "the compose file {path} is larger than {} KiB",
            MAX_COMPOSE_BYTES / 1024
        )),
        ParseError::NotYaml(error) => not_valid(path, error),
    })?;
    let directory = path.rsplit_once('/').map_or("", |(dir, _)| dir);
    let mut builds = Vec::new();
    for (component, build) in build_sections(path, file.as_written())? {
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
                        Value::String(text) => text,
                        Value::Number(number) => number.to_string(),
                        Value::Bool(flag) => flag.to_string(),
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

    #[test]
    fn reads_only_the_build_sections() {
        // The run view refuses the top-level secrets, privileged mode, the `$` and the unknown
        // field; building needs none of them.
        let text = "secrets:\n  token:\n    file: ./token\nservices:\n  web:\n    build: ./web\n    privileged: true\n    command: echo $HOME\n    made_up_field: 1\n  db:\n";
        let built: Vec<String> = builds("compose.yml", text)
            .unwrap()
            .into_iter()
            .map(|build| build.component)
            .collect();
        assert_eq!(built, ["web"]);
        let error = builds("compose.yml", "services:\n  web:\n    build: [a]\n").unwrap_err();
        assert!(
            error
                .0
                .starts_with("the compose file compose.yml is not valid: services.web.build: "),
            "{error}"
        );
        let error = builds("compose.yml", &"#".repeat(MAX_COMPOSE_BYTES + 1)).unwrap_err();
        assert_eq!(
            error.0,
            "the compose file compose.yml is larger than 1024 KiB"
        );
    }
}

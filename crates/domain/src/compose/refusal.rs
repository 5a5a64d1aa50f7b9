//! Why Wharf will not deploy a compose file: the refusals of the run view, each one line that
//! names the service (or volume) and the field, and the helpers that make them.

use std::fmt;

use serde_yaml_ng::{Mapping, Value};

use super::file::ParseError;
use super::{ComposePermission, MAX_COMPOSE_BYTES, MAX_STACK_SERVICES};
use crate::names::quote;

/// What a refusal is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComposeSubject {
    /// The file as a whole (its top-level keys).
    File,
    /// A service, by its name as the file spells it.
    Service(String),
    /// A volume declared under the top-level `volumes:`.
    Volume(String),
}

impl fmt::Display for ComposeSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComposeSubject::File => f.write_str("the compose file"),
            ComposeSubject::Service(name) => write!(f, "compose service {}", quote(name)),
            ComposeSubject::Volume(name) => write!(f, "compose volume {}", quote(name)),
        }
    }
}

/// Why Wharf will not deploy a compose file: one line that names the service (or volume) and
/// the field, and for permissions the setting that would allow it. Users' values in it are
/// quoted and cut short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeRefusal {
    #[error("the compose file is larger than {} KiB", MAX_COMPOSE_BYTES / 1024)]
    TooLarge,
    #[error("the compose file is not valid YAML: {0}")]
    NotYaml(String),
    #[error("the compose file has no services")]
    NoServices,
    #[error("the compose file has {count} services; Wharf deploys at most {MAX_STACK_SERVICES}")]
    TooManyServices { count: usize },
    #[error(
        "{subject} asks for {what}; Wharf refuses it unless the service's deploy settings allow {:?}",
        .permission.name()
    )]
    NotAllowed {
        subject: ComposeSubject,
        what: String,
        permission: ComposePermission,
    },
    #[error(
        "{subject} publishes host port {port}, where {owner} listens; Wharf never lets a compose file take it"
    )]
    ReservedPort {
        subject: ComposeSubject,
        port: u16,
        owner: String,
    },
    #[error("{subject} sets {field}, which Wharf does not support: {advice}")]
    Unsupported {
        subject: ComposeSubject,
        field: String,
        advice: &'static str,
    },
    #[error("{subject} has an invalid {field}: {reason}")]
    Invalid {
        subject: ComposeSubject,
        field: String,
        reason: String,
    },
    #[error(
        "{subject} uses {found} in {field}, which Wharf does not interpolate: set the value as a Wharf variable of the service, or write $$ for a literal $"
    )]
    Interpolation {
        subject: ComposeSubject,
        field: String,
        found: String,
    },
    #[error("compose service {} has a build: section, but the build produced no image for it", quote(.service))]
    NotBuilt { service: String },
    #[error("compose service {} depends on itself through depends_on: {}", quote(.service), .cycle.join(" → "))]
    Cycle {
        service: String,
        /// The services around the cycle, ending with the first again.
        cycle: Vec<String>,
    },
}

/// The text of a mapping key; compose keys are strings.
pub(super) fn mapping_key<'v>(
    subject: &ComposeSubject,
    field: &str,
    key: &'v Value,
) -> Result<&'v str, ComposeRefusal> {
    key.as_str()
        .ok_or_else(|| invalid(subject, field, "a key is not a string"))
}

/// The entries of a mapping that have a value, in the file's order, each key as text: compose
/// reads an empty field as an unset one.
pub(super) fn set_entries<'v>(
    subject: &'v ComposeSubject,
    field: &'v str,
    mapping: &'v Mapping,
) -> impl Iterator<Item = Result<(&'v str, &'v Value), ComposeRefusal>> + 'v {
    mapping
        .iter()
        .filter_map(move |(key, value)| match mapping_key(subject, field, key) {
            Err(refusal) => Some(Err(refusal)),
            Ok(_) if value.is_null() => None,
            Ok(key) => Some(Ok((key, value))),
        })
}

pub(super) fn invalid(
    subject: &ComposeSubject,
    field: &str,
    reason: impl Into<String>,
) -> ComposeRefusal {
    ComposeRefusal::Invalid {
        subject: subject.clone(),
        field: field.to_owned(),
        reason: reason.into(),
    }
}

pub(super) fn unsupported(
    subject: &ComposeSubject,
    field: String,
    advice: &'static str,
) -> ComposeRefusal {
    ComposeRefusal::Unsupported {
        subject: subject.clone(),
        field,
        advice,
    }
}

/// Why a field is refused, and what to write instead.
pub(super) fn advice_for(field: &str) -> &'static str {
    match field {
        "devices" | "device_cgroup_rules" | "gpus" => "it gives the container the host's devices",
        "security_opt" => "it changes the confinement that keeps the container from the host",
        "userns_mode" => "it changes the user namespace that keeps the container from the host",
        "cgroup_parent" | "cgroup" => "it moves the container out of the cgroup Wharf gives it",
        "uts" => "it shares the host's host name namespace with the container",
        "sysctls" | "ulimits" => "Wharf runs containers with the host's defaults",
        "use_api_socket" => "it mounts the container engine's socket",
        "extends" | "include" => "copy the settings into this file",
        "secrets" | "configs" => {
            "their files are not on the deploy host; set the values as Wharf variables of the service"
        }
        "env_file" => {
            "the file is not on the deploy host; put the variables in environment: or in the service's Wharf variables"
        }
        "volumes_from" => "mount the same named volume in each service",
        "links" | "external_links" => "services reach each other by name on the stack's network",
        "deploy" | "scale" => "replicas and hosts come from the service's Wharf deploy settings",
        "profiles" => "Wharf deploys every service of the file; remove the ones not to deploy",
        "mem_limit" | "memswap_limit" | "mem_reservation" | "cpus" | "cpu_shares" | "cpu_quota"
        | "cpu_period" | "cpuset" | "pids_limit" | "shm_size" | "oom_kill_disable"
        | "oom_score_adj" => {
            "Wharf does not apply resource limits from a compose file, and ignoring one would run the service without the limit its author set"
        }
        "read_only" | "cap_drop" | "tmpfs" | "group_add" => {
            "Wharf does not apply it, and ignoring it would run the container otherwise than its author set"
        }
        _ => "Wharf refuses what it does not know rather than ignore it",
    }
}

impl From<ParseError> for ComposeRefusal {
    fn from(error: ParseError) -> ComposeRefusal {
        match error {
            ParseError::TooLarge => ComposeRefusal::TooLarge,
            ParseError::NotYaml(error) => ComposeRefusal::NotYaml(one_line(error)),
        }
    }
}

/// An error's text on one line, so a refusal stays one line.
fn one_line(error: impl fmt::Display) -> String {
    error.to_string().replace(['\n', '\r'], " ")
}

//! Turning a repository's compose file into what Wharf runs: one Podman container per compose
//! service, started in an order that respects `depends_on`, with images pinned to what Wharf
//! built.
//!
//! Whoever can push to the repository can write its compose file, so the file must not be able
//! to take over the host. What reaches past a container's isolation (privileged mode, added
//! capabilities, host paths, the container engine's socket, the host's network or process
//! namespace) is refused unless the service's owner allowed it in the deploy settings
//! (`compose_allow`, read by [`ComposeAllowances::from_names`]). A few things Wharf never does are
//! refused whatever the settings say.
//!
//! Fields are read from an allow-list: a field Wharf does not know is refused, not ignored.
//! Compose keeps growing (`use_api_socket`, a recent field, mounts the engine's socket), and a
//! field ignored silently is a setting its author believes is in force. The fields ignored on
//! purpose are [`IGNORED_SERVICE_FIELDS`]; top-level `networks`, `name` and `version` are ignored
//! too, because Wharf gives each stack its own network and name.
//!
//! Decisions a reader of a compose file may not expect, each tested below:
//! - **Interpolation.** Wharf does not interpolate: a `$` in a value Wharf reads is refused unless
//!   written `$$`, which gives a literal `$` as in compose. Values that differ per deploy belong
//!   in the service's Wharf variables, not in the file.
//! - **String commands** (`command: npm start`) are split into words as compose splits them
//!   (POSIX quoting, no shell runs). Unquoted shell operators (`;`, `&`, `|`, `<`, `>`, a
//!   backtick) are refused, because nothing would interpret them: write
//!   `["sh", "-c", "…"]` for a shell.
//! - **`secrets`, `configs`, `env_file`** are refused: the files they name live in a checkout the
//!   deploy host does not have, and secret values belong in Wharf variables, which are sealed.
//! - **Variables without a value** (`- DEBUG`, `DEBUG:`) are refused: compose would copy them from
//!   the environment of whoever runs it, which under Wharf is Wharf's own.
//! - **Host paths** are classified by their text. Relative sources must stay inside the compose
//!   file's directory. A path that *is* an engine socket needs `socket`; a directory that holds
//!   one (`/run`, `/`, `/proc`) needs `host_bind` and `socket`. Symbolic links on the host are
//!   for the runtime to resolve, and it checks the resolved path again with
//!   [`reaches_container_socket`].
//! - **`depends_on`** conditions `service_started` and `service_healthy` are both kept as a plain
//!   dependency: the runtime starts a service after its dependencies run and, where they have a
//!   health check, are healthy. `service_completed_successfully` (one-shot jobs) is refused.
//! - **Health checks** must give `test` (or disable the check): Wharf does not retime an image's
//!   own `HEALTHCHECK`. `start_interval` is ignored: probes run every `interval` from the start.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde_yaml_ng::{Mapping, Value};

use crate::compose::MAX_COMPOSE_BYTES;
use crate::names::{DnsLabel, check_env_name, quote};

/// The most services one stack may have.
pub const MAX_STACK_SERVICES: usize = 50;

/// Service fields Wharf ignores on purpose: Wharf decides them itself (names, restarts,
/// networks, logs, pulls) or they change nothing the host would notice. Fields starting with
/// `x-` (compose extensions) are ignored as well.
pub const IGNORED_SERVICE_FIELDS: &[&str] = &[
    "container_name",
    "hostname",
    "restart",
    "labels",
    "annotations",
    "expose",
    "networks",
    "logging",
    "pull_policy",
    "stop_signal",
    "stop_grace_period",
    "init",
    "tty",
    "stdin_open",
];

/// Something a compose file may ask for only when the service's owner allowed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComposePermission {
    /// `privileged: true`, or `cap_add: [ALL]`.
    Privileged,
    /// `cap_add` with any capability.
    CapAdd,
    /// A bind mount of a host path.
    HostBind,
    /// A mount of the container engine's socket, or of a directory that holds one.
    Socket,
    /// `network_mode: host`.
    HostNetwork,
    /// `pid: host`.
    HostPid,
}

impl ComposePermission {
    pub const ALL: [ComposePermission; 6] = [
        ComposePermission::Privileged,
        ComposePermission::CapAdd,
        ComposePermission::HostBind,
        ComposePermission::Socket,
        ComposePermission::HostNetwork,
        ComposePermission::HostPid,
    ];

    /// The name in the deploy settings' `compose_allow`.
    pub fn name(self) -> &'static str {
        match self {
            ComposePermission::Privileged => "privileged",
            ComposePermission::CapAdd => "cap_add",
            ComposePermission::HostBind => "host_bind",
            ComposePermission::Socket => "socket",
            ComposePermission::HostNetwork => "host_network",
            ComposePermission::HostPid => "host_pid",
        }
    }

    pub fn parse(name: &str) -> Option<ComposePermission> {
        ComposePermission::ALL
            .into_iter()
            .find(|permission| permission.name() == name)
    }
}

/// What a service's owner allowed a compose file to ask for (deploy settings `compose_allow`).
/// The default allows nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ComposeAllowances {
    pub privileged: bool,
    pub cap_add: bool,
    pub host_bind: bool,
    pub socket: bool,
    pub host_network: bool,
    pub host_pid: bool,
}

impl ComposeAllowances {
    /// Reads the names of `compose_allow`. Unknown names allow nothing: the server refuses them
    /// when the settings are saved, so one here is a name from a newer Wharf.
    pub fn from_names(names: &[String]) -> ComposeAllowances {
        let mut allow = ComposeAllowances::default();
        for permission in names
            .iter()
            .filter_map(|name| ComposePermission::parse(name))
        {
            *allow.flag_mut(permission) = true;
        }
        allow
    }

    pub fn allows(&self, permission: ComposePermission) -> bool {
        match permission {
            ComposePermission::Privileged => self.privileged,
            ComposePermission::CapAdd => self.cap_add,
            ComposePermission::HostBind => self.host_bind,
            ComposePermission::Socket => self.socket,
            ComposePermission::HostNetwork => self.host_network,
            ComposePermission::HostPid => self.host_pid,
        }
    }

    fn flag_mut(&mut self, permission: ComposePermission) -> &mut bool {
        match permission {
            ComposePermission::Privileged => &mut self.privileged,
            ComposePermission::CapAdd => &mut self.cap_add,
            ComposePermission::HostBind => &mut self.host_bind,
            ComposePermission::Socket => &mut self.socket,
            ComposePermission::HostNetwork => &mut self.host_network,
            ComposePermission::HostPid => &mut self.host_pid,
        }
    }
}

/// A compose file turned into what Wharf runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackPlan {
    /// In start order: every service comes after the services it depends on; services that do
    /// not depend on each other keep the file's order.
    pub services: Vec<StackService>,
}

/// One compose service, as one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackService {
    /// The compose service name, a DNS label: other services reach it by this name.
    pub name: String,
    /// The image to run: the pinned image Wharf built for a service with `build:`, else the
    /// file's `image:` as written.
    pub image: String,
    /// Replaces the image's `CMD`; `Some(vec![])` clears it.
    pub command: Option<Vec<String>>,
    /// Replaces the image's `ENTRYPOINT`; `Some(vec![])` clears it.
    pub entrypoint: Option<Vec<String>>,
    /// Variables in the file's order (map or list form), with literal values.
    pub environment: Vec<(String, String)>,
    pub ports: Vec<PortMapping>,
    pub volumes: Vec<VolumeMount>,
    /// `None` keeps the image's own `HEALTHCHECK`.
    pub healthcheck: Option<ComposeHealthcheck>,
    /// Services of the same stack that start before this one.
    pub depends_on: Vec<String>,
    /// True only when the owner allowed `privileged`.
    pub privileged: bool,
    /// Capability names, upper case; non-empty only when the owner allowed `cap_add`.
    pub cap_add: Vec<String>,
    /// True only when the owner allowed `host_network`.
    pub network_mode_host: bool,
    /// True only when the owner allowed `host_pid`.
    pub pid_host: bool,
    /// `user`, `user:group` or numeric ids, as `podman run --user` takes them.
    pub user: Option<String>,
    /// An absolute path in the container.
    pub working_dir: Option<String>,
}

/// A port the container listens on, and where the host publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    pub container_port: u16,
    /// `None` publishes on a port the engine picks (compose's `"8080"` form).
    pub host_port: Option<u16>,
    /// `None` publishes on every address of the host.
    pub host_ip: Option<IpAddr>,
    pub protocol: PortProtocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortProtocol {
    Tcp,
    Udp,
}

/// A mount into the container. Paths hold no `:`, `,` or control characters, so the runtime can
/// put them into `--volume`/`--mount` arguments as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    pub source: VolumeSource,
    /// An absolute path in the container.
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// A volume of its own for this container (`- /data`).
    Anonymous,
    /// A volume declared under the file's top-level `volumes:`; the runtime scopes the name to
    /// the stack.
    Named(String),
    /// A host path, normalized as text: absolute, `~/…` (the home of the user running the
    /// containers), or `./…` (relative to the compose file's directory). Present only when the
    /// owner allowed it.
    HostPath(String),
}

/// A compose `healthcheck:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeHealthcheck {
    pub test: HealthTest,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
    pub start_period: Option<Duration>,
}

/// What a health probe runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthTest {
    /// A program and its arguments (`["CMD", "curl", "-f", "http://localhost/"]`).
    Exec(Vec<String>),
    /// A line for the container's `/bin/sh -c` (`["CMD-SHELL", "…"]`, or `test:` as a string).
    Shell(String),
    /// No probe at all, not even the image's own `HEALTHCHECK` (`["NONE"]`, `disable: true`).
    Disabled,
}

impl HealthTest {
    /// The probe as one argument vector: `None` when disabled.
    pub fn argv(&self) -> Option<Vec<String>> {
        match self {
            HealthTest::Exec(argv) => Some(argv.clone()),
            HealthTest::Shell(line) => Some(vec!["/bin/sh".into(), "-c".into(), line.clone()]),
            HealthTest::Disabled => None,
        }
    }
}

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

/// Plans the deploy of the compose file `text`.
///
/// `images` maps compose service names to the pinned images the build pushed (for example
/// `reg/p/s/web@sha256:…`). A service with `build:` must have an entry; a service with only
/// `image:` keeps its image (an entry for it is not used).
pub fn plan_stack(
    text: &str,
    images: &[(String, String)],
    allow: &ComposeAllowances,
) -> Result<StackPlan, ComposeRefusal> {
    if text.len() > MAX_COMPOSE_BYTES {
        return Err(ComposeRefusal::TooLarge);
    }
    let mut root: Value =
        serde_yaml_ng::from_str(text).map_err(|error| ComposeRefusal::NotYaml(one_line(error)))?;
    root.apply_merge()
        .map_err(|error| ComposeRefusal::NotYaml(one_line(error)))?;
    let Some(root) = root.as_mapping() else {
        return Err(invalid(
            &ComposeSubject::File,
            "top level",
            "expected a mapping with services:",
        ));
    };

    let file = ComposeSubject::File;
    let mut services = None;
    let mut volumes = None;
    for (key, value) in root {
        let key = mapping_key(&file, "top level", key)?;
        match key {
            "services" => services = Some(value),
            "volumes" => volumes = Some(value),
            "networks" | "name" | "version" => {}
            key if key.starts_with("x-") => {}
            key => return Err(unsupported(&file, quote(key), advice_for(key))),
        }
    }
    let volumes = read_volume_declarations(volumes)?;

    let services = match services {
        None | Some(Value::Null) => return Err(ComposeRefusal::NoServices),
        Some(Value::Mapping(services)) => services,
        Some(_) => return Err(invalid(&file, "services", "expected a mapping of services")),
    };
    if services.is_empty() {
        return Err(ComposeRefusal::NoServices);
    }
    if services.len() > MAX_STACK_SERVICES {
        return Err(ComposeRefusal::TooManyServices {
            count: services.len(),
        });
    }
    let mut planned = Vec::with_capacity(services.len());
    for (name, definition) in services {
        let name = mapping_key(&file, "services", name)?;
        let reader = ServiceReader {
            subject: ComposeSubject::Service(name.to_owned()),
            allow,
            volumes: &volumes,
        };
        if DnsLabel::parse("compose service name", name).is_err() {
            return Err(reader.invalid(
                "name",
                "use 1-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit",
            ));
        }
        planned.push(reader.service(name, definition, images)?);
    }
    Ok(StackPlan {
        services: start_order(planned)?,
    })
}

/// Whether mounting the host path `path` gives the container the engine's socket: the path is
/// a socket (a known engine socket, or any name ending in `.sock`), a directory that holds a
/// known one (`/run`, `/var`, `/`), or under `/proc` (every host file is reachable through
/// `/proc/<pid>/root`). The plan checks paths as written; the runtime checks again after
/// resolving symbolic links, since a link in a repository or on the host can point anywhere.
/// A path that cannot be read as a host path counts as reaching the socket.
pub fn reaches_container_socket(path: &str) -> bool {
    match normalize_host_path(path) {
        Ok(path) => socket_reach(&path) != SocketReach::None,
        Err(_) => true,
    }
}

/// Reads a compose duration (Go's syntax): one or more decimal numbers, each with a unit among
/// `ns`, `us` (`µs`), `ms`, `s`, `m`, `h`, such as `1m30s`, `500ms` or `1.5h`; `0` alone is zero.
pub fn parse_compose_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() || text.len() > 64 {
        return None;
    }
    let mut rest = text;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return None;
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => return None,
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        // Digits past nanoseconds of an hour change nothing; 18 keep the arithmetic in range.
        let fraction = &fraction[..fraction.len().min(18)];
        let fraction_nanos = if fraction.is_empty() {
            0
        } else {
            fraction.parse::<u128>().ok()? * unit_nanos / 10u128.pow(fraction.len() as u32)
        };
        total_nanos = total_nanos
            .checked_add(whole.checked_mul(unit_nanos)?)?
            .checked_add(fraction_nanos)?;
        rest = next;
    }
    let nanos = u64::try_from(total_nanos).ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Reads one service; `self` carries what refusals name and what the service may ask for.
struct ServiceReader<'a> {
    subject: ComposeSubject,
    allow: &'a ComposeAllowances,
    volumes: &'a BTreeMap<String, DeclaredVolume>,
}

impl ServiceReader<'_> {
    fn service(
        &self,
        name: &str,
        definition: &Value,
        images: &[(String, String)],
    ) -> Result<StackService, ComposeRefusal> {
        let Some(fields) = definition.as_mapping() else {
            return Err(self.invalid("definition", "expected a mapping of settings"));
        };
        let mut service = StackService {
            name: name.to_owned(),
            image: String::new(),
            command: None,
            entrypoint: None,
            environment: Vec::new(),
            ports: Vec::new(),
            volumes: Vec::new(),
            healthcheck: None,
            depends_on: Vec::new(),
            privileged: false,
            cap_add: Vec::new(),
            network_mode_host: false,
            pid_host: false,
            user: None,
            working_dir: None,
        };
        let mut builds = false;
        let mut file_image = None;
        for (key, value) in fields {
            let key = mapping_key(&self.subject, "setting", key)?;
            // Compose reads an empty field as an unset one.
            if value.is_null() {
                continue;
            }
            match key {
                "build" => builds = true,
                "image" => file_image = Some(self.image(value)?),
                "command" => service.command = Some(self.words("command", value)?),
                "entrypoint" => service.entrypoint = Some(self.words("entrypoint", value)?),
                "environment" => service.environment = self.environment(value)?,
                "ports" => service.ports = self.ports(value)?,
                "volumes" => service.volumes = self.mounts(value)?,
                "healthcheck" => service.healthcheck = Some(self.healthcheck(value)?),
                "depends_on" => service.depends_on = self.depends_on(value)?,
                "privileged" => {
                    if self.flag("privileged", value)? {
                        self.require(ComposePermission::Privileged, "privileged mode".into())?;
                        service.privileged = true;
                    }
                }
                "cap_add" => service.cap_add = self.cap_add(value)?,
                "network_mode" => match self.text("network_mode", value)?.as_str() {
                    "bridge" => {}
                    "host" => {
                        self.require(
                            ComposePermission::HostNetwork,
                            "the host's network (network_mode: host)".into(),
                        )?;
                        service.network_mode_host = true;
                    }
                    other => {
                        return Err(self.unsupported(
                            format!("network_mode: {}", quote(other)),
                            "each service joins the stack's network, or the host's when allowed",
                        ));
                    }
                },
                "pid" => match self.text("pid", value)?.as_str() {
                    "host" => {
                        self.require(
                            ComposePermission::HostPid,
                            "the host's process namespace (pid: host)".into(),
                        )?;
                        service.pid_host = true;
                    }
                    other => {
                        return Err(self.unsupported(
                            format!("pid: {}", quote(other)),
                            "each service has its own process namespace, or the host's when allowed",
                        ));
                    }
                },
                "ipc" => {
                    let mode = self.text("ipc", value)?;
                    let advice = if mode == "host" {
                        "it shares the host's IPC namespace with the container"
                    } else {
                        "each service has its own IPC namespace"
                    };
                    return Err(self.unsupported(format!("ipc: {}", quote(&mode)), advice));
                }
                "user" => service.user = Some(self.user(value)?),
                "working_dir" => {
                    let path = self.text("working_dir", value)?;
                    check_container_path(&path)
                        .map_err(|reason| self.invalid("working_dir", reason))?;
                    service.working_dir = Some(path);
                }
                key if IGNORED_SERVICE_FIELDS.contains(&key) || key.starts_with("x-") => {}
                key => return Err(self.unsupported(quote(key), advice_for(key))),
            }
        }
        service.image = if builds {
            images
                .iter()
                .find(|(service, _)| service == name)
                .map(|(_, image)| image.clone())
                .ok_or_else(|| ComposeRefusal::NotBuilt {
                    service: name.to_owned(),
                })?
        } else {
            file_image
                .ok_or_else(|| self.invalid("image", "the service has neither image: nor build:"))?
        };
        Ok(service)
    }

    fn image(&self, value: &Value) -> Result<String, ComposeRefusal> {
        let image = self.text("image", value)?;
        let valid = !image.is_empty()
            && image.len() <= 512
            && image.starts_with(|c: char| c.is_ascii_alphanumeric())
            && image
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b));
        if valid {
            Ok(image)
        } else {
            Err(self.invalid(
                "image",
                format!(
                    "{} is not an image reference such as redis:7 or ghcr.io/acme/web@sha256:…",
                    quote(&image)
                ),
            ))
        }
    }

    /// `command` and `entrypoint`: a list of words, or a string split into words.
    fn words(&self, field: &str, value: &Value) -> Result<Vec<String>, ComposeRefusal> {
        match value {
            Value::Sequence(items) => items.iter().map(|item| self.scalar(field, item)).collect(),
            Value::String(_) => {
                let line = self.text(field, value)?;
                split_words(&line).map_err(|reason| self.invalid(field, reason))
            }
            _ => Err(self.invalid(field, "expected a string or a list of strings")),
        }
    }

    fn environment(&self, value: &Value) -> Result<Vec<(String, String)>, ComposeRefusal> {
        let mut variables: Vec<(String, String)> = Vec::new();
        let mut add = |name: String, value: Option<String>| {
            check_env_name(&name).map_err(|error| self.invalid("environment", error.0))?;
            let Some(value) = value else {
                return Err(self.invalid(
                    "environment",
                    format!(
                        "{} has no value, and Wharf does not pass its own environment on: give a value, or set it as a Wharf variable of the service",
                        quote(&name)
                    ),
                ));
            };
            if variables.iter().any(|(known, _)| *known == name) {
                return Err(self.invalid("environment", format!("{} is set twice", quote(&name))));
            }
            variables.push((name, value));
            Ok(())
        };
        match value {
            Value::Mapping(map) => {
                for (name, value) in map {
                    let name = mapping_key(&self.subject, "environment", name)?;
                    let value = match value {
                        Value::Null => None,
                        value => Some(self.scalar("environment", value)?),
                    };
                    add(name.to_owned(), value)?;
                }
            }
            Value::Sequence(items) => {
                for item in items {
                    let item = self.text("environment", item)?;
                    match item.split_once('=') {
                        Some((name, value)) => add(name.to_owned(), Some(value.to_owned()))?,
                        None => add(item, None)?,
                    }
                }
            }
            _ => {
                return Err(
                    self.invalid("environment", "expected a mapping or a list of NAME=value")
                );
            }
        }
        Ok(variables)
    }

    fn ports(&self, value: &Value) -> Result<Vec<PortMapping>, ComposeRefusal> {
        let Some(items) = value.as_sequence() else {
            return Err(self.invalid("ports", "expected a list"));
        };
        items
            .iter()
            .map(|item| match item {
                Value::Mapping(port) => self.port_long(port),
                Value::Number(_) | Value::String(_) => {
                    self.port_short(&self.scalar("ports", item)?)
                }
                _ => Err(self.invalid(
                    "ports",
                    "expected \"HOST:CONTAINER\" or a mapping with target:",
                )),
            })
            .collect()
    }

    /// `"80"`, `"8080:80"`, `"127.0.0.1:8080:80"`, `"[::1]:8080:80"`, `"127.0.0.1::80"`, each
    /// optionally followed by `/tcp` or `/udp`.
    fn port_short(&self, text: &str) -> Result<PortMapping, ComposeRefusal> {
        let (body, protocol) = match text.rsplit_once('/') {
            Some((body, protocol)) => (body, self.protocol(protocol)?),
            None => (text, PortProtocol::Tcp),
        };
        let (host_ip, ports) = match body.strip_prefix('[') {
            Some(rest) => {
                let (ip, ports) = rest.split_once("]:").ok_or_else(|| {
                    self.invalid("ports", format!("{} has an unclosed [", quote(text)))
                })?;
                (Some(ip), ports)
            }
            None => match body.rsplitn(3, ':').collect::<Vec<_>>()[..] {
                [container] => (None, container),
                [_, _] => (None, body),
                [_, _, ip] => (Some(ip), &body[ip.len() + 1..]),
                _ => unreachable!("rsplitn(3) gives one to three parts"),
            },
        };
        let (host_port, container_port) = match ports.split_once(':') {
            Some((host, container)) => (Some(host), container),
            None => (None, ports),
        };
        if host_ip.is_some() && host_port.is_none() {
            return Err(self.invalid(
                "ports",
                format!(
                    "{} gives an address but no ports: write IP:HOST:CONTAINER",
                    quote(text)
                ),
            ));
        }
        Ok(PortMapping {
            container_port: self.port_number(container_port)?,
            host_port: match host_port {
                None | Some("") => None,
                Some(port) => self.published_port(port)?,
            },
            host_ip: host_ip.map(|ip| self.host_ip(ip)).transpose()?,
            protocol,
        })
    }

    fn port_long(&self, port: &Mapping) -> Result<PortMapping, ComposeRefusal> {
        let mut mapping = PortMapping {
            container_port: 0,
            host_port: None,
            host_ip: None,
            protocol: PortProtocol::Tcp,
        };
        let mut target = None;
        for (key, value) in port {
            let key = mapping_key(&self.subject, "ports", key)?;
            if value.is_null() {
                continue;
            }
            match key {
                "target" => target = Some(self.port_number(&self.scalar("ports target", value)?)?),
                "published" => {
                    mapping.host_port =
                        self.published_port(&self.scalar("ports published", value)?)?
                }
                "host_ip" => {
                    mapping.host_ip = Some(self.host_ip(&self.text("ports host_ip", value)?)?)
                }
                "protocol" => {
                    mapping.protocol = self.protocol(&self.text("ports protocol", value)?)?
                }
                // Swarm's publishing mode and a name for tools: nothing for one host to do.
                "mode" | "name" | "app_protocol" => {}
                key => {
                    return Err(self.unsupported(
                        format!("ports {}", quote(key)),
                        "a port takes target, published, host_ip and protocol",
                    ));
                }
            }
        }
        mapping.container_port =
            target.ok_or_else(|| self.invalid("ports", "a port in long syntax needs target:"))?;
        Ok(mapping)
    }

    fn protocol(&self, name: &str) -> Result<PortProtocol, ComposeRefusal> {
        match name {
            "tcp" => Ok(PortProtocol::Tcp),
            "udp" => Ok(PortProtocol::Udp),
            other => Err(self.unsupported(
                format!("the port protocol {}", quote(other)),
                "ports are tcp or udp",
            )),
        }
    }

    fn port_number(&self, text: &str) -> Result<u16, ComposeRefusal> {
        if text.contains('-') {
            return Err(self.unsupported(
                format!("the port range {}", quote(text)),
                "list each port on its own",
            ));
        }
        match text.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(self.invalid("ports", format!("{} is not a port (1-65535)", quote(text)))),
        }
    }

    /// A published port; `0` (like an empty one) lets the engine pick.
    fn published_port(&self, text: &str) -> Result<Option<u16>, ComposeRefusal> {
        if text.is_empty() || text == "0" {
            return Ok(None);
        }
        self.port_number(text).map(Some)
    }

    fn host_ip(&self, text: &str) -> Result<IpAddr, ComposeRefusal> {
        text.parse()
            .map_err(|_| self.invalid("ports", format!("{} is not an IP address", quote(text))))
    }

    fn mounts(&self, value: &Value) -> Result<Vec<VolumeMount>, ComposeRefusal> {
        let Some(items) = value.as_sequence() else {
            return Err(self.invalid("volumes", "expected a list"));
        };
        items
            .iter()
            .map(|item| match item {
                Value::String(_) => self.mount_short(&self.text("volumes", item)?),
                Value::Mapping(mount) => self.mount_long(mount),
                _ => Err(self.invalid(
                    "volumes",
                    "expected \"SOURCE:TARGET[:MODE]\" or a mapping with type:",
                )),
            })
            .collect()
    }

    /// `TARGET`, `SOURCE:TARGET` or `SOURCE:TARGET:MODE`; a source starting with `/`, `.` or
    /// `~` is a host path (as compose reads it), any other a named volume.
    fn mount_short(&self, text: &str) -> Result<VolumeMount, ComposeRefusal> {
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, mode) = match parts[..] {
            [target] => (None, target, None),
            [source, target] => (Some(source), target, None),
            [source, target, mode] => (Some(source), target, Some(mode)),
            _ => {
                return Err(self.invalid(
                    "volumes",
                    format!("{} is not SOURCE:TARGET[:MODE]", quote(text)),
                ));
            }
        };
        let mut read_only = false;
        for option in mode.into_iter().flat_map(|mode| mode.split(',')) {
            match option {
                "ro" => read_only = true,
                "rw" => read_only = false,
                other => {
                    return Err(self.unsupported(
                        format!("the volume mode {}", quote(other)),
                        "Wharf mounts with ro or rw only",
                    ));
                }
            }
        }
        let source = match source {
            None => None,
            Some(source) if looks_like_path(source) => Some(MountSource::Host(source)),
            Some(source) => Some(MountSource::Volume(source)),
        };
        self.mount(source, target, read_only)
    }

    fn mount_long(&self, mount: &Mapping) -> Result<VolumeMount, ComposeRefusal> {
        let mut kind = None;
        let mut source = None;
        let mut target = None;
        let mut read_only = false;
        for (key, value) in mount {
            let key = mapping_key(&self.subject, "volumes", key)?;
            if value.is_null() {
                continue;
            }
            match key {
                "type" => kind = Some(self.text("volumes type", value)?),
                "source" => source = Some(self.text("volumes source", value)?),
                "target" => target = Some(self.text("volumes target", value)?),
                "read_only" => read_only = self.flag("volumes read_only", value)?,
                // Docker Desktop's file sharing hint: nothing on Linux.
                "consistency" => {}
                key => {
                    return Err(self.unsupported(
                        format!("volumes {}", quote(key)),
                        "Wharf mounts with type, source, target and read_only only",
                    ));
                }
            }
        }
        let target = target.ok_or_else(|| self.invalid("volumes", "a mount needs target:"))?;
        let source = match kind.as_deref() {
            Some("volume") => source.as_deref().map(MountSource::Volume),
            Some("bind") => {
                let source = source
                    .as_deref()
                    .ok_or_else(|| self.invalid("volumes", "a bind mount needs source:"))?;
                if !looks_like_path(source) {
                    return Err(self.invalid(
                        "volumes",
                        format!(
                            "the bind source {} is not a path: write {} or an absolute path",
                            quote(source),
                            quote(&format!("./{source}"))
                        ),
                    ));
                }
                Some(MountSource::Host(source))
            }
            Some(other) => {
                return Err(self.unsupported(
                    format!("volumes type: {}", quote(other)),
                    "mounts are named volumes or, when allowed, host paths",
                ));
            }
            None => return Err(self.invalid("volumes", "a mount needs type: volume or bind")),
        };
        self.mount(source, &target, read_only)
    }

    fn mount(
        &self,
        source: Option<MountSource<'_>>,
        target: &str,
        read_only: bool,
    ) -> Result<VolumeMount, ComposeRefusal> {
        check_container_path(target).map_err(|reason| self.invalid("volumes", reason))?;
        let (source, read_only) = match source {
            None => (VolumeSource::Anonymous, read_only),
            Some(MountSource::Host(path)) => {
                (VolumeSource::HostPath(self.host_path(path)?), read_only)
            }
            Some(MountSource::Volume(name)) => match self.volumes.get(name) {
                Some(DeclaredVolume::Local) => (VolumeSource::Named(name.to_owned()), read_only),
                Some(DeclaredVolume::HostBind {
                    device,
                    read_only: declared_read_only,
                }) => (
                    VolumeSource::HostPath(self.host_path(device)?),
                    read_only || *declared_read_only,
                ),
                None => {
                    return Err(self.invalid(
                        "volumes",
                        format!(
                            "the volume {} is not declared under the top-level volumes:",
                            quote(name)
                        ),
                    ));
                }
            },
        };
        Ok(VolumeMount {
            source,
            target: target.to_owned(),
            read_only,
        })
    }

    /// Normalizes a host path and checks that the owner allowed mounting it.
    fn host_path(&self, path: &str) -> Result<String, ComposeRefusal> {
        let path = normalize_host_path(path).map_err(|reason| self.invalid("volumes", reason))?;
        match socket_reach(&path) {
            SocketReach::Socket => self.require(
                ComposePermission::Socket,
                format!(
                    "a mount of the container engine's socket ({})",
                    quote(&path)
                ),
            )?,
            SocketReach::Holds => {
                self.require(
                    ComposePermission::HostBind,
                    format!("a bind mount of the host path {}", quote(&path)),
                )?;
                self.require(
                    ComposePermission::Socket,
                    format!(
                        "a mount of {}, which reaches the container engine's socket",
                        quote(&path)
                    ),
                )?;
            }
            SocketReach::None => self.require(
                ComposePermission::HostBind,
                format!("a bind mount of the host path {}", quote(&path)),
            )?,
        }
        Ok(path)
    }

    fn healthcheck(&self, value: &Value) -> Result<ComposeHealthcheck, ComposeRefusal> {
        let Some(fields) = value.as_mapping() else {
            return Err(self.invalid("healthcheck", "expected a mapping with test:"));
        };
        let mut check = ComposeHealthcheck {
            test: HealthTest::Disabled,
            interval: None,
            timeout: None,
            retries: None,
            start_period: None,
        };
        let mut test = None;
        let mut disabled = false;
        for (key, value) in fields {
            let key = mapping_key(&self.subject, "healthcheck", key)?;
            if value.is_null() {
                continue;
            }
            match key {
                "test" => test = Some(self.health_test(value)?),
                "disable" => disabled = self.flag("healthcheck disable", value)?,
                "interval" => check.interval = Some(self.duration("healthcheck interval", value)?),
                "timeout" => check.timeout = Some(self.duration("healthcheck timeout", value)?),
                "start_period" => {
                    check.start_period = Some(self.duration("healthcheck start_period", value)?)
                }
                "start_interval" => {
                    self.duration("healthcheck start_interval", value)?;
                }
                "retries" => {
                    check.retries = Some(
                        value
                            .as_u64()
                            .and_then(|retries| u32::try_from(retries).ok())
                            .ok_or_else(|| {
                                self.invalid("healthcheck retries", "expected a whole number")
                            })?,
                    )
                }
                key => {
                    return Err(self.unsupported(
                        format!("healthcheck {}", quote(key)),
                        "a health check takes test, interval, timeout, retries, start_period and disable",
                    ));
                }
            }
        }
        check.test = match (disabled, test) {
            (true, _) => HealthTest::Disabled,
            (false, Some(test)) => test,
            (false, None) => {
                return Err(self.unsupported(
                    "a healthcheck without test".into(),
                    "give test:, or disable: true; Wharf does not retime the image's own HEALTHCHECK",
                ));
            }
        };
        Ok(check)
    }

    fn health_test(&self, value: &Value) -> Result<HealthTest, ComposeRefusal> {
        const FIELD: &str = "healthcheck test";
        let test = match value {
            Value::String(_) => HealthTest::Shell(self.text(FIELD, value)?),
            Value::Sequence(items) => {
                let words = items
                    .iter()
                    .map(|item| self.scalar(FIELD, item))
                    .collect::<Result<Vec<_>, _>>()?;
                match words.split_first() {
                    Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => {
                        HealthTest::Exec(rest.to_vec())
                    }
                    Some((kind, [line])) if kind == "CMD-SHELL" => HealthTest::Shell(line.clone()),
                    Some((kind, [])) if kind == "NONE" => HealthTest::Disabled,
                    _ => {
                        return Err(self.invalid(
                            FIELD,
                            "expected [\"CMD\", program, args…], [\"CMD-SHELL\", line] or [\"NONE\"]",
                        ));
                    }
                }
            }
            _ => return Err(self.invalid(FIELD, "expected a string or a list")),
        };
        match &test {
            HealthTest::Shell(line) if line.trim().is_empty() => {
                Err(self.invalid(FIELD, "the command is empty"))
            }
            _ => Ok(test),
        }
    }

    fn duration(&self, field: &str, value: &Value) -> Result<Duration, ComposeRefusal> {
        let text = match value {
            Value::String(text) => text,
            _ => return Err(self.invalid(field, "expected a duration with its unit, such as 30s")),
        };
        parse_compose_duration(text).ok_or_else(|| {
            self.invalid(
                field,
                format!(
                    "{} is not a duration such as 30s, 1m30s or 500ms",
                    quote(text)
                ),
            )
        })
    }

    fn depends_on(&self, value: &Value) -> Result<Vec<String>, ComposeRefusal> {
        let mut names = Vec::new();
        match value {
            Value::Sequence(items) => {
                for item in items {
                    let name = self.text("depends_on", item)?;
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
            Value::Mapping(map) => {
                for (name, options) in map {
                    let name = mapping_key(&self.subject, "depends_on", name)?;
                    self.dependency_options(options)?;
                    names.push(name.to_owned());
                }
            }
            _ => return Err(self.invalid("depends_on", "expected a list or a mapping of services")),
        }
        Ok(names)
    }

    fn dependency_options(&self, options: &Value) -> Result<(), ComposeRefusal> {
        let options = match options {
            Value::Null => return Ok(()),
            Value::Mapping(options) => options,
            _ => return Err(self.invalid("depends_on", "expected a mapping with condition:")),
        };
        for (key, value) in options {
            match mapping_key(&self.subject, "depends_on", key)? {
                "condition" => match self.text("depends_on condition", value)?.as_str() {
                    "service_started" | "service_healthy" => {}
                    other => {
                        return Err(self.unsupported(
                            format!("depends_on condition: {}", quote(other)),
                            "Wharf runs services, not one-shot jobs; a dependency starts first and is healthy first when it has a health check",
                        ));
                    }
                },
                // Restarting dependents and optional dependencies: every service of the file is
                // deployed, and Wharf restarts what it runs.
                "restart" | "required" => {
                    self.flag("depends_on", value)?;
                }
                other => {
                    return Err(self.unsupported(
                        format!("depends_on {}", quote(other)),
                        "a dependency takes condition, restart and required",
                    ));
                }
            }
        }
        Ok(())
    }

    fn cap_add(&self, value: &Value) -> Result<Vec<String>, ComposeRefusal> {
        let Some(items) = value.as_sequence() else {
            return Err(self.invalid("cap_add", "expected a list of capabilities"));
        };
        let mut capabilities = Vec::new();
        for item in items {
            let name = self.text("cap_add", item)?.to_ascii_uppercase();
            let valid = !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
            if !valid {
                return Err(
                    self.invalid("cap_add", format!("{} is not a capability", quote(&name)))
                );
            }
            capabilities.push(name);
        }
        if capabilities.is_empty() {
            return Ok(capabilities);
        }
        self.require(
            ComposePermission::CapAdd,
            format!("added capabilities (cap_add: {})", capabilities.join(", ")),
        )?;
        if capabilities
            .iter()
            .any(|name| name == "ALL" || name == "CAP_ALL")
        {
            self.require(
                ComposePermission::Privileged,
                "every capability (cap_add: ALL), which is privileged mode".into(),
            )?;
        }
        Ok(capabilities)
    }

    fn user(&self, value: &Value) -> Result<String, ComposeRefusal> {
        let user = self.scalar("user", value)?;
        let valid = !user.is_empty()
            && user.len() <= 64
            && !user.starts_with('-')
            && user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-:".contains(&b));
        if valid {
            Ok(user)
        } else {
            Err(self.invalid(
                "user",
                format!("{} is not a user such as 1000 or app:app", quote(&user)),
            ))
        }
    }

    fn flag(&self, field: &str, value: &Value) -> Result<bool, ComposeRefusal> {
        value
            .as_bool()
            .ok_or_else(|| self.invalid(field, "expected true or false"))
    }

    /// A string, number or boolean as text, interpolation refused.
    fn scalar(&self, field: &str, value: &Value) -> Result<String, ComposeRefusal> {
        match value {
            Value::Number(number) => Ok(number.to_string()),
            Value::Bool(flag) => Ok(flag.to_string()),
            _ => self.text(field, value),
        }
    }

    /// A string, with `$$` read as `$` and any other `$` refused: Wharf does not interpolate.
    fn text(&self, field: &str, value: &Value) -> Result<String, ComposeRefusal> {
        let Some(text) = value.as_str() else {
            return Err(self.invalid(field, "expected a string"));
        };
        if text.contains('\0') {
            return Err(self.invalid(field, "it contains a NUL character"));
        }
        let mut literal = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(next) = after.strip_prefix('$') {
                literal.push('$');
                rest = next;
                continue;
            }
            let shown: String = match after.find('}') {
                Some(end) if after.starts_with('{') => rest[at..at + end + 2].to_owned(),
                _ => rest[at..]
                    .chars()
                    .take(1)
                    .chain(
                        after
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_'),
                    )
                    .collect(),
            };
            return Err(ComposeRefusal::Interpolation {
                subject: self.subject.clone(),
                field: field.to_owned(),
                found: quote(&shown),
            });
        }
        literal.push_str(rest);
        Ok(literal)
    }

    fn require(&self, permission: ComposePermission, what: String) -> Result<(), ComposeRefusal> {
        if self.allow.allows(permission) {
            Ok(())
        } else {
            Err(ComposeRefusal::NotAllowed {
                subject: self.subject.clone(),
                what,
                permission,
            })
        }
    }

    fn invalid(&self, field: &str, reason: impl Into<String>) -> ComposeRefusal {
        invalid(&self.subject, field, reason)
    }

    fn unsupported(&self, field: String, advice: &'static str) -> ComposeRefusal {
        unsupported(&self.subject, field, advice)
    }
}

/// Where a mount in a service comes from, before it is checked.
enum MountSource<'a> {
    Host(&'a str),
    Volume(&'a str),
}

/// A volume under the file's top-level `volumes:`.
#[derive(Debug)]
enum DeclaredVolume {
    /// A volume of the engine's local driver.
    Local,
    /// A local volume whose options bind a host path (`o: bind`, `device: PATH`): a bind mount
    /// by another name, checked as one where a service mounts it.
    HostBind { device: String, read_only: bool },
}

fn read_volume_declarations(
    value: Option<&Value>,
) -> Result<BTreeMap<String, DeclaredVolume>, ComposeRefusal> {
    let mut volumes = BTreeMap::new();
    let declarations = match value {
        None | Some(Value::Null) => return Ok(volumes),
        Some(Value::Mapping(declarations)) => declarations,
        Some(_) => {
            return Err(invalid(
                &ComposeSubject::File,
                "volumes",
                "expected a mapping of volumes",
            ));
        }
    };
    for (name, declaration) in declarations {
        let name = mapping_key(&ComposeSubject::File, "volumes", name)?;
        let subject = ComposeSubject::Volume(name.to_owned());
        let valid_name = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !valid_name {
            return Err(invalid(
                &subject,
                "name",
                "use up to 64 letters, digits, '_', '.' and '-', starting with a letter or digit",
            ));
        }
        let declared = match declaration {
            Value::Null => DeclaredVolume::Local,
            Value::Mapping(fields) => read_volume_declaration(&subject, fields)?,
            _ => return Err(invalid(&subject, "definition", "expected a mapping")),
        };
        volumes.insert(name.to_owned(), declared);
    }
    Ok(volumes)
}

fn read_volume_declaration(
    subject: &ComposeSubject,
    fields: &Mapping,
) -> Result<DeclaredVolume, ComposeRefusal> {
    let mut declared = DeclaredVolume::Local;
    for (key, value) in fields {
        let key = mapping_key(subject, "setting", key)?;
        if value.is_null() {
            continue;
        }
        match key {
            "driver" => {
                if value.as_str() != Some("local") {
                    return Err(unsupported(
                        subject,
                        "driver".into(),
                        "Wharf creates volumes with the local driver",
                    ));
                }
            }
            "driver_opts" => declared = read_driver_options(subject, value)?,
            "labels" => {}
            key if key.starts_with("x-") => {}
            "external" | "name" => {
                return Err(unsupported(
                    subject,
                    key.into(),
                    "Wharf names each stack's volumes itself, so a stack reaches no volume but its own",
                ));
            }
            key => return Err(unsupported(subject, quote(key), advice_for(key))),
        }
    }
    Ok(declared)
}

/// The local driver's options: only a bind of a host path is understood (`type: none`,
/// `o: bind`, `device: PATH`); any other option would be lost on the way to the runtime, and a
/// `device` without `bind` mounts a host file system.
fn read_driver_options(
    subject: &ComposeSubject,
    value: &Value,
) -> Result<DeclaredVolume, ComposeRefusal> {
    let not_a_bind = || {
        unsupported(
            subject,
            "driver_opts".into(),
            "the only driver options Wharf understands bind a host path (type: none, o: bind, device: PATH)",
        )
    };
    let Some(options) = value.as_mapping() else {
        return Err(invalid(subject, "driver_opts", "expected a mapping"));
    };
    let mut device = None;
    let mut bind = false;
    let mut read_only = false;
    for (key, value) in options {
        let key = mapping_key(subject, "driver_opts", key)?;
        let text = match value {
            Value::String(text) => text.as_str(),
            _ => return Err(invalid(subject, "driver_opts", "expected string values")),
        };
        match key {
            "type" if text == "none" => {}
            "o" => {
                for option in text.split(',') {
                    match option {
                        "bind" | "rbind" => bind = true,
                        "ro" => read_only = true,
                        "rw" => read_only = false,
                        _ => return Err(not_a_bind()),
                    }
                }
            }
            "device" => device = Some(text),
            _ => return Err(not_a_bind()),
        }
    }
    match (bind, device) {
        (true, Some(device)) if device.starts_with('/') => Ok(DeclaredVolume::HostBind {
            device: device.to_owned(),
            read_only,
        }),
        (true, _) => Err(invalid(
            subject,
            "driver_opts",
            "a bind needs device: with an absolute path",
        )),
        (false, None) if options.is_empty() => Ok(DeclaredVolume::Local),
        (false, _) => Err(not_a_bind()),
    }
}

/// Orders services so each comes after its dependencies; among those ready at once, the file's
/// order wins.
fn start_order(services: Vec<StackService>) -> Result<Vec<StackService>, ComposeRefusal> {
    let names: Vec<&str> = services
        .iter()
        .map(|service| service.name.as_str())
        .collect();
    for service in &services {
        if let Some(unknown) = service
            .depends_on
            .iter()
            .find(|dependency| !names.contains(&dependency.as_str()))
        {
            return Err(invalid(
                &ComposeSubject::Service(service.name.clone()),
                "depends_on",
                format!("there is no service {} in the file", quote(unknown)),
            ));
        }
    }
    let mut started: BTreeSet<&str> = BTreeSet::new();
    let mut order: Vec<usize> = Vec::with_capacity(services.len());
    while order.len() < services.len() {
        let ready = services.iter().position(|service| {
            !started.contains(service.name.as_str())
                && service
                    .depends_on
                    .iter()
                    .all(|dependency| started.contains(dependency.as_str()))
        });
        match ready {
            Some(index) => {
                started.insert(services[index].name.as_str());
                order.push(index);
            }
            None => return Err(cycle(&services, &started)),
        }
    }
    let mut slots: Vec<Option<StackService>> = services.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .filter_map(|index| slots[index].take())
        .collect())
}

/// Names a cycle among the services not started: each waits on another one not started, so
/// following the first such dependency from any of them comes back round.
fn cycle(services: &[StackService], started: &BTreeSet<&str>) -> ComposeRefusal {
    let waiting = |name: &str| -> Option<&str> {
        let service = services.iter().find(|service| service.name == name)?;
        service
            .depends_on
            .iter()
            .map(String::as_str)
            .find(|dependency| !started.contains(dependency))
    };
    let first = services
        .iter()
        .find(|service| !started.contains(service.name.as_str()))
        .map_or("", |service| service.name.as_str());
    let mut path: Vec<&str> = vec![first];
    while let Some(next) = waiting(path[path.len() - 1]) {
        if let Some(at) = path.iter().position(|name| *name == next) {
            let mut cycle: Vec<String> = path[at..].iter().map(|name| (*name).to_owned()).collect();
            cycle.push(next.to_owned());
            return ComposeRefusal::Cycle {
                service: next.to_owned(),
                cycle,
            };
        }
        path.push(next);
    }
    unreachable!("a service that is not started waits on another that is not")
}

/// How a host path relates to the container engine's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SocketReach {
    None,
    /// The path is a socket.
    Socket,
    /// The path is a directory the socket is found under.
    Holds,
}

/// Where engines put their sockets; `*` stands for any one segment (a user id).
const ENGINE_SOCKETS: &[&str] = &[
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/podman/podman.sock",
    "/var/run/podman/podman.sock",
    "/run/user/*/podman/podman.sock",
    "/run/user/*/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
    "~/.docker/run/docker.sock",
];

/// Classifies a normalized host path.
fn socket_reach(path: &str) -> SocketReach {
    let segments = path_segments(path);
    if segments.last().is_some_and(|last| last.ends_with(".sock")) {
        return SocketReach::Socket;
    }
    if segments.first() == Some(&"proc") {
        return SocketReach::Holds;
    }
    for socket in ENGINE_SOCKETS {
        let pattern = path_segments(socket);
        let leads_to = segments.len() <= pattern.len()
            && segments
                .iter()
                .zip(&pattern)
                .all(|(segment, pattern)| *pattern == "*" || segment == pattern);
        if leads_to {
            return if segments.len() == pattern.len() {
                SocketReach::Socket
            } else {
                SocketReach::Holds
            };
        }
    }
    SocketReach::None
}

/// The segments of an absolute path (`/a/b` → `a`, `b`) or a home path (`~/a` → `~`, `a`).
fn path_segments(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .collect()
}

/// How compose tells a host path from a volume name.
fn looks_like_path(source: &str) -> bool {
    source.starts_with(['/', '.', '~'])
}

/// Resolves `.`, `..` and repeated slashes in a host path as text. Absolute paths stay under
/// `/`; `~/` paths may not use `..` (the home directory's location is unknown here); relative
/// paths may not leave the compose file's directory.
fn normalize_host_path(path: &str) -> Result<String, String> {
    if path.is_empty() || path.len() > 1024 {
        return Err("a host path has 1 to 1024 characters".into());
    }
    if path
        .chars()
        .any(|c| c.is_control() || c == ',' || c == ':' || c == '\\')
    {
        return Err(format!(
            "the host path {} contains a control character, ',', ':' or '\\'",
            quote(path)
        ));
    }
    let (prefix, rest) = if let Some(rest) = path.strip_prefix('/') {
        ("/", rest)
    } else if path == "~" || path.starts_with("~/") {
        ("~/", &path[1..])
    } else if path.starts_with('~') {
        return Err(format!(
            "the host path {} names another user's home: write an absolute path",
            quote(path)
        ));
    } else {
        ("./", path)
    };
    let mut segments: Vec<&str> = Vec::new();
    for segment in rest.split('/') {
        match segment {
            "" | "." => {}
            ".." if prefix == "/" => {
                segments.pop();
            }
            ".." => {
                if prefix == "~/" || segments.pop().is_none() {
                    return Err(format!(
                        "the host path {} leaves the {}: write an absolute path",
                        quote(path),
                        if prefix == "~/" {
                            "home directory"
                        } else {
                            "compose file's directory"
                        }
                    ));
                }
            }
            segment => segments.push(segment),
        }
    }
    Ok(match (prefix, segments.is_empty()) {
        ("/", true) => "/".to_owned(),
        ("~/", true) => "~".to_owned(),
        ("./", true) => ".".to_owned(),
        (prefix, false) => format!("{prefix}{}", segments.join("/")),
        _ => unreachable!("the prefix is one of three"),
    })
}

/// A path inside the container: absolute, printable, and free of the separators of
/// `--volume` and `--mount`.
fn check_container_path(path: &str) -> Result<(), String> {
    if path.starts_with('/')
        && path.len() <= 1024
        && !path.chars().any(|c| c.is_control() || c == ',' || c == ':')
    {
        Ok(())
    } else {
        Err(format!(
            "{} is not an absolute path in the container (without ',' or ':')",
            quote(path)
        ))
    }
}

/// Splits a command line into words as compose does: blanks separate words, single quotes keep
/// everything, double quotes keep everything but `\"`, `\\`, `\$` and `` \` ``, and a backslash
/// outside quotes keeps the next character. No shell runs, so unquoted operators are refused.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => words.extend(word.take()),
            '\'' => {
                let word = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("a single quote is not closed".into()),
                    }
                }
            }
            '"' => {
                let word = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("a double quote is not closed".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("a double quote is not closed".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("it ends with a backslash".into()),
            },
            ';' | '&' | '|' | '<' | '>' | '`' => {
                return Err(format!(
                    "{c:?} is a shell operator, and no shell runs the command: write [\"sh\", \"-c\", \"…\"] to run one"
                ));
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// The text of a mapping key; compose keys are strings.
fn mapping_key<'v>(
    subject: &ComposeSubject,
    field: &str,
    key: &'v Value,
) -> Result<&'v str, ComposeRefusal> {
    key.as_str()
        .ok_or_else(|| invalid(subject, field, "a key is not a string"))
}

fn invalid(subject: &ComposeSubject, field: &str, reason: impl Into<String>) -> ComposeRefusal {
    ComposeRefusal::Invalid {
        subject: subject.clone(),
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn unsupported(subject: &ComposeSubject, field: String, advice: &'static str) -> ComposeRefusal {
    ComposeRefusal::Unsupported {
        subject: subject.clone(),
        field,
        advice,
    }
}

/// Why a field is refused, and what to write instead.
fn advice_for(field: &str) -> &'static str {
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

/// An error's text on one line, so a refusal stays one line.
fn one_line(error: impl fmt::Display) -> String {
    error.to_string().replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(names: &[&str]) -> ComposeAllowances {
        ComposeAllowances::from_names(
            &names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>(),
        )
    }

    fn all_allowed() -> ComposeAllowances {
        allow(&ComposePermission::ALL.map(ComposePermission::name))
    }

    /// Plans a file of one service, `web`, whose settings are `settings` (indented under it),
    /// with `extra` appended at the top level.
    fn web(
        settings: &str,
        extra: &str,
        allowances: &ComposeAllowances,
    ) -> Result<StackService, ComposeRefusal> {
        let text = format!("services:\n  web:\n    image: nginx:1.27\n{settings}{extra}");
        plan_stack(&text, &[], allowances).map(|mut plan| plan.services.remove(0))
    }

    fn refusal(settings: &str, extra: &str, allowances: &ComposeAllowances) -> ComposeRefusal {
        match web(settings, extra, allowances) {
            Ok(service) => panic!("planned, expected a refusal:\n{settings}{extra}\n{service:?}"),
            Err(refusal) => {
                assert!(!refusal.to_string().contains('\n'), "{refusal}");
                refusal
            }
        }
    }

    fn denied_permission(refusal: &ComposeRefusal) -> Option<ComposePermission> {
        match refusal {
            ComposeRefusal::NotAllowed { permission, .. } => Some(*permission),
            _ => None,
        }
    }

    const STACK: &str = r#"
name: shop
x-common: &common
  restart: unless-stopped
  labels:
    team: shop
services:
  web:
    <<: *common
    build: ./web
    image: shop-web
    container_name: web-1
    ports:
      - "8080:3000"
    environment:
      REDIS_URL: redis://redis:6379
      WORKERS: 4
      PRICE_TAG: "$$5"
    depends_on:
      redis:
        condition: service_healthy
    healthcheck:
      test: curl -fsS http://localhost:3000/health || exit 1
      interval: 30s
      timeout: 5s
      retries: 3
      start_period: 1m
  redis:
    <<: *common
    image: redis:7.4
    command: ["redis-server", "--appendonly", "yes"]
    volumes:
      - cache:/data
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 1m30s
  worker:
    build:
      context: .
      dockerfile: worker.Dockerfile
    command: node worker.js --queue 'orders high'
    environment:
      - REDIS_URL=redis://redis:6379
      - MODE=
    depends_on: [web, redis]
volumes:
  cache:
networks:
  default:
"#;

    const IMAGES: &[(&str, &str)] = &[
        ("web", "reg.local/shop/web@sha256:aaaa"),
        ("worker", "reg.local/shop/worker@sha256:bbbb"),
    ];

    fn images() -> Vec<(String, String)> {
        IMAGES
            .iter()
            .map(|(name, image)| ((*name).to_owned(), (*image).to_owned()))
            .collect()
    }

    #[test]
    fn plans_a_realistic_stack_in_start_order() {
        let plan = plan_stack(STACK, &images(), &ComposeAllowances::default()).unwrap();
        let names: Vec<&str> = plan
            .services
            .iter()
            .map(|service| service.name.as_str())
            .collect();
        assert_eq!(names, ["redis", "web", "worker"]);

        let redis = &plan.services[0];
        assert_eq!(
            redis,
            &StackService {
                name: "redis".into(),
                image: "redis:7.4".into(),
                command: Some(vec![
                    "redis-server".into(),
                    "--appendonly".into(),
                    "yes".into()
                ]),
                entrypoint: None,
                environment: vec![],
                ports: vec![],
                volumes: vec![VolumeMount {
                    source: VolumeSource::Named("cache".into()),
                    target: "/data".into(),
                    read_only: false,
                }],
                healthcheck: Some(ComposeHealthcheck {
                    test: HealthTest::Exec(vec!["redis-cli".into(), "ping".into()]),
                    interval: Some(Duration::from_secs(90)),
                    timeout: None,
                    retries: None,
                    start_period: None,
                }),
                depends_on: vec![],
                privileged: false,
                cap_add: vec![],
                network_mode_host: false,
                pid_host: false,
                user: None,
                working_dir: None,
            }
        );

        let web = &plan.services[1];
        assert_eq!(
            web.image, "reg.local/shop/web@sha256:aaaa",
            "the built image wins over image:"
        );
        assert_eq!(
            web.ports,
            [PortMapping {
                container_port: 3000,
                host_port: Some(8080),
                host_ip: None,
                protocol: PortProtocol::Tcp,
            }]
        );
        assert_eq!(
            web.environment,
            [
                ("REDIS_URL".into(), "redis://redis:6379".into()),
                ("WORKERS".into(), "4".into()),
                ("PRICE_TAG".into(), "$5".into()),
            ]
        );
        assert_eq!(web.depends_on, ["redis"]);
        assert_eq!(
            web.healthcheck,
            Some(ComposeHealthcheck {
                test: HealthTest::Shell("curl -fsS http://localhost:3000/health || exit 1".into()),
                interval: Some(Duration::from_secs(30)),
                timeout: Some(Duration::from_secs(5)),
                retries: Some(3),
                start_period: Some(Duration::from_secs(60)),
            })
        );

        let worker = &plan.services[2];
        assert_eq!(worker.image, "reg.local/shop/worker@sha256:bbbb");
        assert_eq!(
            worker.command.as_deref(),
            Some(
                &[
                    "node".to_owned(),
                    "worker.js".into(),
                    "--queue".into(),
                    "orders high".into()
                ][..]
            )
        );
        assert_eq!(
            worker.environment,
            [
                ("REDIS_URL".into(), "redis://redis:6379".into()),
                ("MODE".into(), String::new())
            ]
        );
        assert_eq!(worker.depends_on, ["web", "redis"]);
    }

    #[test]
    fn start_order_follows_dependencies_and_otherwise_the_file() {
        let text = "services:\n  a:\n    image: x\n    depends_on: [d]\n  b:\n    image: x\n  c:\n    image: x\n    depends_on: [a, b]\n  d:\n    image: x\n";
        let plan = plan_stack(text, &[], &ComposeAllowances::default()).unwrap();
        let names: Vec<&str> = plan
            .services
            .iter()
            .map(|service| service.name.as_str())
            .collect();
        assert_eq!(names, ["b", "d", "a", "c"]);
    }

    #[test]
    fn dependency_cycles_are_refused_by_name() {
        for (text, message) in [
            (
                "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [c]\n  c:\n    image: x\n    depends_on: [a]\n",
                "compose service \"a\" depends on itself through depends_on: a → b → c → a",
            ),
            (
                "services:\n  free:\n    image: x\n  a:\n    image: x\n    depends_on: [a]\n",
                "compose service \"a\" depends on itself through depends_on: a → a",
            ),
            (
                "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [c]\n  c:\n    image: x\n    depends_on: [b]\n",
                "compose service \"b\" depends on itself through depends_on: b → c → b",
            ),
        ] {
            let refusal = plan_stack(text, &[], &ComposeAllowances::default()).unwrap_err();
            assert_eq!(refusal.to_string(), message);
        }
        let unknown = plan_stack(
            "services:\n  a:\n    image: x\n    depends_on: [ghost]\n",
            &[],
            &ComposeAllowances::default(),
        )
        .unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "compose service \"a\" has an invalid depends_on: there is no service \"ghost\" in the file"
        );
    }

    #[test]
    fn dependency_conditions() {
        let service = web(
            "    depends_on:\n      db:\n        condition: service_started\n        restart: true\n        required: false\n  db:\n    image: postgres:17\n",
            "",
            &ComposeAllowances::default(),
        );
        // `web` comes after `db`, so the helper's first service is `db`.
        assert_eq!(service.unwrap().name, "db");
        let refusal = refusal(
            "    depends_on:\n      migrate:\n        condition: service_completed_successfully\n  migrate:\n    image: x\n",
            "",
            &ComposeAllowances::default(),
        );
        assert!(
            matches!(refusal, ComposeRefusal::Unsupported { .. }),
            "{refusal}"
        );
    }

    #[test]
    fn built_services_need_their_image_and_others_keep_theirs() {
        let text = "services:\n  web:\n    build: .\n  db:\n    image: postgres:17\n";
        let refusal = plan_stack(text, &[], &ComposeAllowances::default()).unwrap_err();
        assert_eq!(
            refusal,
            ComposeRefusal::NotBuilt {
                service: "web".into()
            }
        );
        assert_eq!(
            refusal.to_string(),
            "compose service \"web\" has a build: section, but the build produced no image for it"
        );
        let pinned = vec![
            ("web".to_owned(), "reg/p/s/web@sha256:1".to_owned()),
            ("db".to_owned(), "reg/p/s/db@sha256:2".to_owned()),
        ];
        let plan = plan_stack(text, &pinned, &ComposeAllowances::default()).unwrap();
        assert_eq!(plan.services[0].image, "reg/p/s/web@sha256:1");
        assert_eq!(plan.services[1].image, "postgres:17");

        let neither = plan_stack(
            "services:\n  web:\n    ports: [\"80\"]\n",
            &[],
            &ComposeAllowances::default(),
        );
        assert!(
            matches!(neither, Err(ComposeRefusal::Invalid { .. })),
            "{neither:?}"
        );
        for image in ["--privileged", "a b", "", "x;y"] {
            let text = format!("services:\n  web:\n    image: {image:?}\n");
            assert!(
                plan_stack(&text, &[], &ComposeAllowances::default()).is_err(),
                "{image}"
            );
        }
    }

    #[test]
    fn health_checks() {
        let check = |settings: &str| {
            web(
                &format!("    healthcheck:\n{settings}"),
                "",
                &ComposeAllowances::default(),
            )
            .map(|service| service.healthcheck.unwrap())
        };
        let exec = check("      test: [\"CMD\", \"curl\", \"-f\", \"http://localhost/\"]\n      timeout: 500ms\n      retries: 0\n").unwrap();
        assert_eq!(
            exec.test,
            HealthTest::Exec(vec!["curl".into(), "-f".into(), "http://localhost/".into()])
        );
        assert_eq!(
            exec.test.argv().unwrap(),
            ["curl", "-f", "http://localhost/"]
        );
        assert_eq!(exec.timeout, Some(Duration::from_millis(500)));
        assert_eq!(exec.retries, Some(0));

        let shell = check(
            "      test: [\"CMD-SHELL\", \"pg_isready -U $${USER}\"]\n      start_period: 1m30s\n",
        )
        .unwrap();
        assert_eq!(
            shell.test,
            HealthTest::Shell("pg_isready -U ${USER}".into())
        );
        assert_eq!(
            shell.test.argv().unwrap(),
            ["/bin/sh", "-c", "pg_isready -U ${USER}"]
        );
        assert_eq!(shell.start_period, Some(Duration::from_secs(90)));

        assert_eq!(
            check("      test: [\"NONE\"]\n").unwrap().test,
            HealthTest::Disabled
        );
        assert_eq!(
            check("      disable: true\n").unwrap().test,
            HealthTest::Disabled
        );
        assert_eq!(HealthTest::Disabled.argv(), None);
        assert_eq!(
            check("      test: wget -q -O- localhost\n      start_interval: 2s\n")
                .unwrap()
                .test,
            HealthTest::Shell("wget -q -O- localhost".into())
        );

        for bad in [
            "      test: [\"CMD\"]\n",
            "      test: [\"CMD-SHELL\", \"a\", \"b\"]\n",
            "      test: [\"NONE\", \"x\"]\n",
            "      test: [\"RUN\", \"x\"]\n",
            "      test: \"\"\n",
            "      interval: 10s\n",
            "      test: [\"CMD\", \"true\"]\n      interval: 10\n",
            "      test: [\"CMD\", \"true\"]\n      interval: ten\n",
            "      test: [\"CMD\", \"true\"]\n      retries: -1\n",
            "      test: [\"CMD\", \"true\"]\n      probe: http\n",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn compose_durations() {
        for (text, expected) in [
            ("0", Duration::ZERO),
            ("500ms", Duration::from_millis(500)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5s", Duration::from_millis(1500)),
            (".5s", Duration::from_millis(500)),
            ("2h", Duration::from_secs(7200)),
            ("1h0m0.25s", Duration::from_millis(3_600_250)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("1.000000000000000000001s", Duration::from_secs(1)),
        ] {
            assert_eq!(parse_compose_duration(text), Some(expected), "{text}");
        }
        for bad in [
            "",
            "5",
            "s",
            "1x",
            "-1s",
            "1.2.3s",
            "1s ",
            " 1s",
            "1ss",
            ".s",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_compose_duration(bad), None, "{bad}");
        }
    }

    /// Each permission: the setting that asks for it, refused without the allowance and with
    /// every other one, and planned with it.
    #[test]
    fn permissions_are_refused_unless_allowed() {
        let cases: &[(&str, &str, ComposePermission)] = &[
            ("    privileged: true\n", "", ComposePermission::Privileged),
            ("    cap_add: [NET_ADMIN]\n", "", ComposePermission::CapAdd),
            (
                "    volumes:\n      - ./data:/data\n",
                "",
                ComposePermission::HostBind,
            ),
            (
                "    volumes:\n      - /etc:/x:ro\n",
                "",
                ComposePermission::HostBind,
            ),
            (
                "    volumes:\n      - ~/x:/y\n",
                "",
                ComposePermission::HostBind,
            ),
            (
                "    volumes:\n      - type: bind\n        source: /srv/www\n        target: /usr/share/nginx/html\n",
                "",
                ComposePermission::HostBind,
            ),
            (
                "    volumes:\n      - data:/data\n",
                "volumes:\n  data:\n    driver: local\n    driver_opts:\n      type: none\n      o: bind\n      device: /srv/data\n",
                ComposePermission::HostBind,
            ),
            (
                "    volumes:\n      - /var/run/docker.sock:/var/run/docker.sock\n",
                "",
                ComposePermission::Socket,
            ),
            (
                "    volumes:\n      - /run/podman/podman.sock:/var/run/docker.sock\n",
                "",
                ComposePermission::Socket,
            ),
            (
                "    volumes:\n      - /run/user/1000/podman/podman.sock:/s.sock\n",
                "",
                ComposePermission::Socket,
            ),
            (
                "    volumes:\n      - /srv/app/agent.sock:/agent.sock\n",
                "",
                ComposePermission::Socket,
            ),
            (
                "    volumes:\n      - /var/run/../run/./docker.sock:/d\n",
                "",
                ComposePermission::Socket,
            ),
            (
                "    volumes:\n      - type: bind\n        source: /var/run/docker.sock\n        target: /var/run/docker.sock\n",
                "",
                ComposePermission::Socket,
            ),
            (
                "    volumes:\n      - engine:/engine\n",
                "volumes:\n  engine:\n    driver_opts:\n      type: none\n      o: bind,ro\n      device: /run/podman/podman.sock\n",
                ComposePermission::Socket,
            ),
            (
                "    network_mode: host\n",
                "",
                ComposePermission::HostNetwork,
            ),
            ("    pid: host\n", "", ComposePermission::HostPid),
        ];
        for (settings, extra, permission) in cases {
            let others: Vec<&str> = ComposePermission::ALL
                .into_iter()
                .filter(|other| other != permission)
                .map(ComposePermission::name)
                .collect();
            for allowances in [ComposeAllowances::default(), allow(&others)] {
                let refused = refusal(settings, extra, &allowances);
                assert_eq!(
                    denied_permission(&refused),
                    Some(*permission),
                    "{settings}{extra}: {refused}"
                );
                assert!(
                    refused.to_string().ends_with(&format!(
                        "; Wharf refuses it unless the service's deploy settings allow {:?}",
                        permission.name()
                    )),
                    "{refused}"
                );
            }
            let planned = web(settings, extra, &allow(&[permission.name()]));
            assert!(planned.is_ok(), "{settings}{extra}: {planned:?}");
        }
    }

    #[test]
    fn allowed_settings_reach_the_plan() {
        let service = web(
            "    privileged: true\n    cap_add: [net_admin, SYS_TIME]\n    network_mode: host\n    pid: host\n    volumes:\n      - ./data/../cache/:/cache:ro\n      - /var/run/docker.sock:/var/run/docker.sock\n      - ~/backups:/backups:rw\n      - host:/host\n",
            "volumes:\n  host:\n    driver_opts:\n      type: none\n      o: bind,ro\n      device: /srv//host\n",
            &all_allowed(),
        )
        .unwrap();
        assert!(service.privileged && service.network_mode_host && service.pid_host);
        assert_eq!(service.cap_add, ["NET_ADMIN", "SYS_TIME"]);
        let mounts: Vec<(VolumeSource, &str, bool)> = service
            .volumes
            .iter()
            .map(|mount| (mount.source.clone(), mount.target.as_str(), mount.read_only))
            .collect();
        assert_eq!(
            mounts,
            [
                (VolumeSource::HostPath("./cache".into()), "/cache", true),
                (
                    VolumeSource::HostPath("/var/run/docker.sock".into()),
                    "/var/run/docker.sock",
                    false
                ),
                (
                    VolumeSource::HostPath("~/backups".into()),
                    "/backups",
                    false
                ),
                (VolumeSource::HostPath("/srv/host".into()), "/host", true),
            ]
        );
        let plain = web(
            "    privileged: false\n    cap_add: []\n    network_mode: bridge\n",
            "",
            &ComposeAllowances::default(),
        )
        .unwrap();
        assert!(!plain.privileged && plain.cap_add.is_empty() && !plain.network_mode_host);
    }

    #[test]
    fn the_refusal_names_the_service_the_field_and_the_setting() {
        let text = "services:\n  web:\n    image: nginx\n  db:\n    image: postgres:17\n    privileged: true\n";
        assert_eq!(
            plan_stack(text, &[], &ComposeAllowances::default())
                .unwrap_err()
                .to_string(),
            "compose service \"db\" asks for privileged mode; Wharf refuses it unless the service's deploy settings allow \"privileged\""
        );
        assert_eq!(
            refusal(
                "    cap_add: [SYS_ADMIN]\n",
                "",
                &ComposeAllowances::default()
            )
            .to_string(),
            "compose service \"web\" asks for added capabilities (cap_add: SYS_ADMIN); Wharf refuses it unless the service's deploy settings allow \"cap_add\""
        );
        assert_eq!(
            refusal(
                "    volumes:\n      - /etc:/x\n",
                "",
                &ComposeAllowances::default()
            )
            .to_string(),
            "compose service \"web\" asks for a bind mount of the host path \"/etc\"; Wharf refuses it unless the service's deploy settings allow \"host_bind\""
        );
        assert_eq!(
            refusal("    devices:\n      - /dev/kvm\n", "", &all_allowed()).to_string(),
            "compose service \"web\" sets \"devices\", which Wharf does not support: it gives the container the host's devices"
        );
    }

    #[test]
    fn sockets_need_their_own_allowance_even_where_host_paths_are_allowed() {
        let host_bind = allow(&["host_bind"]);
        for mount in [
            "/var/run/docker.sock:/var/run/docker.sock",
            "/run/user/1000/podman/podman.sock:/var/run/docker.sock",
            "./app.sock:/app.sock",
            "~/.docker/run/docker.sock:/d.sock",
        ] {
            let refused = refusal(&format!("    volumes:\n      - {mount}\n"), "", &host_bind);
            assert_eq!(
                denied_permission(&refused),
                Some(ComposePermission::Socket),
                "{mount}"
            );
        }
        // Directories that hold a socket need both allowances.
        for mount in [
            "/:/host",
            "/run:/run",
            "/var:/var",
            "/run/user/1000:/u",
            "/proc/1/root:/r",
            "/proc:/p",
        ] {
            let settings = format!("    volumes:\n      - {mount}\n");
            let refused = refusal(&settings, "", &ComposeAllowances::default());
            assert_eq!(
                denied_permission(&refused),
                Some(ComposePermission::HostBind),
                "{mount}"
            );
            let refused = refusal(&settings, "", &host_bind);
            assert_eq!(
                denied_permission(&refused),
                Some(ComposePermission::Socket),
                "{mount}"
            );
            let refused = refusal(&settings, "", &allow(&["socket"]));
            assert_eq!(
                denied_permission(&refused),
                Some(ComposePermission::HostBind),
                "{mount}"
            );
            assert!(
                web(&settings, "", &allow(&["host_bind", "socket"])).is_ok(),
                "{mount}"
            );
        }
        // A socket alone needs only "socket".
        assert!(
            web(
                "    volumes:\n      - /run/podman/podman.sock:/run/podman/podman.sock\n",
                "",
                &allow(&["socket"])
            )
            .is_ok()
        );
        // Paths that lead nowhere near a socket need only "host_bind".
        assert!(
            web(
                "    volumes:\n      - /srv/www:/www\n      - /run/secrets-not:/x\n",
                "",
                &host_bind
            )
            .is_ok()
        );
    }

    #[test]
    fn socket_paths_for_the_runtime() {
        for path in [
            "/var/run/docker.sock",
            "/run/podman/podman.sock",
            "/run/user/1000/podman/podman.sock",
            "/run/user/1000",
            "/",
            "/proc/self/root",
            "//run//",
            "/home/app/x.sock",
            "relative/../../escape",
            "",
        ] {
            assert!(reaches_container_socket(path), "{path}");
        }
        for path in [
            "/srv/data",
            "/home/app",
            "/var/lib/app",
            "/run/user/1000/app",
            "./data",
        ] {
            assert!(!reaches_container_socket(path), "{path}");
        }
    }

    #[test]
    fn never_supported_whatever_is_allowed() {
        for (settings, extra) in [
            ("    devices:\n      - /dev/sda:/dev/sda\n", ""),
            ("    security_opt:\n      - seccomp:unconfined\n", ""),
            ("    ipc: host\n", ""),
            ("    ipc: shareable\n", ""),
            ("    userns_mode: host\n", ""),
            ("    cgroup_parent: /system.slice\n", ""),
            (
                "    extends:\n      file: ../other.yml\n      service: base\n",
                "",
            ),
            ("    secrets: [token]\n", ""),
            ("    env_file: .env\n", ""),
            ("    use_api_socket: true\n", ""),
            ("    sysctls:\n      net.ipv4.ip_forward: 1\n", ""),
            ("    volumes_from: [other]\n", ""),
            ("    network_mode: \"container:abc\"\n", ""),
            ("    pid: \"service:db\"\n", ""),
            ("    made_up_field: 1\n", ""),
            ("    mem_limit: 1g\n", ""),
            ("    cap_drop: [ALL]\n", ""),
            ("", "secrets:\n  token:\n    file: /etc/shadow\n"),
            ("", "configs:\n  app:\n    file: ./app.conf\n"),
            ("", "include:\n  - other.yml\n"),
            ("", "volumes:\n  data:\n    external: true\n"),
            ("", "volumes:\n  data:\n    name: other-project_data\n"),
            ("", "volumes:\n  data:\n    driver: rexray\n"),
            (
                "",
                "volumes:\n  data:\n    driver_opts:\n      type: ext4\n      device: /dev/sdb1\n",
            ),
            (
                "",
                "volumes:\n  data:\n    driver_opts:\n      type: tmpfs\n      o: size=100m\n",
            ),
            (
                "    volumes:\n      - type: tmpfs\n        target: /tmp\n",
                "",
            ),
            (
                "    volumes:\n      - type: bind\n        source: ./x\n        target: /x\n        bind:\n          propagation: rshared\n",
                "",
            ),
            ("    volumes:\n      - ./data:/data:z\n", ""),
            ("    ports:\n      - \"8000-8001:8000-8001\"\n", ""),
            ("    ports:\n      - \"80/sctp\"\n", ""),
        ] {
            let refused = refusal(settings, extra, &all_allowed());
            assert!(
                matches!(refused, ComposeRefusal::Unsupported { .. }),
                "{settings}{extra}: {refused:?}"
            );
        }
        assert_eq!(
            refusal("    ipc: host\n", "", &all_allowed()).to_string(),
            "compose service \"web\" sets ipc: \"host\", which Wharf does not support: it shares the host's IPC namespace with the container"
        );
        assert_eq!(
            refusal(
                "",
                "secrets:\n  token:\n    file: ./token\n",
                &all_allowed()
            )
            .to_string(),
            "the compose file sets \"secrets\", which Wharf does not support: their files are not on the deploy host; set the values as Wharf variables of the service"
        );
    }

    #[test]
    fn harmless_fields_are_ignored() {
        let service = web(
            "    container_name: prod-db\n    hostname: web\n    restart: always\n    labels: {a: b}\n    expose: [\"80\"]\n    networks: [front]\n    logging:\n      driver: json-file\n    stop_grace_period: 1m\n    init: true\n    x-notes: anything\n",
            "version: \"3.9\"\nnetworks:\n  front: {}\nx-anchors: {}\n",
            &ComposeAllowances::default(),
        )
        .unwrap();
        assert_eq!(service.name, "web");
        assert_eq!(service.image, "nginx:1.27");
    }

    #[test]
    fn ports() {
        let port = |text: &str| {
            web(
                &format!("    ports:\n      - {text}\n"),
                "",
                &ComposeAllowances::default(),
            )
            .map(|service| service.ports[0])
        };
        let tcp = |container_port, host_port, host_ip: Option<&str>| PortMapping {
            container_port,
            host_port,
            host_ip: host_ip.map(|ip| ip.parse().unwrap()),
            protocol: PortProtocol::Tcp,
        };
        for (text, expected) in [
            ("\"8080\"", tcp(8080, None, None)),
            ("8080", tcp(8080, None, None)),
            ("80:80", tcp(80, Some(80), None)),
            ("\"8080:80\"", tcp(80, Some(8080), None)),
            (
                "\"127.0.0.1:8080:80\"",
                tcp(80, Some(8080), Some("127.0.0.1")),
            ),
            ("\"127.0.0.1::80\"", tcp(80, None, Some("127.0.0.1"))),
            ("\"[::1]:8080:80\"", tcp(80, Some(8080), Some("::1"))),
            ("\"::1:8080:80\"", tcp(80, Some(8080), Some("::1"))),
            ("\"8080:80/tcp\"", tcp(80, Some(8080), None)),
            ("\"0:80\"", tcp(80, None, None)),
            (
                "{target: 80, published: \"8080\", host_ip: 0.0.0.0, mode: host}",
                tcp(80, Some(8080), Some("0.0.0.0")),
            ),
            ("{target: 80}", tcp(80, None, None)),
        ] {
            assert_eq!(port(text).unwrap(), expected, "{text}");
        }
        let udp = port("\"8080:80/udp\"").unwrap();
        assert_eq!(
            (udp.protocol, udp.host_port, udp.container_port),
            (PortProtocol::Udp, Some(8080), 80)
        );
        let udp = port("{target: 53, published: 5353, protocol: udp}").unwrap();
        assert_eq!(
            (udp.protocol, udp.host_port),
            (PortProtocol::Udp, Some(5353))
        );
        for bad in [
            "\"0\"",
            "\"70000:80\"",
            "\"8080:http\"",
            "\"localhost:8080:80\"",
            "\"1.2.3.4:80\"",
            "\"[::1:80:80\"",
            "\"${PORT}:80\"",
            "{published: 8080}",
            "{target: 80, extra: 1}",
        ] {
            assert!(port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volumes() {
        let mounts = web(
            "    volumes:\n      - /cache\n      - data:/data:ro\n      - type: volume\n        source: data\n        target: /again\n        read_only: true\n      - type: volume\n        target: /scratch\n",
            "volumes:\n  data: {}\n",
            &ComposeAllowances::default(),
        )
        .unwrap()
        .volumes;
        assert_eq!(
            mounts,
            [
                VolumeMount {
                    source: VolumeSource::Anonymous,
                    target: "/cache".into(),
                    read_only: false
                },
                VolumeMount {
                    source: VolumeSource::Named("data".into()),
                    target: "/data".into(),
                    read_only: true
                },
                VolumeMount {
                    source: VolumeSource::Named("data".into()),
                    target: "/again".into(),
                    read_only: true
                },
                VolumeMount {
                    source: VolumeSource::Anonymous,
                    target: "/scratch".into(),
                    read_only: false
                },
            ]
        );
        for (settings, extra) in [
            ("    volumes:\n      - undeclared:/data\n", ""),
            (
                "    volumes:\n      - data:relative\n",
                "volumes:\n  data:\n",
            ),
            ("    volumes:\n      - data:/a,b\n", "volumes:\n  data:\n"),
            ("    volumes:\n      - a:b:c:d\n", ""),
            ("    volumes:\n      - ../outside:/x\n", ""),
            ("    volumes:\n      - ./a/../../outside:/x\n", ""),
            ("    volumes:\n      - ~/../root:/x\n", ""),
            ("    volumes:\n      - ~root/x:/x\n", ""),
            (
                "    volumes:\n      - type: bind\n        source: data\n        target: /x\n",
                "",
            ),
            ("    volumes:\n      - type: bind\n        target: /x\n", ""),
            (
                "    volumes:\n      - {source: data, target: /x}\n",
                "volumes:\n  data:\n",
            ),
            ("", "volumes:\n  \"../x\": {}\n"),
        ] {
            let refused = refusal(settings, extra, &all_allowed());
            assert!(
                matches!(
                    refused,
                    ComposeRefusal::Invalid { .. } | ComposeRefusal::Unsupported { .. }
                ),
                "{settings}{extra}: {refused:?}"
            );
        }
        // A declared volume that binds a host path is checked where it is mounted, not where it
        // is declared.
        assert!(web("", "volumes:\n  unused:\n    driver_opts:\n      type: none\n      o: bind\n      device: /etc\n", &ComposeAllowances::default()).is_ok());
    }

    #[test]
    fn environment() {
        let environment = |settings: &str| {
            web(
                &format!("    environment:\n{settings}"),
                "",
                &ComposeAllowances::default(),
            )
            .map(|service| service.environment)
        };
        assert_eq!(
            environment("      A: text\n      B: 3\n      C: true\n      D: \"\"\n      E: \"$$HOME and $${X}\"\n").unwrap(),
            [
                ("A".into(), "text".into()),
                ("B".into(), "3".into()),
                ("C".into(), "true".into()),
                ("D".into(), String::new()),
                ("E".into(), "$HOME and ${X}".into()),
            ]
        );
        assert_eq!(
            environment("      - A=x=y\n      - B=\n").unwrap(),
            [("A".into(), "x=y".into()), ("B".into(), String::new())]
        );
        for bad in [
            "      A:\n",
            "      - A\n",
            "      - A=1\n      - A=2\n",
            "      - 1A=x\n",
            "      A-B: x\n",
            "      A: [1]\n",
            "      A: \"nul\\0\"\n",
        ] {
            assert!(environment(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn interpolation_is_refused_with_its_text() {
        assert_eq!(
            refusal(
                "    environment:\n      DATABASE_URL: ${DATABASE_URL:-postgres://db}\n",
                "",
                &ComposeAllowances::default()
            )
            .to_string(),
            "compose service \"web\" uses \"${DATABASE_URL:-postgres://db}\" in environment, which Wharf does not interpolate: set the value as a Wharf variable of the service, or write $$ for a literal $"
        );
        for settings in [
            "    environment:\n      - TOKEN=$TOKEN\n",
            "    command: echo $HOME\n",
            "    entrypoint: [\"/bin/$SHELL\"]\n",
            "    user: ${UID}\n",
            "    working_dir: /srv/$APP\n",
            "    volumes:\n      - ${DATA}:/data\n",
            "    environment:\n      PRICE: 5$\n",
        ] {
            let refused = refusal(settings, "", &all_allowed());
            assert!(
                matches!(refused, ComposeRefusal::Interpolation { .. }),
                "{settings}: {refused:?}"
            );
        }
        let refused = plan_stack(
            "services:\n  web:\n    image: ${REGISTRY}/web\n",
            &[],
            &all_allowed(),
        )
        .unwrap_err();
        assert!(
            matches!(refused, ComposeRefusal::Interpolation { .. }),
            "{refused:?}"
        );
    }

    #[test]
    fn commands_and_entrypoints() {
        let command = |value: &str| {
            web(
                &format!("    command: {value}\n"),
                "",
                &ComposeAllowances::default(),
            )
            .map(|service| service.command.unwrap())
        };
        for (value, words) in [
            ("npm run start", &["npm", "run", "start"][..]),
            ("[\"sleep\", 10]", &["sleep", "10"]),
            ("[]", &[]),
            ("\"''\"", &[""]),
            ("\"python -c 'print(1)'\"", &["python", "-c", "print(1)"]),
            ("'echo \"a \\\"b\\\"\" c\\ d'", &["echo", "a \"b\"", "c d"]),
            ("\"sh -c 'echo $$HOME'\"", &["sh", "-c", "echo $HOME"]),
            (
                "[\"sh\", \"-c\", \"a && b | c\"]",
                &["sh", "-c", "a && b | c"],
            ),
            ("\"echo 'a && b'\"", &["echo", "a && b"]),
        ] {
            assert_eq!(command(value).unwrap(), words, "{value}");
        }
        for bad in [
            "a && b",
            "a; b",
            "a | b",
            "a > out",
            "\"echo 'open\"",
            "\"echo \\\"open\"",
            "[[\"nested\"]]",
        ] {
            assert!(command(bad).is_err(), "{bad}");
        }
        let service = web("    entrypoint: [\"/docker-entrypoint.sh\"]\n    user: \"1000:1000\"\n    working_dir: /app\n", "", &ComposeAllowances::default()).unwrap();
        assert_eq!(service.entrypoint.unwrap(), ["/docker-entrypoint.sh"]);
        assert_eq!(service.user.as_deref(), Some("1000:1000"));
        assert_eq!(service.working_dir.as_deref(), Some("/app"));
        let numeric = web("    user: 1000\n", "", &ComposeAllowances::default()).unwrap();
        assert_eq!(numeric.user.as_deref(), Some("1000"));
        for bad in [
            "    user: \"-u root\"\n",
            "    working_dir: app\n",
            "    entrypoint: {a: b}\n",
        ] {
            assert!(
                web(bad, "", &ComposeAllowances::default()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn capabilities() {
        let refused = refusal("    cap_add: [ALL]\n", "", &allow(&["cap_add"]));
        assert_eq!(
            denied_permission(&refused),
            Some(ComposePermission::Privileged)
        );
        assert!(
            web(
                "    cap_add: [ALL]\n",
                "",
                &allow(&["cap_add", "privileged"])
            )
            .is_ok()
        );
        assert!(matches!(
            refusal("    cap_add: [\"NET ADMIN\"]\n", "", &all_allowed()),
            ComposeRefusal::Invalid { .. }
        ));
    }

    #[test]
    fn the_file_as_a_whole() {
        let none = ComposeAllowances::default();
        assert_eq!(
            plan_stack(&"#".repeat(MAX_COMPOSE_BYTES + 1), &[], &none),
            Err(ComposeRefusal::TooLarge)
        );
        assert!(matches!(
            plan_stack("services: [", &[], &none),
            Err(ComposeRefusal::NotYaml(_))
        ));
        assert!(matches!(
            plan_stack("- a\n- b\n", &[], &none),
            Err(ComposeRefusal::Invalid { .. })
        ));
        assert_eq!(
            plan_stack("services: {}\n", &[], &none),
            Err(ComposeRefusal::NoServices)
        );
        assert_eq!(
            plan_stack("volumes: {}\n", &[], &none),
            Err(ComposeRefusal::NoServices)
        );
        let many: String = (0..=MAX_STACK_SERVICES)
            .map(|index| format!("  s{index}:\n    image: x\n"))
            .collect();
        assert_eq!(
            plan_stack(&format!("services:\n{many}"), &[], &none),
            Err(ComposeRefusal::TooManyServices {
                count: MAX_STACK_SERVICES + 1
            })
        );
        for name in ["Web", "web_1", "-web", "a.b"] {
            let text = format!("services:\n  {name}:\n    image: x\n");
            let refused = plan_stack(&text, &[], &none).unwrap_err();
            assert!(
                refused
                    .to_string()
                    .starts_with(&format!("compose service {name:?} has an invalid name")),
                "{refused}"
            );
        }
        // A repeated key must not let a later `privileged: true` hide behind an earlier `false`.
        let repeated = plan_stack(
            "services:\n  web:\n    image: x\n    privileged: false\n    privileged: true\n",
            &[],
            &none,
        );
        assert!(
            matches!(repeated, Err(ComposeRefusal::NotYaml(_))),
            "{repeated:?}"
        );
        // What a merge key brings in is checked like the rest.
        let merged = plan_stack(
            "x-base: &base\n  privileged: true\nservices:\n  web:\n    <<: *base\n    image: x\n",
            &[],
            &none,
        );
        assert_eq!(
            merged.as_ref().map_err(denied_permission),
            Err(Some(ComposePermission::Privileged)),
            "{merged:?}"
        );
        // Aliases that expand beyond reason are refused by the parser.
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..10 {
            let previous = (b'a' + level - 1) as char;
            let name = (b'a' + level) as char;
            bomb.push_str(&format!("{name}: &{name} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"));
        }
        bomb.push_str("services:\n  web:\n    image: x\n");
        assert!(matches!(
            plan_stack(&bomb, &[], &none),
            Err(ComposeRefusal::NotYaml(_))
        ));
    }

    #[test]
    fn allowances_from_names() {
        assert_eq!(allow(&[]), ComposeAllowances::default());
        let some = allow(&["socket", "host_pid", "unknown"]);
        assert_eq!(
            some,
            ComposeAllowances {
                socket: true,
                host_pid: true,
                ..ComposeAllowances::default()
            }
        );
        assert_eq!(
            all_allowed(),
            ComposeAllowances {
                privileged: true,
                cap_add: true,
                host_bind: true,
                socket: true,
                host_network: true,
                host_pid: true,
            }
        );
        for permission in ComposePermission::ALL {
            assert_eq!(
                ComposePermission::parse(permission.name()),
                Some(permission)
            );
        }
    }
}

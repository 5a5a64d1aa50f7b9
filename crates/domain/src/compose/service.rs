//! Reading one compose service into a [`StackService`]: the fields Wharf knows, each read and
//! checked; what reaches past the container's isolation needs the owner's allowance, and a field
//! Wharf does not know is refused. Ports, mounts and health checks are read in their own modules.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use super::host_paths::check_container_path;
use super::refusal::{advice_for, invalid, mapping_key, set_entries, unsupported};
use super::volumes::DeclaredVolume;
use super::words::split_words;
use super::{
    ComposeAllowances, ComposePermission, ComposeRefusal, ComposeSubject, ReservedPort,
    StackService,
};
use crate::names::{check_env_name, quote};

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

/// Reads one service; `self` carries what refusals name and what the service may ask for.
pub(super) struct ServiceReader<'a> {
    pub(super) subject: ComposeSubject,
    pub(super) allow: &'a ComposeAllowances,
    pub(super) volumes: &'a BTreeMap<String, DeclaredVolume>,
    /// The host's ports Wharf listens on.
    pub(super) reserved: &'a [ReservedPort],
}

impl ServiceReader<'_> {
    pub(super) fn service(
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
        for entry in set_entries(&self.subject, "setting", fields) {
            let (key, value) = entry?;
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

    pub(super) fn flag(&self, field: &str, value: &Value) -> Result<bool, ComposeRefusal> {
        value
            .as_bool()
            .ok_or_else(|| self.invalid(field, "expected true or false"))
    }

    /// A string, number or boolean as text, interpolation refused.
    pub(super) fn scalar(&self, field: &str, value: &Value) -> Result<String, ComposeRefusal> {
        match value {
            Value::Number(number) => Ok(number.to_string()),
            Value::Bool(flag) => Ok(flag.to_string()),
            _ => self.text(field, value),
        }
    }

    /// A string, with `$$` read as `$` and any other `$` refused: Wharf does not interpolate.
    pub(super) fn text(&self, field: &str, value: &Value) -> Result<String, ComposeRefusal> {
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

    pub(super) fn require(
        &self,
        permission: ComposePermission,
        what: String,
    ) -> Result<(), ComposeRefusal> {
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

    pub(super) fn invalid(&self, field: &str, reason: impl Into<String>) -> ComposeRefusal {
        invalid(&self.subject, field, reason)
    }

    pub(super) fn unsupported(&self, field: String, advice: &'static str) -> ComposeRefusal {
        unsupported(&self.subject, field, advice)
    }
}

#[cfg(test)]
mod tests {
    use crate::compose::testing::*;
    use crate::compose::*;

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
            &[],
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
}

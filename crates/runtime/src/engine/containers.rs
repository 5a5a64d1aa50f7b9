//! Containers: started detached with what a compose service may set (network and alias,
//! ports, mounts, entrypoint, user, privileges), stopped, started again, removed, found by
//! label and inspected; a command run inside one (a health check) and its last log lines.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::{COMMAND_TIMEOUT, EngineError, Runtime, RuntimeKind, unreadable};
use crate::process::{self, CommandOutput, CommandSpec, SpawnError};

/// The most a command run inside a container (a health check) prints that is kept.
const MAX_EXEC_BYTES: usize = 16 * 1024;
/// The most of a container's log lines that is read.
const MAX_LOG_BYTES: usize = 64 * 1024;

/// `container inspect --format`: name, status, exit code, then the labels as JSON,
/// tab-separated.
const CONTAINER_LINE: &str = "{{.Name}}\t{{.State.Status}}\t{{.State.ExitCode}}\t{{json .Config.Labels}}\t\
     {{range .Mounts}}{{if eq .Type \"volume\"}}{{.Name}},{{end}}{{end}}\t\
     {{range $name, $_ := .NetworkSettings.Networks}}{{$name}},{{end}}";

/// A container as inspected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub name: String,
    pub running: bool,
    /// The exit code of its program's last run (0 while it never ended).
    pub exit_code: i64,
    pub labels: BTreeMap<String, String>,
    /// The named volumes it mounts.
    pub volumes: Vec<String>,
    /// The networks it is attached to.
    pub networks: Vec<String>,
}

/// A container to start, detached. The defaults are a plain container: the runtime's default
/// network, the image's entrypoint, user and working directory, no extra privileges.
#[derive(Debug, Clone, Default)]
pub struct ContainerRun<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub labels: &'a [(String, String)],
    /// Variables from a file, so their values never show in the process list.
    pub env_file: Option<&'a Path>,
    /// `(host port, container port)`, published on 127.0.0.1 only: the edge proxies to it.
    pub publish: Option<(u16, u16)>,
    /// More ports to publish, as a compose file writes them.
    pub ports: &'a [PortPublish],
    /// Replaces the image's command.
    pub command: Option<&'a [String]>,
    /// Replaces the image's entrypoint; a non-empty one also drops the image's command, as
    /// compose does.
    pub entrypoint: Option<&'a [String]>,
    pub user: Option<&'a str>,
    pub workdir: Option<&'a str>,
    pub mounts: &'a [Mount<'a>],
    pub network: ContainerNetwork<'a>,
    pub privileged: bool,
    /// Capabilities to add, by name.
    pub cap_add: &'a [String],
    /// Shares the host's process namespace.
    pub pid_host: bool,
}

/// Which network a container joins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ContainerNetwork<'a> {
    /// The runtime's default network.
    #[default]
    Default,
    /// The host's network namespace.
    Host,
    /// A network by name, where the other containers on it reach this one as `alias`.
    Named { name: &'a str, alias: &'a str },
}

/// A port published on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortPublish {
    /// `None`: every address of the host.
    pub host_ip: Option<IpAddr>,
    /// `None`: a port the runtime picks.
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub udp: bool,
}

/// A mount into a container. Paths and names must hold no `:` (the caller checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mount<'a> {
    pub source: MountSource<'a>,
    /// An absolute path in the container.
    pub target: &'a str,
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountSource<'a> {
    /// A fresh volume of the container's own, removed with it.
    Anonymous,
    /// A named volume.
    Volume(&'a str),
    /// A path of the host.
    HostPath(&'a Path),
}

impl PortPublish {
    /// `--publish`'s value: `[IP:][HOST:]CONTAINER[/udp]`, an IPv6 address in brackets.
    fn argument(&self) -> String {
        let mut text = match (self.host_ip, self.host_port) {
            (None, None) => String::new(),
            (None, Some(host)) => format!("{host}:"),
            (Some(ip), host) => {
                let host = host.map(|port| port.to_string()).unwrap_or_default();
                match ip {
                    IpAddr::V4(ip) => format!("{ip}:{host}:"),
                    IpAddr::V6(ip) => format!("[{ip}]:{host}:"),
                }
            }
        };
        text.push_str(&self.container_port.to_string());
        if self.udp {
            text.push_str("/udp");
        }
        text
    }
}

impl Mount<'_> {
    /// `--volume`'s value.
    fn argument(&self) -> OsString {
        let mut text = OsString::new();
        match self.source {
            MountSource::Anonymous => {}
            MountSource::Volume(name) => {
                text.push(name);
                text.push(":");
            }
            MountSource::HostPath(path) => {
                text.push(path);
                text.push(":");
            }
        }
        text.push(self.target);
        if self.read_only {
            text.push(":ro");
        }
        text
    }
}

impl Runtime {
    /// Starts a container, detached.
    pub async fn run_container(&self, run: &ContainerRun<'_>) -> Result<(), EngineError> {
        self.execute(self.run_command(run), COMMAND_TIMEOUT)
            .await
            .map(drop)
    }

    fn run_command(&self, run: &ContainerRun<'_>) -> CommandSpec {
        let mut spec = self
            .command()
            .args(["run", "--detach", "--name"])
            .arg(run.name);
        for (key, value) in run.labels {
            spec = spec.arg("--label").arg(format!("{key}={value}"));
        }
        if let Some(file) = run.env_file {
            spec = spec.arg("--env-file").arg(file);
        }
        match run.network {
            ContainerNetwork::Default => {}
            ContainerNetwork::Host => spec = spec.args(["--network", "host"]),
            ContainerNetwork::Named { name, alias } => {
                spec = spec
                    .arg("--network")
                    .arg(name)
                    .arg("--network-alias")
                    .arg(alias);
            }
        }
        if let Some((host, container)) = run.publish {
            spec = spec
                .arg("--publish")
                .arg(format!("127.0.0.1:{host}:{container}"));
        }
        for port in run.ports {
            spec = spec.arg("--publish").arg(port.argument());
        }
        for mount in run.mounts {
            spec = spec.arg("--volume").arg(mount.argument());
        }
        if let Some(user) = run.user {
            spec = spec.arg("--user").arg(user);
        }
        if let Some(workdir) = run.workdir {
            spec = spec.arg("--workdir").arg(workdir);
        }
        if run.privileged {
            spec = spec.arg("--privileged");
        }
        for capability in run.cap_add {
            spec = spec.arg("--cap-add").arg(capability);
        }
        if run.pid_host {
            spec = spec.args(["--pid", "host"]);
        }
        // Podman takes a whole entrypoint as a JSON array; Docker only a program, so the
        // rest of it goes before the command's words.
        let mut entrypoint_rest: &[String] = &[];
        match (run.entrypoint, self.kind) {
            (None, _) => {}
            (Some(entrypoint), RuntimeKind::Podman) => {
                spec = spec
                    .arg("--entrypoint")
                    .arg(serde_json::to_string(entrypoint).unwrap_or_default());
            }
            (Some(entrypoint), RuntimeKind::Docker) => {
                let (program, rest) = entrypoint
                    .split_first()
                    .map_or(("", &[][..]), |(p, r)| (p.as_str(), r));
                spec = spec.arg("--entrypoint").arg(program);
                entrypoint_rest = rest;
            }
        }
        spec = spec.arg("--").arg(run.image).args(entrypoint_rest);
        if let Some(command) = run.command {
            spec = spec.args(command);
        }
        spec
    }

    /// Stops a container, giving it `grace` after SIGTERM before SIGKILL.
    pub async fn stop_container(&self, name: &str, grace: Duration) -> Result<(), EngineError> {
        let spec = self
            .command()
            .args(["stop", "--time"])
            .arg(grace.as_secs().to_string())
            .arg("--")
            .arg(name);
        self.execute(spec, COMMAND_TIMEOUT + grace).await.map(drop)
    }

    /// Starts a stopped container again.
    pub async fn start_container(&self, name: &str) -> Result<(), EngineError> {
        let spec = self.command().args(["start", "--"]).arg(name);
        self.execute(spec, COMMAND_TIMEOUT).await.map(drop)
    }

    /// Removes a container and its anonymous volumes, killing it at once if it runs (Podman
    /// would otherwise wait out the stop timeout for programs that ignore SIGTERM). Named
    /// volumes stay.
    pub async fn remove_container(&self, name: &str) -> Result<(), EngineError> {
        self.execute(self.remove_command(name), COMMAND_TIMEOUT)
            .await
            .map(drop)
    }

    fn remove_command(&self, name: &str) -> CommandSpec {
        let spec = self.command().args(["rm", "--force", "--volumes"]);
        let spec = match self.kind {
            RuntimeKind::Podman => spec.args(["--time", "0"]),
            RuntimeKind::Docker => spec,
        };
        spec.arg("--").arg(name)
    }

    /// Every container (running or not) with label `key=value`, inspected.
    pub async fn containers_labelled(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<ContainerState>, EngineError> {
        let spec = self
            .command()
            .args([
                "ps",
                "--all",
                "--no-trunc",
                "--format",
                "{{.Names}}",
                "--filter",
            ])
            .arg(format!("label={key}={value}"));
        let names: Vec<String> = self
            .query(spec)
            .await?
            .lines()
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        self.inspect_containers(&names).await
    }

    /// The containers named `names`; an error when one of them does not exist.
    pub async fn inspect_containers(
        &self,
        names: &[String],
    ) -> Result<Vec<ContainerState>, EngineError> {
        let spec = self
            .command()
            .args(["container", "inspect", "--format", CONTAINER_LINE, "--"])
            .args(names);
        let listing = self.query(spec.clone()).await?;
        listing
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                parse_container_line(line)
                    .ok_or_else(|| unreadable(&spec, format!("{line:?} is not a container")))
            })
            .collect()
    }

    /// Runs `command` inside the running container `name` (a health check's test), for at
    /// most `timeout`; the outcome says how it ended.
    pub async fn exec(
        &self,
        name: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<CommandOutput, SpawnError> {
        let spec = self.command().args(["exec", "--"]).arg(name).args(command);
        process::output(&spec, timeout, MAX_EXEC_BYTES).await
    }

    /// The container's last `lines` lines of output (stdout's, then stderr's), and whatever
    /// the engine said when it could not read them.
    pub async fn logs_tail(&self, name: &str, lines: usize) -> Result<Vec<String>, SpawnError> {
        let spec = self
            .command()
            .args(["logs", "--tail"])
            .arg(lines.to_string())
            .arg("--")
            .arg(name);
        let output = process::output(&spec, COMMAND_TIMEOUT, MAX_LOG_BYTES).await?;
        Ok(output
            .stdout
            .lines()
            .chain(output.stderr.lines())
            .map(str::to_owned)
            .collect())
    }
}

/// One line of [`CONTAINER_LINE`]; a container without labels has `null` for them. Labels are
/// JSON, which escapes tabs, and volume and network names hold neither tabs nor commas.
fn parse_container_line(line: &str) -> Option<ContainerState> {
    let mut fields = line.splitn(6, '\t');
    let name = fields.next()?.trim_start_matches('/').to_owned();
    let status = fields.next()?;
    let exit_code = fields.next()?.trim().parse().ok()?;
    let labels: Option<BTreeMap<String, String>> = serde_json::from_str(fields.next()?).ok()?;
    let list = |field: Option<&str>| -> Vec<String> {
        field
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect()
    };
    Some(ContainerState {
        name,
        running: status == "running",
        exit_code,
        labels: labels.unwrap_or_default(),
        volumes: list(fields.next()),
        networks: list(fields.next()),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{args, docker, podman};
    use super::*;

    #[test]
    fn a_plain_container_is_published_on_loopback_only() {
        let labels = [("wharf.deploy.service".to_owned(), "site".to_owned())];
        let run = ContainerRun {
            name: "wharf-a-site-r3-0",
            image: "reg/p/site@sha256:00",
            labels: &labels,
            env_file: Some(Path::new("/w/env")),
            publish: Some((4100, 8080)),
            ..ContainerRun::default()
        };
        assert_eq!(
            args(&podman().run_command(&run)).join(" "),
            "podman run --detach --name wharf-a-site-r3-0 --label wharf.deploy.service=site \
             --env-file /w/env --publish 127.0.0.1:4100:8080 -- reg/p/site@sha256:00"
        );
    }

    #[test]
    fn a_compose_member_gets_its_network_mounts_and_settings() {
        let command = vec!["serve".to_owned(), "--port=80".to_owned()];
        let entrypoint = vec!["/bin/busybox".to_owned(), "sh".to_owned()];
        let caps = vec!["NET_ADMIN".to_owned()];
        let ports = [
            PortPublish {
                host_ip: None,
                host_port: Some(8443),
                container_port: 443,
                udp: false,
            },
            PortPublish {
                host_ip: Some("127.0.0.1".parse().unwrap()),
                host_port: None,
                container_port: 53,
                udp: true,
            },
            PortPublish {
                host_ip: Some("::1".parse().unwrap()),
                host_port: Some(9000),
                container_port: 9000,
                udp: false,
            },
            PortPublish {
                host_ip: None,
                host_port: None,
                container_port: 7000,
                udp: false,
            },
        ];
        let mounts = [
            Mount {
                source: MountSource::Volume("wharf-a-stack-data"),
                target: "/var/lib/data",
                read_only: false,
            },
            Mount {
                source: MountSource::Anonymous,
                target: "/cache",
                read_only: false,
            },
            Mount {
                source: MountSource::HostPath(Path::new("/srv/config")),
                target: "/etc/app",
                read_only: true,
            },
        ];
        let run = ContainerRun {
            name: "wharf-a-stack-r3-web",
            image: "img",
            ports: &ports,
            command: Some(&command),
            entrypoint: Some(&entrypoint),
            user: Some("1000:1000"),
            workdir: Some("/app"),
            mounts: &mounts,
            network: ContainerNetwork::Named {
                name: "wharf-a-stack",
                alias: "web",
            },
            privileged: true,
            cap_add: &caps,
            pid_host: true,
            ..ContainerRun::default()
        };
        assert_eq!(
            args(&podman().run_command(&run)),
            [
                "podman",
                "run",
                "--detach",
                "--name",
                "wharf-a-stack-r3-web",
                "--network",
                "wharf-a-stack",
                "--network-alias",
                "web",
                "--publish",
                "8443:443",
                "--publish",
                "127.0.0.1::53/udp",
                "--publish",
                "[::1]:9000:9000",
                "--publish",
                "7000",
                "--volume",
                "wharf-a-stack-data:/var/lib/data",
                "--volume",
                "/cache",
                "--volume",
                "/srv/config:/etc/app:ro",
                "--user",
                "1000:1000",
                "--workdir",
                "/app",
                "--privileged",
                "--cap-add",
                "NET_ADMIN",
                "--pid",
                "host",
                "--entrypoint",
                r#"["/bin/busybox","sh"]"#,
                "--",
                "img",
                "serve",
                "--port=80",
            ]
        );
        let shown = args(&docker().run_command(&ContainerRun {
            network: ContainerNetwork::Host,
            mounts: &[],
            ports: &[],
            ..run
        }))
        .join(" ");
        assert!(shown.contains("--network host --user"), "{shown}");
        assert!(
            shown.ends_with("--entrypoint /bin/busybox -- img sh serve --port=80"),
            "{shown}"
        );
    }

    #[test]
    fn an_empty_entrypoint_clears_the_images() {
        let run = ContainerRun {
            name: "c",
            image: "img",
            entrypoint: Some(&[]),
            ..ContainerRun::default()
        };
        assert_eq!(
            args(&podman().run_command(&run)).join(" "),
            "podman run --detach --name c --entrypoint [] -- img"
        );
    }

    #[test]
    fn removal_kills_at_once_and_takes_anonymous_volumes() {
        assert_eq!(
            args(&podman().remove_command("c")).join(" "),
            "podman rm --force --volumes --time 0 -- c"
        );
        assert_eq!(
            args(&docker().remove_command("c")).join(" "),
            "docker rm --force --volumes -- c"
        );
    }

    #[test]
    fn inspected_containers_carry_their_state_and_labels() {
        let line = "/wharf-a-web-r3-0\trunning\t0\t{\"wharf.deploy.service\":\"web\",\"wharf.deploy.release\":\"3\"}";
        let state = parse_container_line(line).unwrap();
        assert_eq!(state.name, "wharf-a-web-r3-0");
        assert!(state.running);
        assert_eq!(state.exit_code, 0);
        assert_eq!(state.labels["wharf.deploy.release"], "3");
        let stopped = parse_container_line("db\texited\t137\tnull").unwrap();
        assert!(!stopped.running);
        assert_eq!(stopped.exit_code, 137);
        assert!(stopped.labels.is_empty());
        assert!(stopped.volumes.is_empty() && stopped.networks.is_empty());
        let member = parse_container_line(
            "/wharf.a.web.production.r3.db\trunning\t0\tnull\twharf.a.web.production.data,cache,\twharf.a.web.production,podman,",
        )
        .unwrap();
        assert_eq!(member.volumes, ["wharf.a.web.production.data", "cache"]);
        assert_eq!(member.networks, ["wharf.a.web.production", "podman"]);
        assert_eq!(parse_container_line("db\texited"), None);
        assert_eq!(parse_container_line("db\texited\tx\tnull"), None);
    }
}

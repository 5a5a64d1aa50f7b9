//! The container runtime's command line: podman by default, docker as an alternative. Only the
//! argument vectors live here; running them is `process`'s job.

use std::net::IpAddr;
use std::path::Path;

use crate::process::CommandSpec;

/// Which program manages containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    Podman,
    Docker,
}

impl RuntimeKind {
    pub fn parse(name: &str) -> Option<RuntimeKind> {
        match name {
            "podman" => Some(RuntimeKind::Podman),
            "docker" => Some(RuntimeKind::Docker),
            _ => None,
        }
    }

    pub fn program(self) -> &'static str {
        match self {
            RuntimeKind::Podman => "podman",
            RuntimeKind::Docker => "docker",
        }
    }
}

/// Everything one image build needs.
pub struct ImageBuild<'a> {
    pub dockerfile: &'a Path,
    pub context: &'a Path,
    pub tag: &'a str,
    pub labels: &'a [(String, String)],
    pub build_args: &'a [(String, String)],
    /// The cgroup the build's `RUN` containers go under, so they can all be killed.
    pub cgroup_parent: Option<&'a str>,
    /// Build secrets: (id, file holding the value). `RUN --mount=type=secret,id=ID` reads them;
    /// they never become a layer or a build argument.
    pub secrets: &'a [(String, std::path::PathBuf)],
}

/// Credentials for the registry; the password never appears in `Debug` output.
#[derive(Clone)]
pub struct RegistryCredentials {
    pub username: String,
    pub password: secrecy::SecretString,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

impl RegistryCredentials {
    /// The auth file podman (`--authfile`) and docker (`config.json`) read.
    pub fn auth_file_json(&self, registry: &str) -> String {
        use base64::Engine;
        use secrecy::ExposeSecret;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.username,
            self.password.expose_secret()
        ));
        format!(
            "{{\"auths\":{{\"{}\":{{\"auth\":\"{auth}\"}}}}}}",
            registry.replace('"', "")
        )
    }
}

/// A container runtime and how to reach the registry.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub kind: RuntimeKind,
    /// Plain HTTP to the registry (a local registry only).
    pub insecure_registry: bool,
}

impl Runtime {
    fn command(&self) -> CommandSpec {
        CommandSpec::new(self.kind.program())
    }

    /// Builds an image. Podman keeps HEALTHCHECK only in the docker format.
    pub fn build(&self, build: &ImageBuild<'_>) -> CommandSpec {
        // --force-rm: intermediate containers go even when a step fails.
        let mut spec = self.command().args(["build", "--force-rm"]);
        if self.kind == RuntimeKind::Podman {
            spec = spec.args(["--format", "docker"]);
        }
        spec = spec
            .arg("--file")
            .arg(build.dockerfile)
            .arg("--tag")
            .arg(build.tag);
        for (key, value) in build.labels {
            spec = spec.arg("--label").arg(format!("{key}={value}"));
        }
        for (key, value) in build.build_args {
            spec = spec.arg("--build-arg").arg(format!("{key}={value}"));
        }
        for (id, file) in build.secrets {
            spec = spec
                .arg("--secret")
                .arg(format!("id={id},src={}", file.display()));
        }
        if let Some(parent) = build.cgroup_parent {
            spec = spec.arg("--cgroup-parent").arg(format!("/{parent}"));
        }
        spec.arg("--").arg(build.context)
    }

    /// Pushes an image and writes its digest to `digest_file`; `auth_file` holds registry
    /// credentials when the registry asks for them.
    pub fn push(&self, tag: &str, digest_file: &Path, auth_file: Option<&Path>) -> CommandSpec {
        let mut spec = self.command().arg("push");
        if let Some(auth_file) = auth_file {
            spec = match self.kind {
                RuntimeKind::Podman => spec.arg("--authfile").arg(auth_file),
                // Docker reads config.json from a directory of its own.
                RuntimeKind::Docker => CommandSpec::new("docker")
                    .arg("--config")
                    .arg(auth_file.parent().unwrap_or(Path::new(".")))
                    .arg("push"),
            };
        }
        if self.kind == RuntimeKind::Podman {
            if self.insecure_registry {
                spec = spec.arg("--tls-verify=false");
            }
            spec = spec.arg("--digestfile").arg(digest_file);
        }
        spec.arg("--").arg(tag)
    }

    /// Removes a local tag and keeps the image, whose layers are the cache of the next build.
    /// (`podman rmi` would delete the untagged intermediate images with it, and the cache.)
    pub fn remove_tag(&self, tag: &str) -> CommandSpec {
        match self.kind {
            RuntimeKind::Podman => self.command().args(["untag", "--"]).arg(tag).arg(tag),
            // Docker keeps its build cache apart from images.
            RuntimeKind::Docker => self.command().args(["rmi", "--"]).arg(tag),
        }
    }

    /// Lists an image's repository digests (`NAME@sha256:…`), one per line.
    pub fn repo_digests(&self, image: &str) -> CommandSpec {
        self.command()
            .args([
                "image",
                "inspect",
                "--format",
                "{{range .RepoDigests}}{{println .}}{{end}}",
                "--",
            ])
            .arg(image)
    }

    /// Pulls an image.
    pub fn pull(&self, reference: &str) -> CommandSpec {
        let mut spec = self.command().arg("pull");
        if self.kind == RuntimeKind::Podman && self.insecure_registry {
            spec = spec.arg("--tls-verify=false");
        }
        spec.arg("--").arg(reference)
    }
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
    fn argument(&self) -> std::ffi::OsString {
        let mut text = std::ffi::OsString::new();
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
    /// `run -d`: starts a container and prints its id.
    pub fn run_container(&self, run: &ContainerRun<'_>) -> CommandSpec {
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

    /// Stops a container, giving it `grace` seconds after SIGTERM before SIGKILL.
    pub fn stop_container(&self, name: &str, grace_secs: u64) -> CommandSpec {
        self.command()
            .args(["stop", "--time"])
            .arg(grace_secs.to_string())
            .arg("--")
            .arg(name)
    }

    /// Starts a stopped container again.
    pub fn start_container(&self, name: &str) -> CommandSpec {
        self.command().args(["start", "--"]).arg(name)
    }

    /// Removes a container and its anonymous volumes, killing it at once if it runs (Podman
    /// would otherwise wait out the stop timeout for programs that ignore SIGTERM). Named
    /// volumes stay.
    pub fn remove_container(&self, name: &str) -> CommandSpec {
        let spec = self.command().args(["rm", "--force", "--volumes"]);
        let spec = match self.kind {
            RuntimeKind::Podman => spec.args(["--time", "0"]),
            RuntimeKind::Docker => spec,
        };
        spec.arg("--").arg(name)
    }

    /// The names of every container (running or not) with label `key=value`, one per line.
    pub fn containers_labelled(&self, key: &str, value: &str) -> CommandSpec {
        self.command()
            .args([
                "ps",
                "--all",
                "--no-trunc",
                "--format",
                "{{.Names}}",
                "--filter",
            ])
            .arg(format!("label={key}={value}"))
    }

    /// One line per container: name, status, exit code, then its labels as JSON, tab-separated.
    pub fn inspect_containers(&self, names: &[String]) -> CommandSpec {
        self.command()
            .args([
                "container",
                "inspect",
                "--format",
                "{{.Name}}\t{{.State.Status}}\t{{.State.ExitCode}}\t{{json .Config.Labels}}",
                "--",
            ])
            .args(names)
    }

    /// The id of a local image; fails when there is no such image.
    pub fn image_id(&self, image: &str) -> CommandSpec {
        self.command()
            .args(["image", "inspect", "--format", "{{.Id}}", "--"])
            .arg(image)
    }

    /// The image's `HEALTHCHECK` as JSON (`null` when it has none).
    pub fn image_healthcheck(&self, image: &str) -> CommandSpec {
        self.command()
            .args([
                "image",
                "inspect",
                "--format",
                "{{json .Config.Healthcheck}}",
                "--",
            ])
            .arg(image)
    }

    /// The ports an image declares (`EXPOSE`) as JSON: `{"8080/tcp":{}}`, or `null`.
    pub fn image_exposed_ports(&self, image: &str) -> CommandSpec {
        self.command()
            .args([
                "image",
                "inspect",
                "--format",
                "{{json .Config.ExposedPorts}}",
                "--",
            ])
            .arg(image)
    }

    /// Succeeds when the network exists.
    pub fn network_inspect(&self, name: &str) -> CommandSpec {
        self.command()
            .args(["network", "inspect", "--format", "{{.Name}}", "--"])
            .arg(name)
    }

    /// Creates a bridge network whose containers reach each other by name.
    pub fn network_create(&self, name: &str, labels: &[(String, String)]) -> CommandSpec {
        let mut spec = self.command().args(["network", "create"]);
        for (key, value) in labels {
            spec = spec.arg("--label").arg(format!("{key}={value}"));
        }
        spec.arg("--").arg(name)
    }

    /// Succeeds when the volume exists.
    pub fn volume_inspect(&self, name: &str) -> CommandSpec {
        self.command()
            .args(["volume", "inspect", "--format", "{{.Name}}", "--"])
            .arg(name)
    }

    /// Creates a named volume (local driver).
    pub fn volume_create(&self, name: &str, labels: &[(String, String)]) -> CommandSpec {
        let mut spec = self.command().args(["volume", "create"]);
        for (key, value) in labels {
            spec = spec.arg("--label").arg(format!("{key}={value}"));
        }
        spec.arg("--").arg(name)
    }

    /// Runs a command inside a running container (a health check's test).
    pub fn exec(&self, name: &str, command: &[String]) -> CommandSpec {
        self.command().args(["exec", "--"]).arg(name).args(command)
    }

    /// The container's last `lines` lines of output.
    pub fn logs_tail(&self, name: &str, lines: usize) -> CommandSpec {
        self.command()
            .args(["logs", "--tail"])
            .arg(lines.to_string())
            .arg("--")
            .arg(name)
    }

    /// Images with label `key=value`: id, reference and creation time, tab-separated.
    pub fn images_labelled(&self, key: &str, value: &str) -> CommandSpec {
        self.command()
            .args([
                "images",
                "--no-trunc",
                "--format",
                "{{.ID}}\t{{.Repository}}:{{.Tag}}\t{{.CreatedAt}}",
                "--filter",
            ])
            .arg(format!("label={key}={value}"))
    }

    /// Removes an image, unless a container still uses it.
    pub fn remove_image(&self, image: &str) -> CommandSpec {
        self.command().args(["rmi", "--"]).arg(image)
    }

    /// `pull` with registry credentials from an auth file.
    pub fn pull_with_auth(&self, reference: &str, auth_file: Option<&Path>) -> CommandSpec {
        let spec = self.pull(reference);
        match auth_file {
            None => spec,
            Some(auth_file) => match self.kind {
                RuntimeKind::Podman => {
                    let mut args = spec.args.clone();
                    args.insert(1, "--authfile".into());
                    args.insert(2, auth_file.into());
                    CommandSpec::new("podman").args(args)
                }
                RuntimeKind::Docker => CommandSpec::new("docker")
                    .arg("--config")
                    .arg(auth_file.parent().unwrap_or(Path::new(".")))
                    .args(spec.args.clone()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(spec: &CommandSpec) -> Vec<String> {
        std::iter::once(spec.program.clone())
            .chain(
                spec.args
                    .iter()
                    .map(|arg| arg.to_string_lossy().into_owned()),
            )
            .collect()
    }

    #[test]
    fn podman_and_docker_get_their_own_flags() {
        let podman = Runtime {
            kind: RuntimeKind::Podman,
            insecure_registry: true,
        };
        let docker = Runtime {
            kind: RuntimeKind::Docker,
            insecure_registry: false,
        };
        let labels = [("wharf.build".to_owned(), "7".to_owned())];
        let build = ImageBuild {
            dockerfile: Path::new("/w/src/Dockerfile"),
            context: Path::new("/w/src"),
            tag: "r/p/s:abc",
            labels: &labels,
            build_args: &[],
            cgroup_parent: Some("wharf-build-7-00"),
            secrets: &[("TOKEN".to_owned(), "/w/secrets/secret-0".into())],
        };
        let podman_build = args(&podman.build(&build)).join(" ");
        assert!(
            podman_build.starts_with("podman build --force-rm --format docker"),
            "{podman_build}"
        );
        assert!(podman_build.contains("--secret id=TOKEN,src=/w/secrets/secret-0"));
        assert!(podman_build.contains("--cgroup-parent /wharf-build-7-00"));
        assert!(podman_build.ends_with("-- /w/src"));
        let docker_build = args(&docker.build(&ImageBuild {
            cgroup_parent: None,
            ..build
        }))
        .join(" ");
        assert!(!docker_build.contains("--format"), "{docker_build}");
        assert_eq!(
            args(&podman.push(
                "r/p/s:abc",
                Path::new("/w/d"),
                Some(Path::new("/w/auth/config.json"))
            ))
            .join(" "),
            "podman push --authfile /w/auth/config.json --tls-verify=false --digestfile /w/d -- r/p/s:abc"
        );
        assert_eq!(
            args(&docker.push(
                "r/p/s:abc",
                Path::new("/w/d"),
                Some(Path::new("/w/auth/config.json"))
            ))
            .join(" "),
            "docker --config /w/auth push -- r/p/s:abc"
        );
    }

    fn podman() -> Runtime {
        Runtime {
            kind: RuntimeKind::Podman,
            insecure_registry: false,
        }
    }

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
            args(&podman().run_container(&run)).join(" "),
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
            args(&podman().run_container(&run)),
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
        let docker = Runtime {
            kind: RuntimeKind::Docker,
            insecure_registry: false,
        };
        let shown = args(&docker.run_container(&ContainerRun {
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
            args(&podman().run_container(&run)).join(" "),
            "podman run --detach --name c --entrypoint [] -- img"
        );
    }

    #[test]
    fn networks_and_volumes_are_created_with_labels() {
        let labels = [("wharf.deploy.agent".to_owned(), "a".to_owned())];
        assert_eq!(
            args(&podman().network_create("wharf-a-stack", &labels)).join(" "),
            "podman network create --label wharf.deploy.agent=a -- wharf-a-stack"
        );
        assert_eq!(
            args(&podman().volume_create("wharf-a-stack-data", &labels)).join(" "),
            "podman volume create --label wharf.deploy.agent=a -- wharf-a-stack-data"
        );
        assert_eq!(
            args(&podman().remove_container("c")).join(" "),
            "podman rm --force --volumes --time 0 -- c"
        );
    }
}

//! The container runtime's command line: podman by default, docker as an alternative. Only the
//! argument vectors live here; running them is `process`'s job.

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

/// A container to start, detached.
#[derive(Debug, Clone, Default)]
pub struct ContainerRun<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub labels: &'a [(String, String)],
    /// Variables from a file, so their values never show in the process list.
    pub env_file: Option<&'a Path>,
    /// `(host port, container port)`, published on 127.0.0.1 only: the edge proxies to it.
    pub publish: Option<(u16, u16)>,
    /// Replaces the image's command.
    pub command: Option<&'a [String]>,
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
        if let Some((host, container)) = run.publish {
            spec = spec
                .arg("--publish")
                .arg(format!("127.0.0.1:{host}:{container}"));
        }
        spec = spec.arg("--").arg(run.image);
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

    /// Removes a container, killing it at once if it runs (Podman would otherwise wait out
    /// the stop timeout for programs that ignore SIGTERM).
    pub fn remove_container(&self, name: &str) -> CommandSpec {
        let spec = self.command().args(["rm", "--force"]);
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
}

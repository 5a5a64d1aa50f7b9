//! Images: building (streamed), pushing (streamed) and the digest the push gave, pulling,
//! local tags, what an image declares (`HEALTHCHECK`, `EXPOSE`), and Wharf's images by label.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{COMMAND_TIMEOUT, EngineError, PULL_TIMEOUT, Runtime, RuntimeKind, unreadable};
use crate::process::{self, CommandSpec, RunOutcome, SpawnError, Streaming};

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
    pub secrets: &'a [(String, PathBuf)],
    /// The engine network `RUN` steps join ([`Runtime::ensure_build_network`] for an isolated
    /// build); `None` leaves them on the engine's default network.
    pub network: Option<&'a str>,
}

/// An image found by label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledImage {
    pub id: String,
    /// The repository it is tagged in, without the tag (`<none>` when it has none).
    pub repository: String,
    pub tag: String,
    /// When it was built, as the engine writes it; later times sort later.
    pub created: String,
}

/// `images --format`: one image a line, its fields tab-separated.
const IMAGE_LINE: &str = "{{.ID}}\t{{.Repository}}\t{{.Tag}}\t{{.CreatedAt}}";
/// `image inspect --format`: the image's repository digests (`NAME@sha256:…`), one a line.
const REPO_DIGESTS: &str = "{{range .RepoDigests}}{{println .}}{{end}}";
/// `image inspect --format`: the image's `HEALTHCHECK` as JSON, `null` when it has none.
const HEALTHCHECK: &str = "{{json .Config.Healthcheck}}";
/// `image inspect --format`: the ports the image declares as JSON (`{"8080/tcp":{}}`), or
/// `null`.
const EXPOSED_PORTS: &str = "{{json .Config.ExposedPorts}}";

impl Runtime {
    /// Builds an image, streaming the build's output. Podman keeps `HEALTHCHECK` only in the
    /// docker format.
    pub async fn build(
        &self,
        build: &ImageBuild<'_>,
        to: &Streaming<'_>,
    ) -> Result<RunOutcome, SpawnError> {
        process::run(&self.build_command(build), to).await
    }

    fn build_command(&self, build: &ImageBuild<'_>) -> CommandSpec {
        // --force-rm: intermediate containers go even when a step fails.
        let mut spec = self.command().args(["build", "--force-rm"]);
        if self.kind == RuntimeKind::Podman {
            // `RUN` steps may not forge packets (raw sockets: ping, ARP and address spoofing on
            // the build's network). Docker's `build` has no such flag.
            spec = spec.args(["--format", "docker", "--cap-drop", "NET_RAW"]);
        }
        if let Some(network) = build.network {
            spec = spec.arg("--network").arg(network);
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

    /// Pushes an image, streaming the push's output; Podman writes its digest to `digest_file`
    /// ([`Runtime::pushed_digest`] reads it). `auth_file` holds registry credentials when the
    /// registry asks for them.
    pub async fn push(
        &self,
        tag: &str,
        digest_file: &Path,
        auth_file: Option<&Path>,
        to: &Streaming<'_>,
    ) -> Result<RunOutcome, SpawnError> {
        process::run(&self.push_command(tag, digest_file, auth_file), to).await
    }

    fn push_command(&self, tag: &str, digest_file: &Path, auth_file: Option<&Path>) -> CommandSpec {
        let mut spec = self.registry_command("push", auth_file);
        if self.kind == RuntimeKind::Podman {
            if self.insecure_registry {
                spec = spec.arg("--tls-verify=false");
            }
            spec = spec.arg("--digestfile").arg(digest_file);
        }
        spec.arg("--").arg(tag)
    }

    /// The digest a push of `tag` gave: Podman wrote it to `digest_file`; Docker keeps it
    /// among the image's repository digests. `None` when neither has it.
    pub async fn pushed_digest(
        &self,
        tag: &str,
        digest_file: &Path,
    ) -> Result<Option<String>, EngineError> {
        if let Ok(digest) = tokio::fs::read_to_string(digest_file).await {
            return Ok(Some(digest.trim().to_owned()));
        }
        let listing = self.query(self.inspect_image(REPO_DIGESTS, tag)).await?;
        let repository = tag.rsplit_once(':').map_or(tag, |(name, _)| name);
        Ok(digest_in(&listing, repository))
    }

    /// Gives the local image `source` the further name `target`.
    pub async fn tag(&self, source: &str, target: &str) -> Result<(), EngineError> {
        self.execute(
            self.command().args(["tag", "--"]).arg(source).arg(target),
            COMMAND_TIMEOUT,
        )
        .await
        .map(drop)
    }

    /// Removes a local tag and keeps the image, whose layers are the cache of the next build.
    /// (`podman rmi` would delete the untagged intermediate images with it, and the cache.)
    pub async fn remove_tag(&self, tag: &str) -> Result<(), EngineError> {
        self.execute(self.remove_tag_command(tag), COMMAND_TIMEOUT)
            .await
            .map(drop)
    }

    fn remove_tag_command(&self, tag: &str) -> CommandSpec {
        match self.kind {
            RuntimeKind::Podman => self.command().args(["untag", "--"]).arg(tag).arg(tag),
            // Docker keeps its build cache apart from images.
            RuntimeKind::Docker => self.command().args(["rmi", "--"]).arg(tag),
        }
    }

    /// Pulls an image, with the registry login in `auth_file` when given.
    pub async fn pull(&self, reference: &str, auth_file: Option<&Path>) -> Result<(), EngineError> {
        self.execute(self.pull_command(reference, auth_file), PULL_TIMEOUT)
            .await
            .map(drop)
    }

    fn pull_command(&self, reference: &str, auth_file: Option<&Path>) -> CommandSpec {
        let mut spec = self.registry_command("pull", auth_file);
        if self.kind == RuntimeKind::Podman && self.insecure_registry {
            spec = spec.arg("--tls-verify=false");
        }
        spec.arg("--").arg(reference)
    }

    /// Whether the engine has the image `image` locally.
    pub async fn has_image(&self, image: &str) -> Result<bool, EngineError> {
        self.ask(self.inspect_image("{{.Id}}", image)).await
    }

    /// The command of the image's own `HEALTHCHECK`; `None` when it has none or disables it.
    pub async fn image_healthcheck(&self, image: &str) -> Result<Option<Vec<String>>, EngineError> {
        let spec = self.inspect_image(HEALTHCHECK, image);
        let json = self.query(spec.clone()).await?;
        parse_healthcheck(json.trim()).map_err(|error| unreadable(&spec, error))
    }

    /// The TCP ports the image declares with `EXPOSE`.
    pub async fn image_exposed_ports(&self, image: &str) -> Result<BTreeSet<u16>, EngineError> {
        let spec = self.inspect_image(EXPOSED_PORTS, image);
        let json = self.query(spec.clone()).await?;
        parse_exposed_ports(json.trim()).map_err(|error| unreadable(&spec, error))
    }

    fn inspect_image(&self, format: &str, image: &str) -> CommandSpec {
        self.command()
            .args(["image", "inspect", "--format", format, "--"])
            .arg(image)
    }

    /// The images with label `key=value`.
    pub async fn images_labelled(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<LabelledImage>, EngineError> {
        let spec = self
            .command()
            .args(["images", "--no-trunc", "--format", IMAGE_LINE, "--filter"])
            .arg(format!("label={key}={value}"));
        let listing = self.query(spec.clone()).await?;
        listing
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                parse_image_line(line)
                    .ok_or_else(|| unreadable(&spec, format!("{line:?} is not an image")))
            })
            .collect()
    }

    /// Removes an image, unless a container still uses it.
    pub async fn remove_image(&self, image: &str) -> Result<(), EngineError> {
        let spec = self.command().args(["rmi", "--"]).arg(image);
        self.execute(spec, COMMAND_TIMEOUT).await.map(drop)
    }
}

/// The digest of `repository` among repository digests (`NAME@sha256:…`), one a line.
fn digest_in(listing: &str, repository: &str) -> Option<String> {
    listing.split_whitespace().find_map(|reference| {
        let (name, digest) = reference.split_once('@')?;
        (name == repository).then(|| digest.to_owned())
    })
}

/// The command of a `HEALTHCHECK` (`{"Test": ["CMD", …]}`), or `None` when there is none
/// (`null`) or it is disabled (`["NONE"]`).
fn parse_healthcheck(json: &str) -> Result<Option<Vec<String>>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Healthcheck {
        #[serde(rename = "Test", default)]
        test: Vec<String>,
    }
    let Some(check) = serde_json::from_str::<Option<Healthcheck>>(json)? else {
        return Ok(None);
    };
    let test = check.test;
    Ok(match test.first().map(String::as_str) {
        Some("CMD") if test.len() > 1 => Some(test[1..].to_vec()),
        Some("CMD-SHELL") if test.len() == 2 => {
            Some(vec!["/bin/sh".to_owned(), "-c".to_owned(), test[1].clone()])
        }
        _ => None,
    })
}

/// `{"8080/tcp":{}}` → 8080; `null` → nothing. UDP ports are left out.
fn parse_exposed_ports(json: &str) -> Result<BTreeSet<u16>, serde_json::Error> {
    let ports: Option<BTreeMap<String, serde_json::Value>> = serde_json::from_str(json)?;
    Ok(ports
        .unwrap_or_default()
        .keys()
        .filter_map(|key| {
            let (port, protocol) = key.split_once('/').unwrap_or((key, "tcp"));
            (protocol == "tcp").then(|| port.parse().ok()).flatten()
        })
        .collect())
}

/// One line of [`IMAGE_LINE`].
fn parse_image_line(line: &str) -> Option<LabelledImage> {
    let mut fields = line.splitn(4, '\t');
    Some(LabelledImage {
        id: fields.next()?.to_owned(),
        repository: fields.next()?.to_owned(),
        tag: fields.next()?.to_owned(),
        created: fields.next()?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{args, docker, podman};
    use super::*;

    #[test]
    fn podman_and_docker_get_their_own_flags() {
        let podman = Runtime {
            insecure_registry: true,
            ..podman()
        };
        let docker = docker();
        let labels = [("wharf.build".to_owned(), "7".to_owned())];
        let build = ImageBuild {
            dockerfile: Path::new("/w/src/Dockerfile"),
            context: Path::new("/w/src"),
            tag: "r/p/s:abc",
            labels: &labels,
            build_args: &[],
            cgroup_parent: Some("wharf-build-7-00"),
            secrets: &[("TOKEN".to_owned(), "/w/secrets/secret-0".into())],
            network: Some("wharf-build"),
        };
        let podman_build = args(&podman.build_command(&build)).join(" ");
        assert!(
            podman_build.starts_with(
                "podman build --force-rm --format docker --cap-drop NET_RAW --network wharf-build"
            ),
            "{podman_build}"
        );
        assert!(podman_build.contains("--secret id=TOKEN,src=/w/secrets/secret-0"));
        assert!(podman_build.contains("--cgroup-parent /wharf-build-7-00"));
        assert!(podman_build.ends_with("-- /w/src"));
        let docker_build = args(&docker.build_command(&ImageBuild {
            cgroup_parent: None,
            network: None,
            ..build
        }))
        .join(" ");
        assert!(!docker_build.contains("--format"), "{docker_build}");
        assert!(!docker_build.contains("--network"), "{docker_build}");
        let auth = Some(Path::new("/w/auth/config.json"));
        assert_eq!(
            args(&podman.push_command("r/p/s:abc", Path::new("/w/d"), auth)).join(" "),
            "podman push --authfile /w/auth/config.json --tls-verify=false --digestfile /w/d -- r/p/s:abc"
        );
        assert_eq!(
            args(&docker.push_command("r/p/s:abc", Path::new("/w/d"), auth)).join(" "),
            "docker --config /w/auth push -- r/p/s:abc"
        );
        assert_eq!(
            args(&podman.pull_command("r/p/s@sha256:00", auth)).join(" "),
            "podman pull --authfile /w/auth/config.json --tls-verify=false -- r/p/s@sha256:00"
        );
        assert_eq!(
            args(&docker.pull_command("r/p/s@sha256:00", None)).join(" "),
            "docker pull -- r/p/s@sha256:00"
        );
        assert_eq!(
            args(&podman.remove_tag_command("r/p/s:abc")).join(" "),
            "podman untag -- r/p/s:abc r/p/s:abc"
        );
        assert_eq!(
            args(&docker.remove_tag_command("r/p/s:abc")).join(" "),
            "docker rmi -- r/p/s:abc"
        );
    }

    #[test]
    fn a_pushed_digest_is_the_one_of_the_pushed_repository() {
        let listing = "docker.io/other/web@sha256:11\n127.0.0.1:5000/p/web@sha256:22\n";
        assert_eq!(
            digest_in(listing, "127.0.0.1:5000/p/web").as_deref(),
            Some("sha256:22")
        );
        assert_eq!(digest_in(listing, "127.0.0.1:5000/p/api"), None);
        assert_eq!(digest_in("", "127.0.0.1:5000/p/web"), None);
    }

    #[test]
    fn healthchecks_become_commands() {
        let command = |json: &str| parse_healthcheck(json).unwrap();
        assert_eq!(
            command(r#"{"Test":["CMD","/bin/busybox","true"],"Interval":1000000000}"#),
            Some(vec!["/bin/busybox".to_owned(), "true".to_owned()])
        );
        assert_eq!(
            command(r#"{"Test":["CMD-SHELL","curl -f localhost"]}"#),
            Some(vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                "curl -f localhost".to_owned()
            ])
        );
        assert_eq!(command(r#"{"Test":["NONE"]}"#), None);
        assert_eq!(command(r#"{"Interval":1000000000}"#), None);
        assert_eq!(command("null"), None);
        assert!(parse_healthcheck("<no value>").is_err());
    }

    #[test]
    fn exposed_ports_are_the_tcp_ones() {
        assert_eq!(
            parse_exposed_ports(r#"{"8080/tcp":{},"53/udp":{},"9000":{}}"#).unwrap(),
            BTreeSet::from([8080, 9000])
        );
        assert!(parse_exposed_ports("null").unwrap().is_empty());
        assert!(parse_exposed_ports("{}").unwrap().is_empty());
        assert!(parse_exposed_ports("").is_err());
    }

    #[test]
    fn labelled_images_are_read_field_by_field() {
        assert_eq!(
            parse_image_line(
                "sha256:ab\t127.0.0.1:5000/p/web\tc0ffee\t2025-01-02 03:04:05 +0000 UTC"
            ),
            Some(LabelledImage {
                id: "sha256:ab".to_owned(),
                repository: "127.0.0.1:5000/p/web".to_owned(),
                tag: "c0ffee".to_owned(),
                created: "2025-01-02 03:04:05 +0000 UTC".to_owned(),
            })
        );
        assert_eq!(parse_image_line("sha256:ab\tweb"), None);
    }
}

//! Turning a claimed build into an image in the registry: fetch exactly the commit, build it
//! with Podman (or Docker), push it as `{registry}/{project}/{service}:{commit}` to the registry
//! the server named when the agent registered, and report each step as it happens. A failure
//! of the user's build is data (the failing step, its command, exit code and last output lines,
//! secrets masked, kept on the build), not an error of the agent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use secrecy::SecretString;
use tokio::time::Instant;
use wharf_domain::names::registry_host;
use wharf_runtime::cgroup::{self, build_cgroup};
use wharf_runtime::engine::{ImageBuild, RegistryCredentials, Runtime, RuntimeKind};
use wharf_runtime::git::fetch_commit_commands;
use wharf_runtime::process::{self, CommandSpec, Ended, RunOutcome, SpawnError, Streaming};
use wharf_wire::{
    BuildJob, BuildNetwork, BuildState, BuiltImage, GetCloneCredentials, ReportBuildState,
    StepFailure,
};

use crate::logs::{LogShipper, LogTarget};
use crate::masking::{mask, mask_failure};
use crate::names;
use crate::registry_logins::login_for;
use crate::runner::{BuildContext, BuildRunner};

/// The file in a build's work directory that names the cgroup of its containers.
pub const CGROUP_FILE: &str = "cgroup";

/// How this agent builds.
#[derive(Debug, Clone)]
pub struct BuilderConfig {
    pub runtime: Runtime,
    /// The longest a whole build may take before it is killed.
    pub timeout: Duration,
    /// The agent's own login for `registry` (it names that registry's host), when the registry
    /// asks for one; no other registry gets it.
    pub registry_credentials: Option<RegistryCredentials>,
    /// Railpack's CLI, which builds repositories that have no Dockerfile; `None` when the
    /// agent has none.
    pub railpack: Option<PathBuf>,
}

/// Builds images with the container runtime.
pub struct ImageBuilder {
    pub config: BuilderConfig,
}

/// Why a build stopped before the end.
enum Stopped {
    /// The server cancelled it, or leased it elsewhere: nothing to report.
    Cancelled,
    /// A step failed: reported as the build's failure.
    Failed {
        reason: String,
        failure: Option<StepFailure>,
    },
}

type StepResult<T> = Result<T, Stopped>;

/// One image to build and push.
struct Target {
    /// The compose service, for compose builds.
    component: Option<String>,
    recipe: Recipe,
    context: PathBuf,
    image: String,
    /// Build arguments from the compose file.
    args: Vec<(String, String)>,
}

/// How an image is built.
enum Recipe {
    /// From this Dockerfile or Containerfile, by the container runtime.
    Dockerfile(PathBuf),
    /// By Railpack's CLI (which hands its result to `docker load`), from what the repository
    /// holds.
    Railpack(PathBuf),
}

/// What a finished build produced.
struct BuildResult {
    images: Vec<BuiltImage>,
    compose_file: Option<String>,
}

fn failed(reason: impl Into<String>) -> Stopped {
    Stopped::Failed {
        reason: reason.into(),
        failure: None,
    }
}

impl BuildRunner for ImageBuilder {
    fn timeout(&self) -> Option<Duration> {
        Some(self.config.timeout)
    }

    async fn run(&self, job: BuildJob, context: BuildContext) {
        let build_id = job.build.id;
        let work = context.work_dir.join(format!("build-{build_id}"));
        let deadline = Instant::now() + self.config.timeout;
        let mut secrets = Vec::new();
        let outcome = self
            .pipeline(&job, &context, &work, deadline, &mut secrets)
            .await;
        if let Err(error) = tokio::fs::remove_dir_all(&work).await
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(build = build_id, %error, "could not remove the work directory");
        }
        match outcome {
            Ok(result) => {
                // A single image is also the build's image; a compose build's base name is.
                let (image, digest) = match result.images.as_slice() {
                    [only] if only.component.is_none() => {
                        (Some(only.image.clone()), Some(only.digest.clone()))
                    }
                    _ => (None, None),
                };
                let request = ReportBuildState {
                    image,
                    digest,
                    images: result.images,
                    compose_file: result.compose_file,
                    ..ReportBuildState::new(build_id, BuildState::Completed)
                };
                match context.client.send(&request).await {
                    Ok(build) if build.state == BuildState::Failed => {
                        tracing::warn!(
                            build = build_id,
                            reason = build.reason.as_deref().unwrap_or(""),
                            "the server refused the build's result and failed it"
                        );
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(build = build_id, %error, "the server did not take the result");
                    }
                }
            }
            Err(Stopped::Cancelled) => {
                tracing::info!(build = build_id, "build stopped at the server's request");
            }
            Err(Stopped::Failed { reason, failure }) => {
                let request = ReportBuildState {
                    reason: Some(mask(&reason, &secrets)),
                    failure: failure.map(|failure| mask_failure(failure, &secrets)),
                    ..ReportBuildState::new(build_id, BuildState::Failed)
                };
                if let Err(error) = context.client.send(&request).await {
                    tracing::warn!(build = build_id, %error, "the server did not take the failure");
                }
            }
        }
    }
}

impl ImageBuilder {
    async fn pipeline(
        &self,
        job: &BuildJob,
        context: &BuildContext,
        work: &Path,
        deadline: Instant,
        secrets: &mut Vec<String>,
    ) -> StepResult<BuildResult> {
        let build_id = job.build.id;
        let registry = context.registry.clone().ok_or_else(|| {
            failed(format!(
                "the server named no registry for agent {} to push to: set WHARF_REGISTRY on the server (and upgrade a server older than this agent)",
                context.agent_name
            ))
        })?;
        self.report(context, build_id, BuildState::Cloning).await?;
        let (url, token) = match &job.clone_url {
            Some(url) => (url.clone(), None),
            None => {
                let credentials = context
                    .client
                    .send(&GetCloneCredentials { id: build_id })
                    .await
                    .map_err(|error| failed(format!("could not get clone credentials: {error}")))?;
                (
                    credentials.clone_url,
                    credentials.token.map(|token| token.expose().to_owned()),
                )
            }
        };
        if let Some(token) = &token {
            secrets.push(token.clone());
            secrets.push(
                base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}")),
            );
        }
        for secret in &job.build_secrets {
            secrets.push(secret.value.expose().to_owned());
        }
        if let Some(credentials) = &self.config.registry_credentials {
            use secrecy::ExposeSecret;
            secrets.push(credentials.password.expose_secret().to_owned());
        }
        if let Some(login) = &job.registry_login {
            secrets.push(login.password.expose().to_owned());
        }
        let logs = LogShipper::start(
            context.client.clone(),
            LogTarget::Build(build_id),
            secrets.clone(),
        );
        let outcome = self
            .steps(job, context, work, deadline, &registry, &url, token, &logs)
            .await;
        match &outcome {
            Ok(result) => {
                for image in &result.images {
                    logs.note(format!("Pushed {} ({})", image.image, image.digest))
                        .await;
                }
            }
            Err(Stopped::Failed { reason, .. }) => {
                logs.note(format!("Build failed: {reason}")).await
            }
            Err(Stopped::Cancelled) => logs.note("Build stopped: cancelled").await,
        }
        // Every line is stored before the outcome is reported, so a finished build's log is whole.
        logs.finish().await;
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    async fn steps(
        &self,
        job: &BuildJob,
        context: &BuildContext,
        work: &Path,
        deadline: Instant,
        registry: &str,
        url: &str,
        token: Option<String>,
        logs: &LogShipper,
    ) -> StepResult<BuildResult> {
        let build_id = job.build.id;
        let source = work.join("src");
        tokio::fs::create_dir_all(&source)
            .await
            .map_err(|error| failed(format!("cannot create the work directory: {error}")))?;
        // Written before anything runs, so a restarted agent can kill what this build left.
        let cgroup = build_cgroup(build_id);
        tokio::fs::write(work.join(CGROUP_FILE), &cgroup)
            .await
            .map_err(|error| failed(format!("cannot write to the work directory: {error}")))?;
        let token = token.map(SecretString::from);
        logs.note(format!("Fetching {} at {}", url, job.build.commit_sha))
            .await;
        for command in fetch_commit_commands(&source, url, &job.build.commit_sha, token.as_ref()) {
            self.step(context, logs, "clone", &command, deadline)
                .await?;
        }

        self.report(context, build_id, BuildState::Building).await?;
        let source = canonical(&source).await?;
        let base = format!(
            "{}/{}/{}",
            registry.trim_end_matches('/'),
            job.service.project,
            job.service.name
        );
        let (targets, compose_file) = match &job.service.compose {
            Some(compose) => self.compose_targets(job, &source, compose, &base).await?,
            None => (self.dockerfile_target(job, &source, &base).await?, None),
        };
        let podman = self.config.runtime.kind == RuntimeKind::Podman;
        let service_args: Vec<(String, String)> = job
            .build_args
            .iter()
            .map(|arg| (arg.name.clone(), arg.value.clone()))
            .collect();
        let secret_files = write_secret_files(work, job).await?;
        let network = self.build_network(job, logs).await?;
        let mut built = Ok(());
        for (index, target) in targets.iter().enumerate() {
            let labels = names::image_labels(
                &job.service.project,
                &job.service.name,
                &job.build.commit_sha,
                build_id,
                target.component.as_deref(),
            );
            // The compose file's own arguments first; the service's variables win.
            let mut build_args = target.args.clone();
            build_args.extend(service_args.iter().cloned());
            logs.note(format!("Building {}", target.image)).await;
            // What the runtime builds: the Dockerfile in its context; after Railpack, a one-line
            // `FROM` of the image it made, in an empty directory, only to add the labels.
            let prepared = match &target.recipe {
                Recipe::Dockerfile(path) => tokio::fs::read_to_string(path)
                    .await
                    .map(|text| (text, target.context.clone(), false))
                    .map_err(|error| failed(format!("cannot read {}: {error}", path.display()))),
                Recipe::Railpack(program) => self
                    .railpack(context, logs, program, target, &build_args, work, deadline)
                    .await
                    .map(|empty| (format!("FROM {}\n", target.image), empty, true)),
            };
            // The labels go in as one `LABEL` line at the end of a copy of the Dockerfile:
            // Podman commits a step of its own for every `--label`, about 0.3 s each.
            let dockerfile = work.join(format!("Dockerfile.wharf-{index}"));
            let prepared = match prepared {
                Ok((text, build_context, labels_only)) => {
                    labelled_dockerfile(&text, &labels, &dockerfile)
                        .await
                        .map(|()| (build_context, labels_only))
                }
                Err(stopped) => Err(stopped),
            };
            let (build_context, labels_only) = match prepared {
                Ok(prepared) => prepared,
                Err(stopped) => {
                    built = Err(stopped);
                    break;
                }
            };
            let build = ImageBuild {
                dockerfile: &dockerfile,
                context: &build_context,
                tag: &target.image,
                labels: &[],
                build_args: if labels_only { &[] } else { &build_args },
                cgroup_parent: (podman && !labels_only).then_some(cgroup.as_str()),
                secrets: if labels_only { &[] } else { &secret_files },
                network,
            };
            let to = streaming(context, logs, deadline);
            built = self
                .step_ended("build", self.config.runtime.build(&build, &to).await)
                .map(drop);
            if built.as_ref().is_err_and(is_storage_race) {
                // Podman's storage can lose a cached layer to a concurrent removal between
                // looking it up and using it; building again takes a consistent view.
                logs.note("Podman's layer cache changed under the build; building again")
                    .await;
                built = self
                    .step_ended("build", self.config.runtime.build(&build, &to).await)
                    .map(drop);
            }
            if podman {
                // RUN steps run outside the build's process group: whatever is left goes now.
                cgroup::kill_and_remove(&cgroup, Duration::from_secs(10)).await;
            }
            if built.is_err() {
                break;
            }
        }
        // The secret files are not needed past the build.
        let _ = tokio::fs::remove_dir_all(work.join("secrets")).await;
        if built.is_err() {
            self.remove_local_tags(&image_tags(&targets)).await;
        }
        built?;

        self.report(context, build_id, BuildState::Pushing).await?;
        let mut images = Vec::new();
        let mut pushed = Ok(());
        let pusher = Runtime {
            insecure_registry: self.config.runtime.insecure_registry || context.registry_insecure,
            ..self.config.runtime.clone()
        };
        for (index, target) in targets.iter().enumerate() {
            let digest_file = work.join(format!("digest-{index}"));
            // The installation's login when it has one, else the agent's; either only for the
            // registry it belongs to (the one this agent pushes to, when the server names none).
            let credentials = login_for(
                &target.image,
                job.registry_login.as_ref(),
                Some(registry_host(registry)),
                self.config.registry_credentials.as_ref(),
            );
            let auth_file = work.join("auth").join("config.json");
            let _ = tokio::fs::remove_file(&auth_file).await;
            if let Some(credentials) = &credentials {
                write_private(&auth_file, &credentials.auth_file_json()).await?;
            }
            let push = pusher
                .push(
                    &target.image,
                    &digest_file,
                    credentials.as_ref().map(|_| auth_file.as_path()),
                    &streaming(context, logs, deadline),
                )
                .await;
            pushed = self.step_ended("push", push).map(drop);
            if pushed.is_err() {
                break;
            }
            let digest = self.pushed_digest(&target.image, &digest_file).await;
            match digest {
                Ok(digest) => {
                    // A release of this digest on this host runs the image under this tag
                    // rather than pulling it back; the host's image cleanup removes it in
                    // its turn, as it finds it in the service's repository.
                    if let Some(kept) = names::pushed_tag(&target.image, &digest)
                        && let Err(error) = self.config.runtime.tag(&target.image, &kept).await
                    {
                        tracing::debug!(image = %target.image, %error, "pushed image not kept under its digest");
                    }
                    images.push(BuiltImage {
                        component: target.component.clone(),
                        image: target.image.clone(),
                        digest,
                    })
                }
                Err(error) => {
                    pushed = Err(error);
                    break;
                }
            }
        }
        let _ = tokio::fs::remove_dir_all(work.join("auth")).await;
        // The local tags go whatever happened, and before the build is reported: a release on
        // this host pulls the image by digest at once, and an untag after that pull would take
        // the repository's name (which cleanup finds images by) from the image. The layers stay
        // in the cache for the next build.
        self.remove_local_tags(&image_tags(&targets)).await;
        pushed?;
        Ok(BuildResult {
            images,
            compose_file,
        })
    }

    /// The digest the push of `image` gave.
    async fn pushed_digest(&self, image: &str, digest_file: &Path) -> StepResult<String> {
        let no_digest = || format!("the push of {image} reported no digest");
        match self.config.runtime.pushed_digest(image, digest_file).await {
            Ok(Some(digest)) => Ok(digest),
            Ok(None) => Err(failed(no_digest())),
            Err(error) => Err(failed(format!("{}: {error}", no_digest()))),
        }
    }

    async fn remove_local_tags(&self, tags: &[&str]) {
        for tag in tags {
            if let Err(error) = self.config.runtime.remove_tag(tag).await {
                tracing::debug!(tag, %error, "local tag not removed");
            }
        }
    }

    /// The one image of a service built from a Dockerfile.
    async fn dockerfile_target(
        &self,
        job: &BuildJob,
        source: &Path,
        base: &str,
    ) -> StepResult<Vec<Target>> {
        let recipe = match self.find_dockerfile(job, source).await? {
            Some(dockerfile) => Recipe::Dockerfile(dockerfile),
            None => match &self.config.railpack {
                Some(_) if !job.build_secrets.is_empty() => {
                    return Err(failed(format!(
                        "the build secret {} cannot be given to Railpack: its CLI takes secret values only as arguments, which any user of the host can read; build with a Dockerfile (RUN --mount=type=secret) instead",
                        job.build_secrets[0].name
                    )));
                }
                Some(railpack) => Recipe::Railpack(railpack.clone()),
                None => {
                    return Err(failed(
                        "nothing to build: the repository has no Dockerfile or Containerfile at its root; add one, name it with --dockerfile, or install Railpack (railpack) on the agent to build without one",
                    ));
                }
            },
        };
        let context = match (&job.service.context, &recipe) {
            (Some(context_path), _) => inside(source, context_path, "build context").await?,
            (None, Recipe::Dockerfile(dockerfile)) => dockerfile
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| source.to_path_buf()),
            (None, Recipe::Railpack(_)) => source.to_path_buf(),
        };
        Ok(vec![Target {
            component: None,
            recipe,
            context,
            image: format!("{base}:{}", job.build.commit_sha),
            args: Vec::new(),
        }])
    }

    /// One image per compose service with a `build:` section, and the compose file itself.
    async fn compose_targets(
        &self,
        job: &BuildJob,
        source: &Path,
        compose: &str,
        base: &str,
    ) -> StepResult<(Vec<Target>, Option<String>)> {
        let path = inside(source, compose, "compose file").await?;
        let metadata = tokio::fs::metadata(&path)
            .await
            .map_err(|error| failed(format!("cannot read the compose file {compose}: {error}")))?;
        if metadata.len() as usize > wharf_domain::compose::MAX_COMPOSE_BYTES {
            return Err(failed(format!("the compose file {compose} is too large")));
        }
        let text = tokio::fs::read_to_string(&path)
            .await
            .map_err(|error| failed(format!("cannot read the compose file {compose}: {error}")))?;
        let builds =
            wharf_domain::compose::builds(compose, &text).map_err(|error| failed(error.0))?;
        let mut targets = Vec::new();
        for build in builds {
            let context = inside(source, &build.context, "build context").await?;
            let dockerfile = inside(source, &build.dockerfile, "Dockerfile").await?;
            targets.push(Target {
                image: format!("{base}/{}:{}", build.component, job.build.commit_sha),
                component: Some(build.component),
                recipe: Recipe::Dockerfile(dockerfile),
                context,
                args: build.args,
            });
        }
        Ok((targets, Some(text)))
    }

    /// Reports a working state; a refusal means the build is no longer this agent's.
    async fn report(
        &self,
        context: &BuildContext,
        build_id: i64,
        state: BuildState,
    ) -> StepResult<()> {
        let request = ReportBuildState::new(build_id, state);
        match context.client.send(&request).await {
            Ok(_) => Ok(()),
            Err(error) if error.status() == Some(409) => Err(Stopped::Cancelled),
            Err(error) => Err(failed(format!("could not report progress: {error}"))),
        }
    }

    /// Runs one command of a step, streaming its output; a failure names the step.
    /// The network the build's `RUN` steps join: for an isolated build, Wharf's build network,
    /// made to exist with its firewall rules first (a build never runs isolated in name only).
    async fn build_network(
        &self,
        job: &BuildJob,
        logs: &LogShipper,
    ) -> StepResult<Option<&'static str>> {
        match job.service.build_network {
            BuildNetwork::Open => Ok(None),
            BuildNetwork::Isolated => {
                let network = self
                    .config
                    .runtime
                    .ensure_build_network()
                    .await
                    .map_err(|error| {
                        failed(format!(
                            "cannot set up the isolated build network: {}; the agent needs iptables and ip6tables as root, or the service can build with --build-network open",
                            wharf_runtime::error_chain(&error)
                        ))
                    })?;
                logs.note(format!(
                    "RUN steps join the isolated build network {network}: the internet, not this host nor link-local addresses"
                ))
                .await;
                Ok(Some(network))
            }
        }
    }

    async fn step(
        &self,
        context: &BuildContext,
        logs: &LogShipper,
        step: &str,
        command: &CommandSpec,
        deadline: Instant,
    ) -> StepResult<RunOutcome> {
        let outcome = process::run(command, &streaming(context, logs, deadline)).await;
        self.step_ended(step, outcome)
    }

    /// What a step's command's end means for the build: done, cancelled, or a failure that
    /// names the step and says how its command ended.
    fn step_ended(
        &self,
        step: &str,
        outcome: Result<RunOutcome, SpawnError>,
    ) -> StepResult<RunOutcome> {
        let outcome = outcome.map_err(|error| failed(error.to_string()))?;
        let failure = |outcome: &RunOutcome| StepFailure {
            step: step.to_owned(),
            command: Some(outcome.command.clone()),
            exit_code: outcome.ended.exit_code(),
            output_tail: outcome.tail.clone(),
        };
        let reason = match outcome.ended {
            Ended::Exited(0) => return Ok(outcome),
            Ended::Cancelled => return Err(Stopped::Cancelled),
            Ended::TimedOut { .. } => format!(
                "the build took longer than {} s and was stopped during {step}",
                self.config.timeout.as_secs()
            ),
            Ended::Exited(code) => {
                format!("{step} failed (exit code {code}): {}", outcome.last_line())
            }
            Ended::Killed { signal } => format!(
                "{step} failed (killed by signal {signal}): {}",
                outcome.last_line()
            ),
        };
        Err(Stopped::Failed {
            reason,
            failure: Some(failure(&outcome)),
        })
    }

    /// Builds `target` with Railpack's CLI, which loads the image into the runtime's images
    /// through `docker load`. Build arguments go in as `--env`; build secrets are refused,
    /// since Railpack takes their values only on its command line, which every user of the
    /// host can read.
    /// Returns an empty directory in `work`, the context of the build that adds the labels.
    #[allow(clippy::too_many_arguments)]
    async fn railpack(
        &self,
        context: &BuildContext,
        logs: &LogShipper,
        program: &Path,
        target: &Target,
        build_args: &[(String, String)],
        work: &Path,
        deadline: Instant,
    ) -> StepResult<PathBuf> {
        let command =
            wharf_runtime::railpack::build(program, &target.image, build_args, &target.context);
        logs.note(
            "Railpack builds in BuildKit: its steps run on BuildKit's network, not Wharf's build network",
        )
        .await;
        self.step(context, logs, "build", &command, deadline)
            .await?;
        let found = self
            .config
            .runtime
            .has_image(&target.image)
            .await
            .map_err(|error| failed(error.to_string()))?;
        if !found {
            return Err(failed(format!(
                "Railpack finished, but {} is not among {}'s images: Railpack hands its image to `docker load`, so `docker` must be the runtime Wharf builds with (with Podman, Debian's podman-docker)",
                target.image,
                self.config.runtime.kind.program()
            )));
        }
        let empty = work.join("railpack-labels");
        tokio::fs::create_dir_all(&empty)
            .await
            .map_err(|error| failed(format!("cannot create {}: {error}", empty.display())))?;
        Ok(empty)
    }

    /// The Dockerfile the service names, else `Dockerfile` or `Containerfile` at the root;
    /// `None` when the repository has neither and the service names none.
    async fn find_dockerfile(&self, job: &BuildJob, source: &Path) -> StepResult<Option<PathBuf>> {
        if let Some(path) = &job.service.dockerfile {
            return inside(source, path, "Dockerfile").await.map(Some);
        }
        for name in ["Dockerfile", "Containerfile"] {
            // Present at all (a link counts, wherever it leads): it must resolve inside.
            if tokio::fs::symlink_metadata(source.join(name)).await.is_ok() {
                let path = inside(source, name, "Dockerfile").await?;
                if tokio::fs::metadata(&path)
                    .await
                    .is_ok_and(|meta| meta.is_file())
                {
                    return Ok(Some(path));
                }
            }
        }
        Ok(None)
    }
}

/// Where a step's command's output goes: the build's log, until the build stops or its time
/// is up.
fn streaming<'a>(context: &BuildContext, logs: &'a LogShipper, deadline: Instant) -> Streaming<'a> {
    Streaming {
        lines: logs.sender(),
        stop: context.stop.clone(),
        deadline,
    }
}

/// The tags the targets are built under.
fn image_tags(targets: &[Target]) -> Vec<&str> {
    targets.iter().map(|target| target.image.as_str()).collect()
}

/// True for the failure Podman gives when a layer it found in its cache vanished before use.
fn is_storage_race(stopped: &Stopped) -> bool {
    match stopped {
        Stopped::Failed {
            failure: Some(failure),
            ..
        } => failure
            .output_tail
            .iter()
            .any(|line| line.contains("layer not known")),
        _ => false,
    }
}

/// Writes a file only this agent can read, in a directory only it can enter.
async fn write_private(path: &Path, contents: &str) -> StepResult<()> {
    use std::os::unix::fs::PermissionsExt;
    let cannot =
        |error: std::io::Error| failed(format!("cannot write {}: {error}", path.display()));
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(cannot)?;
        tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .await
            .map_err(cannot)?;
    }
    let target = path.to_path_buf();
    let contents = contents.to_owned();
    tokio::task::spawn_blocking(move || {
        wharf_runtime::files::write_private_file(&target, contents.as_bytes())
    })
    .await
    .map_err(|error| failed(format!("cannot write {}: {error}", path.display())))?
    .map_err(cannot)
}

/// Writes each build secret to a file only this agent can read, for `--secret id=…,src=…`.
async fn write_secret_files(work: &Path, job: &BuildJob) -> StepResult<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for (index, secret) in job.build_secrets.iter().enumerate() {
        let path = work.join("secrets").join(format!("secret-{index}"));
        write_private(&path, secret.value.expose()).await?;
        files.push((secret.name.clone(), path));
    }
    Ok(files)
}

async fn canonical(path: &Path) -> StepResult<PathBuf> {
    tokio::fs::canonicalize(path)
        .await
        .map_err(|error| failed(format!("cannot read {}: {error}", path.display())))
}

/// Resolves `relative` inside `root`, following symlinks, and refuses anything that ends up
/// outside it (`..`, absolute paths, links out of the repository).
async fn inside(root: &Path, relative: &str, what: &str) -> StepResult<PathBuf> {
    if relative.starts_with('/') || relative.split('/').any(|part| part == "..") {
        return Err(failed(format!(
            "the {what} path {relative:?} leaves the repository"
        )));
    }
    let resolved = tokio::fs::canonicalize(root.join(relative))
        .await
        .map_err(|_| {
            failed(format!(
                "the {what} {relative:?} does not exist in the repository"
            ))
        })?;
    if !resolved.starts_with(root) {
        return Err(failed(format!(
            "the {what} path {relative:?} leads outside the repository (through a symbolic link)"
        )));
    }
    Ok(resolved)
}

/// Writes the Dockerfile `text` with one `LABEL` instruction for `labels` appended to `dest`.
/// Label values are Wharf's own (DNS labels, a commit SHA, a build id): no quoting or escaping
/// can go wrong.
async fn labelled_dockerfile(
    text: &str,
    labels: &[(String, String)],
    dest: &Path,
) -> StepResult<()> {
    let mut text = text.to_owned();
    let pairs: Vec<String> = labels
        .iter()
        .map(|(key, value)| format!("{key}=\"{value}\""))
        .collect();
    text.push_str(&format!("\nLABEL {}\n", pairs.join(" ")));
    tokio::fs::write(dest, text)
        .await
        .map_err(|error| failed(format!("cannot write {}: {error}", dest.display())))
}

//! Compose releases: the stack a compose file describes, one container per compose service
//! (a *member*), with the images the build pushed, pinned by digest.
//!
//! A stack runs recreate-style: stateful members (a database on its volume) must never run
//! twice at once. The old stack stops, the new one starts member by member in the plan's
//! order, each health-checked before the next starts; when one fails, every new container
//! goes and the old stack, which was only stopped, starts again. Before anything on the host
//! is touched, the file is planned ([`plan_stack`], which refuses what reaches past a
//! container's isolation unless the service's owner allowed it), host paths are resolved and
//! checked again, and every image is pulled.
//!
//! Members share a network of the service's own, where each is reachable by its compose name.
//! The member that listens on the service's port is published on a free loopback port, and
//! the service's route points there once every member is healthy. Named volumes are scoped to
//! the service and outlive its releases; anonymous volumes go with their container.
//!
//! Each member receives the service's variables for every member and those that name it (by
//! its compose name, or as `routed` when it is the member that takes the traffic), so a
//! third-party image in the stack never sees a secret meant for another member. A variable that
//! would reach no member (a name the file does not have, `routed` in a stack without a port)
//! refuses the rollout rather than disappear.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wharf_domain::compose::{
    ComposeAllowances, ComposeHealthcheck, HealthTest, PortProtocol, ReservedPort, StackPlan,
    StackService, VolumeSource, plan_stack, reaches_container_socket,
};
use wharf_domain::identity::DeployIdentity;
use wharf_runtime::edge::EdgeConfig;
use wharf_runtime::engine::{ContainerNetwork, ContainerRun, Mount, MountSource, PortPublish};
use wharf_wire::{
    HealthSettings, ProbeResult, ReleaseState, RolloutJob, ScopedEnvVarValue, VariableMembers,
};

use super::health::{PROBES_KEPT, Probe, Unhealthy};
use super::{Deployer, Found, Outcome, Started, StepError, Switched, free_port};
use crate::names::{self, StackNames};

/// A stack ready to start: planned, its images pulled, its host paths resolved.
struct PreparedStack {
    /// The service and environment the stack runs for.
    identity: DeployIdentity,
    /// In start order.
    members: Vec<Member>,
    /// The stack's network.
    network: String,
    /// The stack's named volumes the members mount.
    volumes: BTreeSet<String>,
}

/// One member, ready to start.
struct Member {
    service: StackService,
    /// Its place in the start order, 0 first.
    order: usize,
    /// Its variables as an env file's text: the compose file's, then the service's Wharf
    /// variables that reach it, which win.
    env: String,
    mounts: Vec<OwnedMount>,
    probe: Probe,
    health: HealthSettings,
    /// Whether it listens on the service's port, and so takes the service's traffic.
    routed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnedMount {
    source: OwnedSource,
    target: String,
    read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum OwnedSource {
    Anonymous,
    /// A named volume, by its name on the host.
    Volume(String),
    /// A host path, with symbolic links resolved.
    HostPath(PathBuf),
}

/// How a stack failed to start.
struct StackFailure {
    /// Every container started for it so far.
    started: Vec<Started>,
    outcome: Outcome,
}

impl Deployer {
    /// Runs a compose release: plan, pull, stop the old stack, start and check the new one
    /// member by member, route; on failure, restore the old stack.
    pub(super) async fn deploy_stack(
        &self,
        job: &RolloutJob,
        file: &str,
    ) -> Result<(Vec<ProbeResult>, Switched), Outcome> {
        let identity = names::identity(job).map_err(Outcome::Refused)?;
        let allow = ComposeAllowances::from_names(&job.settings.compose_allow);
        let plan = plan_stack(file, &job.compose_images, &allow, &self.reserved_ports)
            .map_err(|refusal| Outcome::Refused(refusal.to_string()))?;
        let old = self.service_containers(job).await;
        let names = self.stack_names(&identity, old.iter());
        let stack = self
            .prepare_stack(job, identity, plan, &allow, &names)
            .await
            .map_err(Outcome::Refused)?;
        self.remove_leftovers(job, &old).await;
        let old: Vec<Found> = old
            .into_iter()
            .filter(|found| found.release != Some(job.release_id))
            .collect();
        self.step(job, ReleaseState::Starting).await;
        if let Err(error) = self.create_stack_resources(&stack).await {
            return Err(Outcome::not_started(error));
        }
        self.stop_previous(job, &old).await;
        match self.start_stack(job, &stack, true).await {
            Ok(probes) => Ok((probes, Switched { beside: false, old })),
            Err(failure) => {
                for container in &failure.started {
                    self.remove(&container.name).await;
                }
                self.restart_previous(job, &old).await;
                Err(failure.outcome)
            }
        }
    }

    /// Puts a live stack back after the agent restarted: its containers are adopted when every
    /// member is there (stopped ones started again, in order), else it is started afresh.
    pub(super) async fn reconcile_stack(
        &self,
        job: &RolloutJob,
        identity: &DeployIdentity,
        mine: &[&Found],
    ) {
        let file = job.compose_file.as_deref().unwrap_or_default();
        let allow = ComposeAllowances::from_names(&job.settings.compose_allow);
        let names = self.stack_names(identity, mine.iter().copied());
        let members: Option<Vec<String>> = match plan_stack(
            file,
            &job.compose_images,
            &allow,
            &self.reserved_ports,
        ) {
            Ok(plan) => {
                self.report_earlier_volumes(&plan, &names).await;
                Some(
                    plan.services
                        .into_iter()
                        .map(|member| member.name)
                        .collect(),
                )
            }
            Err(refusal) => {
                // It was allowed when it went live; what runs of it stays.
                tracing::warn!(service = %job.service, release = job.release_id, %refusal, "the live stack's compose file is refused now; adopting what runs of it");
                None
            }
        };
        let complete = match &members {
            Some(members) => members.iter().all(|member| {
                mine.iter()
                    .any(|found| found.component.as_deref() == Some(member.as_str()))
            }),
            None => !mine.is_empty(),
        };
        if complete && self.ensure_network(identity, &names.network).await.is_ok() {
            let mut in_order: Vec<&Found> = mine.to_vec();
            in_order.sort_by_key(|found| found.order);
            let mut all_running = true;
            for container in in_order.iter().filter(|found| !found.running) {
                tracing::info!(container = %container.name, "starting a stopped member of a live stack");
                if let Err(error) = self.config.runtime.start_container(&container.name).await {
                    tracing::warn!(container = %container.name, %error, "cannot start it; the stack will be started afresh");
                    all_running = false;
                    break;
                }
            }
            if all_running {
                tracing::info!(service = %job.service, release = job.release_id, containers = mine.len(), "adopted the running stack");
                let routed: Vec<Started> = mine.iter().map(|found| found.started()).collect();
                if let Err(error) = self.route(job, &routed).await {
                    tracing::error!(service = %job.service, %error, "cannot route to the live stack");
                }
                return;
            }
        }
        if members.is_none() {
            return;
        }
        tracing::warn!(service = %job.service, release = job.release_id, "the live stack is not running here; starting it");
        for container in mine {
            self.remove(&container.name).await;
        }
        if let Err(error) = self
            .restore_stack(job, identity, file, &allow, &names)
            .await
        {
            tracing::error!(service = %job.service, release = job.release_id, %error, "cannot bring the live stack back");
        }
    }

    /// Starts a live stack that is missing from the host, with no report (it is live already).
    async fn restore_stack(
        &self,
        job: &RolloutJob,
        identity: &DeployIdentity,
        file: &str,
        allow: &ComposeAllowances,
        names: &StackNames,
    ) -> Result<(), StepError> {
        let plan = plan_stack(file, &job.compose_images, allow, &self.reserved_ports)
            .map_err(|refusal| StepError(refusal.to_string()))?;
        let stack = self
            .prepare_stack(job, identity.clone(), plan, allow, names)
            .await
            .map_err(StepError)?;
        self.create_stack_resources(&stack).await?;
        match self.start_stack(job, &stack, false).await {
            Ok(_) => Ok(()),
            Err(failure) => {
                for container in &failure.started {
                    self.remove(&container.name).await;
                }
                Err(StepError(match failure.outcome {
                    Outcome::RolledBack(unhealthy) => unhealthy.reason,
                    Outcome::PullFailed(error) => error.0,
                    Outcome::Refused(reason) => reason,
                }))
            }
        }
    }

    /// Everything that can fail before the host changes: host paths, pulls, which member takes
    /// the traffic, how each is checked. A failure is the rollout's reason.
    async fn prepare_stack(
        &self,
        job: &RolloutJob,
        identity: DeployIdentity,
        plan: StackPlan,
        allow: &ComposeAllowances,
        names: &StackNames,
    ) -> Result<PreparedStack, String> {
        check_scoped_env(&job.scoped_env, &plan, job.port.is_some())?;
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let mut mounts = Vec::with_capacity(plan.services.len());
        for member in &plan.services {
            mounts.push(resolve_mounts(member, names, allow, home.as_deref())?);
        }

        let built: BTreeSet<&str> = job
            .compose_images
            .iter()
            .map(|(_, image)| image.as_str())
            .collect();
        let mut pulled = BTreeSet::new();
        for member in &plan.services {
            if !pulled.insert(member.image.as_str()) {
                continue;
            }
            self.pull_image(job, &member.image, built.contains(member.image.as_str()))
                .await
                .map_err(|error| {
                    format!(
                        "the image of compose service {:?} could not be pulled: {error}",
                        member.name
                    )
                })?;
        }

        let routed = match job.port {
            None => None,
            Some(port) => {
                let mut exposed = BTreeMap::new();
                for image in &pulled {
                    exposed.insert((*image).to_owned(), self.exposed_ports(image).await);
                }
                Some(routed_member(&plan, port, &exposed)?)
            }
        };

        let mut members = Vec::with_capacity(plan.services.len());
        for ((order, member), mounts) in plan.services.into_iter().enumerate().zip(mounts) {
            let variables = wharf_variables(job, &member.name, routed.as_deref());
            let routed = routed.as_deref() == Some(member.name.as_str());
            let image_check = match &member.healthcheck {
                Some(_) => None,
                None => self.image_healthcheck(&member.image).await,
            };
            members.push(Member {
                env: member_env(&variables, &member.environment)
                    .map_err(|error| format!("compose service {:?}: {error}", member.name))?,
                probe: member_probe(
                    member.healthcheck.as_ref(),
                    image_check,
                    routed,
                    job.health_path.as_deref(),
                ),
                health: member_health(&job.settings.health, member.healthcheck.as_ref()),
                routed,
                order,
                mounts,
                service: member,
            });
        }
        let volumes = members
            .iter()
            .flat_map(|member| &member.mounts)
            .filter_map(|mount| match &mount.source {
                OwnedSource::Volume(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        Ok(PreparedStack {
            identity,
            members,
            network: names.network.clone(),
            volumes,
        })
    }

    /// Where `identity`'s stack keeps its network and volumes, given its containers on the
    /// host: see [`StackNames`].
    fn stack_names<'a>(
        &self,
        identity: &DeployIdentity,
        containers: impl Iterator<Item = &'a Found> + Clone,
    ) -> StackNames {
        StackNames::new(
            identity,
            &self.agent,
            containers
                .clone()
                .flat_map(|found| found.networks.iter().map(String::as_str)),
            containers.flat_map(|found| found.volumes.iter().map(String::as_str)),
        )
    }

    /// Says which volumes an earlier agent named for this service are left alone: no
    /// container of this service and environment uses them, so they may be another
    /// environment's; their data stays where it is.
    async fn report_earlier_volumes(&self, plan: &StackPlan, names: &StackNames) {
        let named: BTreeSet<&str> = plan
            .services
            .iter()
            .flat_map(|member| &member.volumes)
            .filter_map(|mount| match &mount.source {
                VolumeSource::Named(name) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        for volume in named {
            let earlier = names.legacy_volume(volume);
            if names.volume(volume) != earlier
                && matches!(self.config.runtime.volume_exists(&earlier).await, Ok(true))
            {
                tracing::warn!(volume = %earlier, uses = %names.volume(volume), "an earlier agent's volume is used by no container of this service and environment; it is left alone");
            }
        }
    }

    /// The ports an image declares with `EXPOSE` (TCP only).
    async fn exposed_ports(&self, image: &str) -> BTreeSet<u16> {
        match self.config.runtime.image_exposed_ports(image).await {
            Ok(ports) => ports,
            Err(error) => {
                tracing::debug!(image, %error, "the image's EXPOSE cannot be read");
                BTreeSet::new()
            }
        }
    }

    /// The stack's network and named volumes, created when missing.
    async fn create_stack_resources(&self, stack: &PreparedStack) -> Result<(), StepError> {
        self.ensure_network(&stack.identity, &stack.network).await?;
        let labels = names::resource_labels(&stack.identity, &self.agent);
        for volume in &stack.volumes {
            self.config
                .runtime
                .ensure_volume(volume, &labels)
                .await
                .map_err(|error| {
                    StepError(format!("cannot create the volume {volume}: {error}"))
                })?;
        }
        Ok(())
    }

    async fn ensure_network(
        &self,
        identity: &DeployIdentity,
        network: &str,
    ) -> Result<(), StepError> {
        self.config
            .runtime
            .ensure_network(network, &names::resource_labels(identity, &self.agent))
            .await
            .map(drop)
            .map_err(|error| StepError(format!("cannot create the network {network}: {error}")))
    }

    /// Starts the members in order, each healthy before the next starts, then routes to the
    /// routed one. `report` sends the rollout's steps.
    async fn start_stack(
        &self,
        job: &RolloutJob,
        stack: &PreparedStack,
        report: bool,
    ) -> Result<Vec<ProbeResult>, StackFailure> {
        let mut started: Vec<Started> = Vec::new();
        let mut routed: Vec<Started> = Vec::new();
        let mut probes: Vec<ProbeResult> = Vec::new();
        let begun = Instant::now();
        let dir = self.job_dir(job);
        let failed = |started: Vec<Started>, outcome: Outcome| StackFailure { started, outcome };
        for member in &stack.members {
            let name = &member.service.name;
            let container = match self.start_member(job, stack, member, &dir).await {
                Ok(container) => container,
                Err(error) => {
                    let _ = tokio::fs::remove_dir_all(&dir).await;
                    return Err(failed(
                        started,
                        Outcome::not_started(StepError(format!(
                            "compose service {name:?} could not start: {error}"
                        ))),
                    ));
                }
            };
            started.push(container.clone());
            if report && started.len() == 1 {
                self.step(job, ReleaseState::HealthChecking).await;
            }
            let offset = begun.elapsed().as_millis() as u64;
            match self
                .wait_until_healthy(
                    job,
                    &member.probe,
                    &member.health,
                    std::slice::from_ref(&container),
                )
                .await
            {
                Ok(member_probes) => {
                    probes.extend(member_probes.into_iter().map(|probe| ProbeResult {
                        after_ms: offset + probe.after_ms,
                        healthy: probe.healthy,
                        detail: format!("{name}: {}", probe.detail),
                    }));
                }
                Err(unhealthy) => {
                    let _ = tokio::fs::remove_dir_all(&dir).await;
                    return Err(failed(
                        started,
                        Outcome::RolledBack(Unhealthy {
                            reason: format!(
                                "compose service {name:?} did not become healthy: {}",
                                unhealthy.reason
                            ),
                            probes: unhealthy
                                .probes
                                .into_iter()
                                .map(|probe| ProbeResult {
                                    after_ms: offset + probe.after_ms,
                                    detail: format!("{name}: {}", probe.detail),
                                    ..probe
                                })
                                .collect(),
                            log_tail: unhealthy.log_tail,
                        }),
                    ));
                }
            }
            if member.routed {
                routed.push(container);
            }
        }
        let _ = tokio::fs::remove_dir_all(&dir).await;
        if let Err(error) = self.route(job, &routed).await {
            return Err(failed(started, Outcome::not_started(error)));
        }
        let skip = probes.len().saturating_sub(PROBES_KEPT);
        Ok(probes.split_off(skip))
    }

    /// Starts one member, published on a free loopback port when it takes the traffic.
    async fn start_member(
        &self,
        job: &RolloutJob,
        stack: &PreparedStack,
        member: &Member,
        dir: &Path,
    ) -> Result<Started, StepError> {
        let spec = &member.service;
        let name = stack
            .identity
            .container_name(&self.agent, job.release_id, &spec.name);
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|error| StepError(format!("cannot create {}: {error}", dir.display())))?;
        let env_file = dir.join(format!("env-{}", spec.name));
        wharf_runtime::files::write_private_file(&env_file, member.env.as_bytes())
            .map_err(|error| StepError(format!("cannot write the variables file: {error}")))?;
        let ports: Vec<PortPublish> = if spec.network_mode_host {
            // On the host's network its ports are the host's already.
            Vec::new()
        } else {
            spec.ports
                .iter()
                .map(|port| PortPublish {
                    host_ip: port.host_ip,
                    host_port: port.host_port,
                    container_port: port.container_port,
                    udp: port.protocol == PortProtocol::Udp,
                })
                .collect()
        };
        let mounts: Vec<Mount<'_>> = member
            .mounts
            .iter()
            .map(|mount| Mount {
                source: match &mount.source {
                    OwnedSource::Anonymous => MountSource::Anonymous,
                    OwnedSource::Volume(name) => MountSource::Volume(name),
                    OwnedSource::HostPath(path) => MountSource::HostPath(path),
                },
                target: &mount.target,
                read_only: mount.read_only,
            })
            .collect();
        let network = if spec.network_mode_host {
            ContainerNetwork::Host
        } else {
            ContainerNetwork::Named {
                name: &stack.network,
                alias: &spec.name,
            }
        };
        let mut last_error = None;
        // A free port can be taken by someone else between the look and the start: try again.
        for _ in 0..3 {
            let (publish, port) = match (member.routed, job.port) {
                (true, Some(port)) if spec.network_mode_host => (None, Some(port)),
                (true, Some(port)) => {
                    let host_port = free_port()?;
                    (Some((host_port, port)), Some(host_port))
                }
                _ => (None, None),
            };
            let labels = names::member_labels(
                &stack.identity,
                &self.agent,
                job.release_id,
                &spec.name,
                member.order,
                port,
            );
            let run = ContainerRun {
                name: &name,
                image: &spec.image,
                labels: &labels,
                env_file: Some(&env_file),
                publish,
                ports: &ports,
                command: spec.command.as_deref(),
                entrypoint: spec.entrypoint.as_deref(),
                user: spec.user.as_deref(),
                workdir: spec.working_dir.as_deref(),
                mounts: &mounts,
                network,
                privileged: spec.privileged,
                cap_add: &spec.cap_add,
                pid_host: spec.pid_host,
            };
            match self.config.runtime.run_container(&run).await {
                Ok(()) => {
                    let _ = tokio::fs::remove_file(&env_file).await;
                    let on = port.map_or(String::new(), |port| format!(" on 127.0.0.1:{port}"));
                    self.note(job, format!("started {name}{on}"));
                    return Ok(Started { name, port });
                }
                Err(error) => {
                    self.remove(&name).await;
                    self.note(job, format!("{name} did not start: {error}"));
                    let retry = publish.is_some() && error.is_address_in_use();
                    last_error = Some(StepError::from(error));
                    if !retry {
                        break;
                    }
                }
            }
        }
        let _ = tokio::fs::remove_file(&env_file).await;
        Err(last_error.unwrap_or_else(|| StepError("the container did not start".to_owned())))
    }
}

/// A member's mounts as the host sees them: named volumes scoped to the service, host paths
/// resolved (`~` is the home of the user running the agent, symbolic links followed) and
/// checked again against the engine's socket, since a link can point anywhere.
fn resolve_mounts(
    member: &StackService,
    names: &StackNames,
    allow: &ComposeAllowances,
    home: Option<&Path>,
) -> Result<Vec<OwnedMount>, String> {
    let subject = format!("compose service {:?}", member.name);
    member
        .volumes
        .iter()
        .map(|mount| {
            let source = match &mount.source {
                VolumeSource::Anonymous => OwnedSource::Anonymous,
                VolumeSource::Named(name) => OwnedSource::Volume(names.volume(name)),
                VolumeSource::HostPath(path) => {
                    OwnedSource::HostPath(resolve_host_path(&subject, path, allow, home)?)
                }
            };
            Ok(OwnedMount {
                source,
                target: mount.target.clone(),
                read_only: mount.read_only,
            })
        })
        .collect()
}

fn resolve_host_path(
    subject: &str,
    path: &str,
    allow: &ComposeAllowances,
    home: Option<&Path>,
) -> Result<PathBuf, String> {
    let written = if path == "~" || path.starts_with("~/") {
        let home = home.ok_or_else(|| {
            format!("{subject} mounts {path:?}, but the agent has no home directory (HOME)")
        })?;
        home.join(path.trim_start_matches('~').trim_start_matches('/'))
    } else if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        return Err(format!(
            "{subject} mounts {path:?} from the repository, which the deploy host does not have: use a named volume, or an absolute path"
        ));
    };
    let resolved = std::fs::canonicalize(&written).map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{subject} mounts the host path {}, which does not exist on this host",
                written.display()
            )
        } else {
            format!(
                "{subject} mounts the host path {}, which cannot be read: {error}",
                written.display()
            )
        }
    })?;
    let Some(text) = resolved.to_str().filter(|text| !text.contains([':', ','])) else {
        return Err(format!(
            "{subject} mounts {path:?}, which resolves to {}, a path Wharf cannot pass to the runtime",
            resolved.display()
        ));
    };
    if !allow.socket && reaches_container_socket(text) {
        return Err(format!(
            "{subject} mounts {path:?}, which resolves to {text:?} and reaches the container engine's socket; Wharf refuses it unless the service's deploy settings allow \"socket\""
        ));
    }
    Ok(resolved)
}

/// The host ports Wharf listens on, which no compose file may publish: the server's API (by
/// the port of the URL the agent reaches it at), Caddy's admin API, the edge's HTTP port and
/// HTTPS's 443, and the registry's port.
pub(super) fn wharf_ports(
    server: &str,
    edge: &EdgeConfig,
    registry: Option<&str>,
) -> Vec<ReservedPort> {
    let port_of = |address: &str| {
        let address = address.split('/').next().unwrap_or(address);
        address.rsplit_once(':')?.1.parse::<u16>().ok()
    };
    let server_port = reqwest::Url::parse(server)
        .ok()
        .and_then(|url| url.port_or_known_default());
    [
        (server_port, "Wharf's API"),
        (port_of(&edge.admin), "Caddy's admin API"),
        (port_of(&edge.listen), "Wharf's edge (HTTP)"),
        (Some(443), "Wharf's edge (HTTPS)"),
        (registry.and_then(port_of), "Wharf's registry"),
    ]
    .into_iter()
    .filter_map(|(port, owner)| {
        Some(ReservedPort {
            port: port?,
            owner: owner.to_owned(),
        })
    })
    .collect()
}

/// The member that takes the service's traffic on `port`: the one whose `ports:` lists it,
/// else the one whose image declares it with `EXPOSE`. More than one, or none, is a refusal:
/// Wharf does not guess where traffic goes.
fn routed_member(
    plan: &StackPlan,
    port: u16,
    exposed: &BTreeMap<String, BTreeSet<u16>>,
) -> Result<String, String> {
    let listed: Vec<&str> = plan
        .services
        .iter()
        .filter(|member| {
            member.ports.iter().any(|mapping| {
                mapping.container_port == port && mapping.protocol == PortProtocol::Tcp
            })
        })
        .map(|member| member.name.as_str())
        .collect();
    let candidates: Vec<&str> = if listed.is_empty() {
        plan.services
            .iter()
            .filter(|member| {
                exposed
                    .get(&member.image)
                    .is_some_and(|ports| ports.contains(&port))
            })
            .map(|member| member.name.as_str())
            .collect()
    } else {
        listed
    };
    match candidates[..] {
        [only] => Ok(only.to_owned()),
        [] => Err(format!(
            "no compose service listens on the service's port {port}: list it under the ports: of the compose service that serves it, or EXPOSE it in that service's image"
        )),
        _ => Err(format!(
            "compose services {} all listen on the service's port {port}: list it under ports: of the one Wharf should route to",
            candidates
                .iter()
                .map(|name| format!("{name:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// How a member proves it is healthy: its compose `healthcheck` (run inside it), else its
/// image's `HEALTHCHECK`, else HTTP on the service's port for the member that takes the
/// traffic, else still running after the start period. A disabled check is the last.
fn member_probe(
    check: Option<&ComposeHealthcheck>,
    image_check: Option<Vec<String>>,
    routed: bool,
    health_path: Option<&str>,
) -> Probe {
    match check.map(|check| &check.test) {
        Some(HealthTest::Disabled) => Probe::Running,
        Some(test) => test.argv().map_or(Probe::Running, Probe::Exec),
        None => match (image_check, routed) {
            (Some(command), _) => Probe::Exec(command),
            (None, true) => Probe::Http(health_path.unwrap_or("/").to_owned()),
            (None, false) => Probe::Running,
        },
    }
}

/// The service's health timing, with what the member's compose `healthcheck` sets instead.
/// The deadline grows to leave room for the member's own start period and retries.
fn member_health(service: &HealthSettings, check: Option<&ComposeHealthcheck>) -> HealthSettings {
    let mut health = service.clone();
    let Some(check) = check else {
        return health;
    };
    let millis = |duration: Duration| duration.as_millis().min(u64::MAX as u128) as u64;
    if let Some(interval) = check.interval {
        health.interval_ms = millis(interval).max(50);
    }
    if let Some(timeout) = check.timeout {
        health.timeout_ms = millis(timeout).max(50);
    }
    if let Some(retries) = check.retries {
        health.retries = retries;
    }
    if let Some(start_period) = check.start_period {
        health.start_period_ms = millis(start_period);
    }
    let room = health.start_period_ms.saturating_add(
        health
            .interval_ms
            .saturating_add(health.timeout_ms)
            .saturating_mul(u64::from(health.retries.max(1)) + 1),
    );
    health.deadline_ms = health.deadline_ms.max(room);
    health
}

/// Refuses variables scoped to members that would reach none: a name the compose file does not
/// have, or `routed` when no member takes the service's traffic (it has no port, `routes` is
/// false). With a port, planning finds the one member that takes the traffic or refuses.
fn check_scoped_env(
    scoped: &[ScopedEnvVarValue],
    plan: &StackPlan,
    routes: bool,
) -> Result<(), String> {
    for variable in scoped {
        match &variable.members {
            VariableMembers::All => {}
            VariableMembers::Routed if !routes => {
                return Err(format!(
                    "variable {} is for the member that takes the service's traffic, but the service has no port: name its members (wharf env set … --member NAME, or --member all)",
                    variable.name
                ));
            }
            VariableMembers::Routed => {}
            VariableMembers::Named(names) => {
                if let Some(missing) = names
                    .iter()
                    .find(|name| !plan.services.iter().any(|member| &&member.name == name))
                {
                    return Err(format!(
                        "variable {} is for the compose service {missing:?}, which the compose file does not have",
                        variable.name
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The service's variables that reach the member `member` (`routed` names the member that
/// takes the traffic): those for every member, and those that name it.
fn wharf_variables<'a>(
    job: &'a RolloutJob,
    member: &str,
    routed: Option<&str>,
) -> Vec<(&'a str, &'a str)> {
    let every = job
        .env
        .iter()
        .map(|variable| (variable.name.as_str(), variable.value.expose()));
    let named = job
        .scoped_env
        .iter()
        .filter(|variable| variable.members.includes(member, routed))
        .map(|variable| (variable.name.as_str(), variable.value.expose()));
    every.chain(named).collect()
}

/// A member's env file: the compose file's variables, then the service's Wharf variables that
/// reach it, which win over the file's of the same name.
fn member_env(service: &[(&str, &str)], member: &[(String, String)]) -> Result<String, String> {
    let mut text = String::new();
    let wharf: BTreeSet<&str> = service.iter().map(|(name, _)| *name).collect();
    let file = member
        .iter()
        .filter(|(name, _)| !wharf.contains(name.as_str()))
        .map(|(name, value)| (name.as_str(), value.as_str()));
    let variables = file.chain(service.iter().copied());
    for (name, value) in variables {
        if value.contains('\n') {
            return Err(format!(
                "variable {name} holds a line break, which a container cannot receive"
            ));
        }
        text.push_str(&format!("{name}={value}\n"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use wharf_domain::compose::{PortMapping, VolumeMount};
    use wharf_wire::{EnvVarValue, SecretText};

    use super::*;

    fn plan(file: &str) -> StackPlan {
        plan_stack(file, &[], &ComposeAllowances::default(), &[]).unwrap()
    }

    #[test]
    fn wharf_s_own_ports_are_read_from_its_addresses() {
        let mut edge = EdgeConfig::new("/tmp/edge");
        edge.admin = "127.0.0.1:2019".to_owned();
        edge.listen = ":80".to_owned();
        let ports = |server, registry| {
            wharf_ports(server, &edge, registry)
                .into_iter()
                .map(|reserved| (reserved.port, reserved.owner))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ports("http://127.0.0.1:8420", Some("127.0.0.1:5000")),
            [
                (8420, "Wharf's API".to_owned()),
                (2019, "Caddy's admin API".to_owned()),
                (80, "Wharf's edge (HTTP)".to_owned()),
                (443, "Wharf's edge (HTTPS)".to_owned()),
                (5000, "Wharf's registry".to_owned()),
            ]
        );
        let without = ports(
            "https://wharf.example.com",
            Some("registry.example.com/acme"),
        );
        assert_eq!(without[0], (443, "Wharf's API".to_owned()));
        assert_eq!(
            without.len(),
            4,
            "a registry without a port is not on this host's ports"
        );
    }

    #[test]
    fn the_member_listing_the_port_takes_the_traffic_else_the_one_exposing_it() {
        let stack = plan(
            "services:\n  db:\n    image: db\n  web:\n    image: web\n    ports: [\"127.0.0.1::8080\"]\n  api:\n    image: api\n",
        );
        let exposed = BTreeMap::from([
            ("db".to_owned(), BTreeSet::from([5432])),
            ("api".to_owned(), BTreeSet::from([8080])),
        ]);
        assert_eq!(routed_member(&stack, 8080, &exposed).unwrap(), "web");
        let stack = plan("services:\n  db:\n    image: db\n  api:\n    image: api\n");
        assert_eq!(routed_member(&stack, 8080, &exposed).unwrap(), "api");
        let refusal = routed_member(&stack, 9000, &exposed).unwrap_err();
        assert!(refusal.contains("no compose service listens"), "{refusal}");
        let twice = BTreeMap::from([
            ("db".to_owned(), BTreeSet::from([8080])),
            ("api".to_owned(), BTreeSet::from([8080])),
        ]);
        let refusal = routed_member(&stack, 8080, &twice).unwrap_err();
        assert!(refusal.contains(r#""db", "api""#), "{refusal}");
    }

    #[test]
    fn a_members_probe_is_its_own_check_then_the_images_then_http_for_the_routed_one() {
        let check = |test: HealthTest| ComposeHealthcheck {
            test,
            interval: None,
            timeout: None,
            retries: None,
            start_period: None,
        };
        let image = Some(vec!["/bin/true".to_owned()]);
        let own = check(HealthTest::Exec(vec!["/bin/ok".to_owned()]));
        assert!(matches!(
            member_probe(Some(&own), image.clone(), true, None),
            Probe::Exec(argv) if argv == ["/bin/ok"]
        ));
        let shell = check(HealthTest::Shell("test -f /ready".to_owned()));
        assert!(matches!(
            member_probe(Some(&shell), None, false, None),
            Probe::Exec(argv) if argv == ["/bin/sh", "-c", "test -f /ready"]
        ));
        let disabled = check(HealthTest::Disabled);
        assert!(matches!(
            member_probe(Some(&disabled), image.clone(), true, None),
            Probe::Running
        ));
        assert!(matches!(
            member_probe(None, image, true, None),
            Probe::Exec(argv) if argv == ["/bin/true"]
        ));
        assert!(matches!(
            member_probe(None, None, true, Some("/healthz")),
            Probe::Http(path) if path == "/healthz"
        ));
        assert!(matches!(
            member_probe(None, None, false, Some("/healthz")),
            Probe::Running
        ));
    }

    #[test]
    fn compose_timings_override_the_services_and_widen_the_deadline() {
        let service = HealthSettings {
            interval_ms: 1000,
            timeout_ms: 5000,
            retries: 0,
            start_period_ms: 0,
            deadline_ms: 30_000,
            ..HealthSettings::default()
        };
        assert_eq!(member_health(&service, None), service);
        let check = ComposeHealthcheck {
            test: HealthTest::Exec(vec!["x".to_owned()]),
            interval: Some(Duration::from_millis(200)),
            timeout: Some(Duration::from_secs(1)),
            retries: Some(3),
            start_period: Some(Duration::from_secs(60)),
        };
        let health = member_health(&service, Some(&check));
        assert_eq!(health.interval_ms, 200);
        assert_eq!(health.timeout_ms, 1000);
        assert_eq!(health.retries, 3);
        assert_eq!(health.start_period_ms, 60_000);
        assert_eq!(health.deadline_ms, 60_000 + 1200 * 4);
    }

    #[test]
    fn wharf_variables_win_over_the_compose_files() {
        let service = vec![("MODE", "production")];
        let member = vec![
            ("MODE".to_owned(), "dev".to_owned()),
            ("PORT".to_owned(), "8080".to_owned()),
        ];
        assert_eq!(
            member_env(&service, &member).unwrap(),
            "PORT=8080\nMODE=production\n"
        );
        let broken = vec![("A".to_owned(), "x\ny".to_owned())];
        assert!(member_env(&[], &broken).unwrap_err().contains("line break"));
    }

    /// A stack's job with a variable for every member, one for `web`, and one for the member
    /// that takes the traffic.
    fn job_with_variables() -> RolloutJob {
        let variable = |name: &str| EnvVarValue {
            name: name.to_owned(),
            value: SecretText::new(format!("{name}-value")),
            secret: true,
        };
        let scoped = |name: &str, members: VariableMembers| ScopedEnvVarValue {
            name: name.to_owned(),
            value: SecretText::new(format!("{name}-value")),
            members,
            secret: true,
        };
        RolloutJob {
            rollout_id: 1,
            release_id: 1,
            service: "stack".to_owned(),
            environment: "production".to_owned(),
            project: "default".to_owned(),
            image: String::new(),
            port: Some(8080),
            domains: Vec::new(),
            health_path: None,
            settings: Default::default(),
            env: vec![variable("MODE")],
            scoped_env: vec![
                scoped("TOKEN", VariableMembers::Named(vec!["web".to_owned()])),
                scoped("SESSION_KEY", VariableMembers::Routed),
            ],
            registry_login: None,
            compose_file: None,
            compose_images: Vec::new(),
            teardown: false,
            remove_images: Vec::new(),
            keep_volumes: false,
        }
    }

    #[test]
    fn a_member_gets_the_variables_for_every_member_and_those_that_name_it() {
        let job = job_with_variables();
        let names = |member: &str, routed: Option<&str>| -> Vec<&str> {
            let variables = wharf_variables(&job, member, routed);
            variables.into_iter().map(|(name, _)| name).collect()
        };
        assert_eq!(names("web", Some("web")), ["MODE", "TOKEN", "SESSION_KEY"]);
        assert_eq!(names("worker", Some("web")), ["MODE"]);
        assert_eq!(names("worker", Some("worker")), ["MODE", "SESSION_KEY"]);
    }

    #[test]
    fn a_variable_that_would_reach_no_member_refuses_the_rollout() {
        let job = job_with_variables();
        let stack = plan("services:\n  web:\n    image: web\n  worker:\n    image: worker\n");
        assert!(check_scoped_env(&job.scoped_env, &stack, true).is_ok());
        let refusal = check_scoped_env(&job.scoped_env, &stack, false).unwrap_err();
        assert!(
            refusal.contains("SESSION_KEY") && refusal.contains("no port"),
            "{refusal}"
        );
        let renamed = plan("services:\n  app:\n    image: web\n");
        let refusal = check_scoped_env(&job.scoped_env, &renamed, true).unwrap_err();
        assert!(refusal.contains(r#"compose service "web""#), "{refusal}");
    }

    fn member_with(volumes: Vec<VolumeMount>) -> StackService {
        let mut member = plan("services:\n  db:\n    image: db\n").services.remove(0);
        member.volumes = volumes;
        member.ports = vec![PortMapping {
            container_port: 5432,
            host_port: None,
            host_ip: None,
            protocol: PortProtocol::Tcp,
        }];
        member
    }

    #[test]
    fn named_volumes_are_scoped_to_the_service_and_host_paths_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&data, &link).unwrap();
        let member = member_with(vec![
            VolumeMount {
                source: VolumeSource::Named("pgdata".to_owned()),
                target: "/var/lib/postgresql".to_owned(),
                read_only: false,
            },
            VolumeMount {
                source: VolumeSource::Anonymous,
                target: "/tmp/cache".to_owned(),
                read_only: false,
            },
            VolumeMount {
                source: VolumeSource::HostPath(link.to_str().unwrap().to_owned()),
                target: "/data".to_owned(),
                read_only: true,
            },
            VolumeMount {
                source: VolumeSource::HostPath("~/data".to_owned()),
                target: "/home-data".to_owned(),
                read_only: false,
            },
        ]);
        let identity = DeployIdentity::new("stack", "production").unwrap();
        let names = StackNames::new(&identity, "a1", [], []);
        let mounts = resolve_mounts(
            &member,
            &names,
            &ComposeAllowances::default(),
            Some(dir.path()),
        )
        .unwrap();
        let data = data.canonicalize().unwrap();
        assert_eq!(
            mounts,
            vec![
                OwnedMount {
                    source: OwnedSource::Volume("wharf.a1.stack.production.pgdata".to_owned()),
                    target: "/var/lib/postgresql".to_owned(),
                    read_only: false,
                },
                OwnedMount {
                    source: OwnedSource::Anonymous,
                    target: "/tmp/cache".to_owned(),
                    read_only: false,
                },
                OwnedMount {
                    source: OwnedSource::HostPath(data.clone()),
                    target: "/data".to_owned(),
                    read_only: true,
                },
                OwnedMount {
                    source: OwnedSource::HostPath(data),
                    target: "/home-data".to_owned(),
                    read_only: false,
                },
            ]
        );
    }

    #[test]
    fn host_paths_that_are_missing_in_the_repository_or_lead_to_the_socket_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let allow = ComposeAllowances::default();
        let refusal = resolve_host_path("s", "./config", &allow, None).unwrap_err();
        assert!(refusal.contains("from the repository"), "{refusal}");
        let missing = dir.path().join("missing");
        let refusal = resolve_host_path("s", missing.to_str().unwrap(), &allow, None).unwrap_err();
        assert!(refusal.contains("does not exist"), "{refusal}");
        // A link whose text looks harmless but leads to a directory holding the socket.
        let link = dir.path().join("innocent");
        std::os::unix::fs::symlink("/run", &link).unwrap();
        let refusal = resolve_host_path("s", link.to_str().unwrap(), &allow, None).unwrap_err();
        assert!(refusal.contains("socket"), "{refusal}");
        let allowed = ComposeAllowances {
            socket: true,
            host_bind: true,
            ..allow
        };
        assert_eq!(
            resolve_host_path("s", link.to_str().unwrap(), &allowed, None).unwrap(),
            Path::new("/run")
        );
    }
}

//! A repository's compose file: one parser (`file`: the size Wharf reads, the YAML, compose's
//! merge keys) and two views of what it reads. What to build ([`builds`]): the services with a
//! `build:` section, with their contexts and Dockerfiles checked to stay inside the repository.
//! What to run ([`plan_stack`]): the containers Wharf starts, in start order, with images pinned
//! to what the build pushed, and whatever reaches past a container's isolation refused unless
//! the service's `compose_allow` grants it; fields Wharf does not know are refused, not ignored.
//!
//! The build view reads only the `build:` sections and checks only what building needs, so a
//! file that builds may still be refused when it is deployed. The run view is put together from
//! modules of its own: `service` reads one service's fields, `ports`, `volumes` and `health` the
//! fields with a syntax of their own, `host_paths` classifies host paths, `words` splits string
//! commands, `start_order` orders the services, `permissions` holds what `compose_allow` may
//! grant and `refusal` why a file is not deployed.

mod build;
mod file;
mod health;
mod host_paths;
mod permissions;
mod ports;
mod refusal;
mod run;
mod service;
mod start_order;
#[cfg(test)]
mod testing;
mod volumes;
mod words;

pub use build::{ComposeBuild, ComposeError, builds};
pub use file::MAX_COMPOSE_BYTES;
pub use health::parse_compose_duration;
pub use host_paths::reaches_container_socket;
pub use permissions::{ComposeAllowances, ComposePermission};
pub use refusal::{ComposeRefusal, ComposeSubject};
pub use run::{
    ComposeHealthcheck, HealthTest, MAX_STACK_SERVICES, PortMapping, PortProtocol, ReservedPort,
    StackPlan, StackService, VolumeMount, VolumeSource, plan_stack,
};
pub use service::IGNORED_SERVICE_FIELDS;

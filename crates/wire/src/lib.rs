//! The JSON shapes that Wharf's server, agents and CLI exchange over HTTP.
//!
//! Architecture invariant: this crate does no I/O and knows nothing about storage or HTTP
//! frameworks. Every request type names its response type through [`ApiRequest`], so a client
//! sends any of them through one generic function and the compiler checks the pairing.
//!
//! One module per resource: `services`, `variables`, `builds`, `logs`, `agents`,
//! `registry_logins`, `users` (dashboard users), `notifications` (sinks, events and deliveries), `previews` (pull requests' preview environments), `release` (releases, rollouts and what agents ask about them) and
//! `agent_api` (what agents ask about builds); `protocol` holds the agent protocol's version; `api` holds what every request shares, `secret`
//! how secrets travel and `time` how times are written. Every item is re-exported here, so a
//! type's path is `wharf_wire::Name` whichever module holds it.

mod agent_api;
mod agents;
mod api;
mod builds;
mod logs;
mod notifications;
#[cfg(feature = "openapi")]
pub mod openapi;
mod previews;
pub mod protocol;
mod registry_logins;
mod release;
mod secret;
mod services;
pub mod text;
mod time;
mod users;
mod variables;

pub use agent_api::*;
pub use agents::*;
pub use api::*;
pub use builds::*;
pub use logs::*;
pub use notifications::*;
pub use previews::*;
pub use registry_logins::*;
pub use release::*;
pub use secret::*;
pub use services::*;
pub use time::*;
pub use users::*;
pub use variables::*;

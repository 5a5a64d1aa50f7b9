//! `/agents`: every agent with its labels, host, version, when it was last heard from, and the
//! builds it holds now. It updates live.

use axum::Router;
use maud::{Markup, html};

use crate::core::{Core, CoreError};
use crate::ui::live::live_page;
use crate::ui::page::{ago, badge, online};

/// How many of the newest builds are looked through for the ones agents hold.
const BUILDS_READ: i64 = 200;

pub(crate) fn router() -> Router<Core> {
    live_page("/agents", "/events/agents", "Agents", agents)
}

async fn agents(core: Core) -> Result<Markup, CoreError> {
    let agents = core.agents().await?;
    let builds = core.builds(None, Some(BUILDS_READ)).await?;
    let lease = core.config.lease;
    Ok(html! {
        h1 { "Agents" }
        @if agents.is_empty() {
            p.quiet { "No agent yet: " code { "wharf agent create NAME" } " issues one's token." }
        } @else {
            table.agents {
                thead { tr { th { "Agent" } th { "State" } th { "Labels" } th { "Host" } th { "Version" } th { "Last seen" } th { "Working on" } } }
                tbody {
                    @for agent in &agents {
                        tr data-agent=(agent.name) {
                            th { (agent.name) }
                            td {
                                @if agent.revoked_at.is_some() { (badge("revoked")) }
                                @else if online(agent, lease) { (badge("online")) }
                                @else { (badge("offline")) }
                            }
                            td { (agent.labels.join(", ")) }
                            td { (agent.hostname.as_deref().unwrap_or("")) }
                            td { (agent.version.as_deref().unwrap_or("")) }
                            td { @if let Some(seen) = &agent.last_seen_at { (ago(seen)) } @else { span.quiet { "never" } } }
                            td {
                                @for build in builds.iter().filter(|build| !build.state.is_final() && build.agent.as_deref() == Some(agent.name.as_str())) {
                                    a href={ "/builds/" (build.id) } { "build #" (build.id) } " (" (build.service) ", " (build.state.as_str()) ") "
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

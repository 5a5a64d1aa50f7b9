//! The agent protocol's version. An agent names the version it speaks when it registers and the
//! server answers with its own; each side keeps serving peers down to the oldest version it
//! still understands and refuses older ones with a message that says which side to upgrade. A
//! newer peer decides about an older one, since only it knows what changed since.
//!
//! Version 1 is the protocol of agents from before versions were exchanged (they send none);
//! version 2 adds the exchange itself. Raise [`AGENT_PROTOCOL`] when a request or answer changes
//! so that an older peer would misread it, and raise the oldest versions when support for an
//! older peer is dropped.

/// The agent protocol this Wharf speaks.
pub const AGENT_PROTOCOL: u32 = 2;

/// The oldest agent protocol this Wharf's server still serves.
pub const OLDEST_AGENT_PROTOCOL: u32 = 1;

/// The oldest server protocol this Wharf's agent still works with.
pub const OLDEST_SERVER_PROTOCOL: u32 = 1;

/// The version an agent or a server that sends none speaks.
pub fn unversioned_protocol() -> u32 {
    1
}

/// The server's verdict on an agent speaking `agent_protocol`: `Err` with the message to answer
/// when the server no longer serves it.
pub fn check_agent_protocol(agent_protocol: u32, server_version: &str) -> Result<(), String> {
    if agent_protocol < OLDEST_AGENT_PROTOCOL {
        return Err(format!(
            "this agent speaks agent protocol {agent_protocol}, and this server (Wharf \
             {server_version}) serves agents of protocol {OLDEST_AGENT_PROTOCOL} to \
             {AGENT_PROTOCOL}: upgrade the agent to Wharf {server_version}"
        ));
    }
    Ok(())
}

/// The agent's verdict on a server speaking `server_protocol`: `Err` with the message to stop
/// with when the agent no longer works with it.
pub fn check_server_protocol(
    server_protocol: u32,
    server_version: Option<&str>,
    agent_version: &str,
) -> Result<(), String> {
    if server_protocol < OLDEST_SERVER_PROTOCOL {
        let server =
            server_version.map_or_else(String::new, |version| format!(" (Wharf {version})"));
        return Err(format!(
            "the server{server} speaks agent protocol {server_protocol}, and this agent (Wharf \
             {agent_version}) needs protocol {OLDEST_SERVER_PROTOCOL} or newer: upgrade the \
             server to Wharf {agent_version} or later, or run an agent of the server's version"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_serves_agents_down_to_the_oldest_protocol_it_knows() {
        assert!(check_agent_protocol(AGENT_PROTOCOL, "1.2.0").is_ok());
        assert!(check_agent_protocol(OLDEST_AGENT_PROTOCOL, "1.2.0").is_ok());
        // A newer agent decides for itself whether it can work with this server.
        assert!(check_agent_protocol(AGENT_PROTOCOL + 1, "1.2.0").is_ok());
        let refusal = check_agent_protocol(OLDEST_AGENT_PROTOCOL - 1, "1.2.0").unwrap_err();
        assert!(refusal.contains(&format!("agent protocol {}", OLDEST_AGENT_PROTOCOL - 1)));
        assert!(
            refusal.contains("upgrade the agent to Wharf 1.2.0"),
            "{refusal}"
        );
    }

    #[test]
    fn an_agent_works_with_servers_down_to_the_oldest_protocol_it_knows() {
        assert!(check_server_protocol(AGENT_PROTOCOL, Some("1.2.0"), "1.3.0").is_ok());
        assert!(check_server_protocol(OLDEST_SERVER_PROTOCOL, None, "1.3.0").is_ok());
        let refusal =
            check_server_protocol(OLDEST_SERVER_PROTOCOL - 1, Some("0.9.0"), "1.3.0").unwrap_err();
        assert!(refusal.contains("the server (Wharf 0.9.0)"), "{refusal}");
        assert!(
            refusal.contains("upgrade the server to Wharf 1.3.0"),
            "{refusal}"
        );
    }

    #[test]
    fn peers_without_a_version_speak_the_first_protocol() {
        assert_eq!(unversioned_protocol(), 1);
        assert!(check_agent_protocol(unversioned_protocol(), "1.2.0").is_ok());
        assert!(check_server_protocol(unversioned_protocol(), None, "1.3.0").is_ok());
    }
}

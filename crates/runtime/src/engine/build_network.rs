//! The network an isolated build's `RUN` steps join: a bridge Wharf creates (`wharf-build`),
//! whose containers reach the internet but not the host they run on (Wharf's API, Caddy's admin
//! API, the registry, anything else listening on one of the host's addresses) nor link-local
//! addresses (the cloud metadata service at 169.254.169.254). The bridge is guarded with
//! iptables and ip6tables rules on its interface: packets from it to the host itself are
//! rejected (DNS excepted), and so are packets it would forward to link-local addresses.
//! Nothing is left open when a rule cannot be set: the build fails and says why.

use std::time::Duration;

use super::{COMMAND_TIMEOUT, EngineError, Runtime, RuntimeKind, unreadable};
use crate::process::{self, CommandSpec, Ended};

/// The engine network isolated builds run in.
pub const BUILD_NETWORK: &str = "wharf-build";

/// The chain the host's `INPUT` sends the build bridge's packets to.
const INPUT_CHAIN: &str = "WHARF-BUILD-IN";
/// The chain the host's `FORWARD` sends the build bridge's packets to.
const FORWARD_CHAIN: &str = "WHARF-BUILD-OUT";
/// The option a Docker bridge network's interface name is given by.
const DOCKER_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
/// The interface name of the build network's bridge under Docker.
const DOCKER_BRIDGE: &str = "wharf-build0";

/// One of the host's packet filters: iptables for IPv4, ip6tables for IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn program(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    /// The link-local destinations (where cloud metadata services answer) a build may not be
    /// forwarded to.
    fn link_local(self) -> &'static [&'static str] {
        match self {
            Family::V4 => &["169.254.0.0/16"],
            // fe80::/10 is link-local; fd00:ec2::254 is EC2's metadata service over IPv6.
            Family::V6 => &["fe80::/10", "fd00:ec2::254/128"],
        }
    }
}

/// A rule: the chain it belongs to, its match and target, and whether it goes first in its
/// chain (the hooks in `INPUT` and `FORWARD`, ahead of what the engine put there).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    chain: &'static str,
    spec: Vec<String>,
    first: bool,
}

/// The rules that guard the bridge `interface`, in the order they are set.
fn guard_rules(family: Family, interface: &str) -> Vec<Rule> {
    let rule = |chain, spec: &[&str], first| Rule {
        chain,
        spec: spec.iter().map(|part| (*part).to_owned()).collect(),
        first,
    };
    let mut rules = vec![
        // Name resolution may use a resolver on the host; nothing else there answers a build.
        rule(
            INPUT_CHAIN,
            &["-p", "udp", "--dport", "53", "-j", "RETURN"],
            false,
        ),
        rule(
            INPUT_CHAIN,
            &["-p", "tcp", "--dport", "53", "-j", "RETURN"],
            false,
        ),
        rule(INPUT_CHAIN, &["-j", "REJECT"], false),
    ];
    for destination in family.link_local() {
        rules.push(rule(
            FORWARD_CHAIN,
            &["-d", destination, "-j", "REJECT"],
            false,
        ));
    }
    rules.push(rule("INPUT", &["-i", interface, "-j", INPUT_CHAIN], true));
    rules.push(rule(
        "FORWARD",
        &["-i", interface, "-j", FORWARD_CHAIN],
        true,
    ));
    rules
}

impl Runtime {
    /// Makes the isolated build network exist with its firewall rules in place, and returns
    /// its name for [`super::ImageBuild::network`]. Cheap when all is in place already, so
    /// every build calls it (rules a firewall reload removed come back with the next build).
    pub async fn ensure_build_network(&self) -> Result<&'static str, EngineError> {
        let labels = [("wharf.build-network".to_owned(), "isolated".to_owned())];
        if !self.network_exists(BUILD_NETWORK).await? {
            let mut spec = self.command().args(["network", "create"]);
            for (key, value) in &labels {
                spec = spec.arg("--label").arg(format!("{key}={value}"));
            }
            if self.kind == RuntimeKind::Docker {
                spec = spec
                    .arg("--opt")
                    .arg(format!("{DOCKER_BRIDGE_NAME}={DOCKER_BRIDGE}"));
            }
            let created = self.execute(spec.arg("--").arg(BUILD_NETWORK), COMMAND_TIMEOUT);
            if let Err(error) = created.await
                && !self.network_exists(BUILD_NETWORK).await.unwrap_or(false)
            {
                return Err(error);
            }
        }
        let interface = self.build_bridge().await?;
        // Docker's bridge always has the same name, so only Podman's can leave stale hooks.
        let remove_stale = self.kind == RuntimeKind::Podman;
        guard(Family::V4, &interface, remove_stale).await?;
        // A host without IPv6 has nothing to guard there.
        if std::path::Path::new("/proc/net/if_inet6").exists() {
            guard(Family::V6, &interface, remove_stale).await?;
        }
        Ok(BUILD_NETWORK)
    }

    /// The host interface of the build network's bridge.
    async fn build_bridge(&self) -> Result<String, EngineError> {
        let format = match self.kind {
            RuntimeKind::Podman => "{{.NetworkInterface}}".to_owned(),
            RuntimeKind::Docker => {
                format!("{{{{.Id}}}} {{{{index .Options \"{DOCKER_BRIDGE_NAME}\"}}}}")
            }
        };
        let spec = self
            .command()
            .args(["network", "inspect", "--format"])
            .arg(&format)
            .arg("--")
            .arg(BUILD_NETWORK);
        let text = self.query(spec.clone()).await?;
        bridge_interface(self.kind, &text)
            .ok_or_else(|| unreadable(&spec, "no bridge interface (is it a bridge network?)"))
    }
}

/// Reads the bridge's interface name from `network inspect`'s output.
fn bridge_interface(kind: RuntimeKind, text: &str) -> Option<String> {
    let text = text.trim();
    let name = match kind {
        RuntimeKind::Podman => text.to_owned(),
        RuntimeKind::Docker => {
            let (id, option) = text.split_once(' ').unwrap_or((text, ""));
            match option.trim() {
                "" | "<no value>" => format!("br-{}", id.get(..12)?),
                name => name.to_owned(),
            }
        }
    };
    let plain = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    plain.then_some(name)
}

/// Sets the rules of `family` that guard `interface`, each unless it is there already; the
/// hooks go back to the head of `INPUT` and `FORWARD` when something went ahead of them.
async fn guard(family: Family, interface: &str, remove_stale: bool) -> Result<(), EngineError> {
    for chain in [INPUT_CHAIN, FORWARD_CHAIN] {
        // `-N` fails when the chain exists; the listing then says it does.
        let created = filter(family, &["-N", chain]).await?;
        if !created.success() && !filter(family, &["-S", chain]).await?.success() {
            created.succeeded()?;
        }
    }
    for rule in guard_rules(family, interface) {
        let with = |action: &str| {
            let mut args = vec![action.to_owned(), rule.chain.to_owned()];
            if action == "-I" {
                args.push("1".to_owned());
            }
            args.extend(rule.spec.iter().cloned());
            args
        };
        if rule.first {
            let listing = filter(family, &["-S", rule.chain]).await?.succeeded()?;
            // A hook for the bridge of an earlier build network (removed, and made again under
            // another interface name) would catch whatever network takes that name next.
            let stale = if remove_stale {
                stale_hooks(&listing.stdout, &rule)
            } else {
                Vec::new()
            };
            for stale in stale {
                let mut delete = vec!["-D".to_owned()];
                delete.extend(stale.split_whitespace().skip(1).map(str::to_owned));
                filter_owned(family, &delete).await?.succeeded()?;
            }
            let wanted = format!("-A {} {}", rule.chain, rule.spec.join(" "));
            if first_rule(&listing.stdout, rule.chain) == Some(wanted.as_str()) {
                continue;
            }
            // Missing, or something went ahead of it: insert it first. A copy further down is
            // left, since removing it first would leave builds unguarded for a moment.
            filter_owned(family, &with("-I")).await?.succeeded()?;
        } else if !filter_owned(family, &with("-C")).await?.success() {
            filter_owned(family, &with("-A")).await?.succeeded()?;
        }
    }
    Ok(())
}

/// The hooks in `hook`'s chain that jump to its target from another interface, as `-S` lists
/// them; a Docker agent's bridge on the same host (always `wharf-build0`) is not one.
fn stale_hooks<'a>(listing: &'a str, hook: &Rule) -> Vec<&'a str> {
    let target = hook.spec.last().map(String::as_str).unwrap_or_default();
    let wanted = format!("-A {} {}", hook.chain, hook.spec.join(" "));
    listing
        .lines()
        .map(str::trim)
        .filter(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            matches!(words[..], ["-A", chain, "-i", interface, "-j", jump]
                if chain == hook.chain && jump == target && interface != DOCKER_BRIDGE)
                && *line != wanted
        })
        .collect()
}

/// The first rule of `chain` in the output of `-S chain`.
fn first_rule<'a>(listing: &'a str, chain: &str) -> Option<&'a str> {
    let prefix = format!("-A {chain} ");
    listing
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with(&prefix))
}

async fn filter(
    family: Family,
    args: &[&str],
) -> Result<process::CommandOutput, crate::process::SpawnError> {
    let owned: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    filter_owned(family, &owned).await
}

/// Runs the filter program of `family` on its `filter` table, waiting for its lock.
async fn filter_owned(
    family: Family,
    args: &[String],
) -> Result<process::CommandOutput, crate::process::SpawnError> {
    let spec = CommandSpec::new(family.program())
        .args(["-w", "10", "-t", "filter"])
        .args(args);
    let output = process::output(&spec, Duration::from_secs(30), 64 * 1024).await?;
    tracing::debug!(command = %output.command, ended = ?output.ended, "ran");
    if !matches!(output.ended, Ended::Exited(_)) {
        tracing::warn!(command = %output.command, "the firewall command did not finish");
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_reject_the_host_and_link_local_addresses() {
        let lines: Vec<String> = guard_rules(Family::V4, "cni-podman3")
            .iter()
            .map(|rule| format!("{} {} {}", rule.first, rule.chain, rule.spec.join(" ")))
            .collect();
        assert_eq!(
            lines,
            [
                "false WHARF-BUILD-IN -p udp --dport 53 -j RETURN",
                "false WHARF-BUILD-IN -p tcp --dport 53 -j RETURN",
                "false WHARF-BUILD-IN -j REJECT",
                "false WHARF-BUILD-OUT -d 169.254.0.0/16 -j REJECT",
                "true INPUT -i cni-podman3 -j WHARF-BUILD-IN",
                "true FORWARD -i cni-podman3 -j WHARF-BUILD-OUT",
            ]
        );
        let v6 = guard_rules(Family::V6, "cni-podman3");
        assert!(
            v6.iter()
                .any(|rule| rule.spec.contains(&"fe80::/10".to_owned()))
        );
    }

    #[test]
    fn hooks_of_an_earlier_bridge_are_stale() {
        let hook = &guard_rules(Family::V4, "cni-podman3")[4];
        let listing = "-P INPUT ACCEPT\n-A INPUT -i cni-podman1 -j WHARF-BUILD-IN\n\
            -A INPUT -i cni-podman3 -j WHARF-BUILD-IN\n-A INPUT -i cni-podman1 -j ACCEPT\n\
            -A INPUT -i wharf-build0 -j WHARF-BUILD-IN\n";
        assert_eq!(
            stale_hooks(listing, hook),
            ["-A INPUT -i cni-podman1 -j WHARF-BUILD-IN"]
        );
    }

    #[test]
    fn the_first_rule_of_a_chain() {
        let listing = "-P INPUT ACCEPT\n-A INPUT -i cni-podman3 -j WHARF-BUILD-IN\n-A INPUT -j X\n";
        assert_eq!(
            first_rule(listing, "INPUT"),
            Some("-A INPUT -i cni-podman3 -j WHARF-BUILD-IN")
        );
        assert_eq!(first_rule("-P INPUT ACCEPT\n", "INPUT"), None);
    }

    #[test]
    fn bridge_interfaces() {
        assert_eq!(
            bridge_interface(RuntimeKind::Podman, "cni-podman1\n").as_deref(),
            Some("cni-podman1")
        );
        assert_eq!(
            bridge_interface(RuntimeKind::Docker, "0123456789abcdef wharf-build0\n").as_deref(),
            Some("wharf-build0")
        );
        assert_eq!(
            bridge_interface(RuntimeKind::Docker, "0123456789abcdef <no value>").as_deref(),
            Some("br-0123456789ab")
        );
        for bad in ["", "\n", "a b", "-jACCEPT", "averyveryverylongname"] {
            assert_eq!(bridge_interface(RuntimeKind::Podman, bad), None, "{bad}");
        }
    }
}

//! A compose service's `ports:`, in short (`"127.0.0.1:8080:80/tcp"`) and long syntax, and
//! where the host publishes them: on its loopback address unless the service's owner allowed
//! `publish`, and never on a port Wharf itself listens on.

use std::net::{IpAddr, Ipv4Addr};

use serde_yaml_ng::{Mapping, Value};

use super::refusal::set_entries;
use super::service::ServiceReader;
use super::{ComposePermission, ComposeRefusal, PortMapping, PortProtocol};
use crate::names::quote;

impl ServiceReader<'_> {
    pub(super) fn ports(&self, value: &Value) -> Result<Vec<PortMapping>, ComposeRefusal> {
        let Some(items) = value.as_sequence() else {
            return Err(self.invalid("ports", "expected a list"));
        };
        items
            .iter()
            .map(|item| match item {
                Value::Mapping(port) => self.port_long(port),
                Value::Number(_) | Value::String(_) => {
                    self.port_short(&self.scalar("ports", item)?)
                }
                _ => Err(self.invalid(
                    "ports",
                    "expected \"HOST:CONTAINER\" or a mapping with target:",
                )),
            })
            .map(|mapping| self.published_where(mapping?))
            .collect()
    }

    /// Where the host publishes `mapping`. A port Wharf listens on is refused whatever the
    /// allowances say. Without `publish`, a port is published on 127.0.0.1 when the file names
    /// no address, and an address other than a loopback one is refused: a compose file must
    /// not open a port to the network by itself (the edge routes the service's traffic).
    fn published_where(&self, mut mapping: PortMapping) -> Result<PortMapping, ComposeRefusal> {
        if let Some(host_port) = mapping.host_port
            && let Some(reserved) = self
                .reserved
                .iter()
                .find(|reserved| reserved.port == host_port)
        {
            return Err(ComposeRefusal::ReservedPort {
                subject: self.subject.clone(),
                port: host_port,
                owner: reserved.owner.clone(),
            });
        }
        if self.allow.publish {
            return Ok(mapping);
        }
        match mapping.host_ip {
            None => mapping.host_ip = Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Some(ip) if ip.is_loopback() => {}
            Some(ip) => self.require(
                ComposePermission::Publish,
                format!(
                    "container port {} published on {ip}, beyond the host's loopback",
                    mapping.container_port
                ),
            )?,
        }
        Ok(mapping)
    }

    /// `"80"`, `"8080:80"`, `"127.0.0.1:8080:80"`, `"[::1]:8080:80"`, `"127.0.0.1::80"`, each
    /// optionally followed by `/tcp` or `/udp`.
    fn port_short(&self, text: &str) -> Result<PortMapping, ComposeRefusal> {
        let (body, protocol) = match text.rsplit_once('/') {
            Some((body, protocol)) => (body, self.protocol(protocol)?),
            None => (text, PortProtocol::Tcp),
        };
        let (host_ip, ports) = match body.strip_prefix('[') {
            Some(rest) => {
                let (ip, ports) = rest.split_once("]:").ok_or_else(|| {
                    self.invalid("ports", format!("{} has an unclosed [", quote(text)))
                })?;
                (Some(ip), ports)
            }
            None => match body.rsplitn(3, ':').collect::<Vec<_>>()[..] {
                [container] => (None, container),
                [_, _] => (None, body),
                [_, _, ip] => (Some(ip), &body[ip.len() + 1..]),
                _ => unreachable!("rsplitn(3) gives one to three parts"),
            },
        };
        let (host_port, container_port) = match ports.split_once(':') {
            Some((host, container)) => (Some(host), container),
            None => (None, ports),
        };
        if host_ip.is_some() && host_port.is_none() {
            return Err(self.invalid(
                "ports",
                format!(
                    "{} gives an address but no ports: write IP:HOST:CONTAINER",
                    quote(text)
                ),
            ));
        }
        Ok(PortMapping {
            container_port: self.port_number(container_port)?,
            host_port: match host_port {
                None | Some("") => None,
                Some(port) => self.published_port(port)?,
            },
            host_ip: host_ip.map(|ip| self.host_ip(ip)).transpose()?,
            protocol,
        })
    }

    fn port_long(&self, port: &Mapping) -> Result<PortMapping, ComposeRefusal> {
        let mut mapping = PortMapping {
            container_port: 0,
            host_port: None,
            host_ip: None,
            protocol: PortProtocol::Tcp,
        };
        let mut target = None;
        for entry in set_entries(&self.subject, "ports", port) {
            let (key, value) = entry?;
            match key {
                "target" => target = Some(self.port_number(&self.scalar("ports target", value)?)?),
                "published" => {
                    mapping.host_port =
                        self.published_port(&self.scalar("ports published", value)?)?
                }
                "host_ip" => {
                    mapping.host_ip = Some(self.host_ip(&self.text("ports host_ip", value)?)?)
                }
                "protocol" => {
                    mapping.protocol = self.protocol(&self.text("ports protocol", value)?)?
                }
                // Swarm's publishing mode and a name for tools: nothing for one host to do.
                "mode" | "name" | "app_protocol" => {}
                key => {
                    return Err(self.unsupported(
                        format!("ports {}", quote(key)),
                        "a port takes target, published, host_ip and protocol",
                    ));
                }
            }
        }
        mapping.container_port =
            target.ok_or_else(|| self.invalid("ports", "a port in long syntax needs target:"))?;
        Ok(mapping)
    }

    fn protocol(&self, name: &str) -> Result<PortProtocol, ComposeRefusal> {
        match name {
            "tcp" => Ok(PortProtocol::Tcp),
            "udp" => Ok(PortProtocol::Udp),
            other => Err(self.unsupported(
                format!("the port protocol {}", quote(other)),
                "ports are tcp or udp",
            )),
        }
    }

    fn port_number(&self, text: &str) -> Result<u16, ComposeRefusal> {
        if text.contains('-') {
            return Err(self.unsupported(
                format!("the port range {}", quote(text)),
                "list each port on its own",
            ));
        }
        match text.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(self.invalid("ports", format!("{} is not a port (1-65535)", quote(text)))),
        }
    }

    /// A published port; `0` (like an empty one) lets the engine pick.
    fn published_port(&self, text: &str) -> Result<Option<u16>, ComposeRefusal> {
        if text.is_empty() || text == "0" {
            return Ok(None);
        }
        self.port_number(text).map(Some)
    }

    fn host_ip(&self, text: &str) -> Result<IpAddr, ComposeRefusal> {
        text.parse()
            .map_err(|_| self.invalid("ports", format!("{} is not an IP address", quote(text))))
    }
}

#[cfg(test)]
mod tests {
    use crate::compose::testing::*;
    use crate::compose::*;

    /// How each syntax reads, as a service allowed `publish` gets it: as written.
    #[test]
    fn ports() {
        let port = |text: &str| {
            web(
                &format!("    ports:\n      - {text}\n"),
                "",
                &allow(&["publish"]),
            )
            .map(|service| service.ports[0])
        };
        let tcp = |container_port, host_port, host_ip: Option<&str>| PortMapping {
            container_port,
            host_port,
            host_ip: host_ip.map(|ip| ip.parse().unwrap()),
            protocol: PortProtocol::Tcp,
        };
        for (text, expected) in [
            ("\"8080\"", tcp(8080, None, None)),
            ("8080", tcp(8080, None, None)),
            ("80:80", tcp(80, Some(80), None)),
            ("\"8080:80\"", tcp(80, Some(8080), None)),
            (
                "\"127.0.0.1:8080:80\"",
                tcp(80, Some(8080), Some("127.0.0.1")),
            ),
            ("\"127.0.0.1::80\"", tcp(80, None, Some("127.0.0.1"))),
            ("\"[::1]:8080:80\"", tcp(80, Some(8080), Some("::1"))),
            ("\"::1:8080:80\"", tcp(80, Some(8080), Some("::1"))),
            ("\"8080:80/tcp\"", tcp(80, Some(8080), None)),
            ("\"0:80\"", tcp(80, None, None)),
            (
                "{target: 80, published: \"8080\", host_ip: 0.0.0.0, mode: host}",
                tcp(80, Some(8080), Some("0.0.0.0")),
            ),
            ("{target: 80}", tcp(80, None, None)),
        ] {
            assert_eq!(port(text).unwrap(), expected, "{text}");
        }
        let udp = port("\"8080:80/udp\"").unwrap();
        assert_eq!(
            (udp.protocol, udp.host_port, udp.container_port),
            (PortProtocol::Udp, Some(8080), 80)
        );
        let udp = port("{target: 53, published: 5353, protocol: udp}").unwrap();
        assert_eq!(
            (udp.protocol, udp.host_port),
            (PortProtocol::Udp, Some(5353))
        );
        for bad in [
            "\"0\"",
            "\"70000:80\"",
            "\"8080:http\"",
            "\"localhost:8080:80\"",
            "\"1.2.3.4:80\"",
            "\"[::1:80:80\"",
            "\"${PORT}:80\"",
            "{published: 8080}",
            "{target: 80, extra: 1}",
        ] {
            assert!(port(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod publishing {
    use crate::compose::testing::*;
    use crate::compose::*;

    fn reserved() -> Vec<ReservedPort> {
        [
            (8420, "Wharf's API"),
            (2019, "Caddy's admin API"),
            (80, "the edge"),
        ]
        .map(|(port, owner)| ReservedPort {
            port,
            owner: owner.to_owned(),
        })
        .to_vec()
    }

    fn plan(text: &str, allowances: &ComposeAllowances) -> Result<PortMapping, ComposeRefusal> {
        let file =
            format!("services:\n  web:\n    image: nginx:1.27\n    ports:\n      - {text}\n");
        plan_stack(&file, &[], allowances, &reserved()).map(|plan| plan.services[0].ports[0])
    }

    fn on(ip: Option<&str>, mapping: PortMapping) -> (Option<IpAddr>, Option<u16>, u16) {
        assert_eq!(mapping.host_ip, ip.map(|ip| ip.parse().unwrap()));
        (mapping.host_ip, mapping.host_port, mapping.container_port)
    }

    use std::net::IpAddr;

    #[test]
    fn without_publish_ports_are_published_on_loopback_only() {
        let none = ComposeAllowances::default();
        for (text, ip, host_port) in [
            ("\"8080:80\"", "127.0.0.1", Some(8080)),
            ("\"80\"", "127.0.0.1", None),
            ("{target: 80, published: 8080}", "127.0.0.1", Some(8080)),
            ("\"127.0.0.1:8080:80\"", "127.0.0.1", Some(8080)),
            ("\"127.0.0.2:8080:80\"", "127.0.0.2", Some(8080)),
            ("\"[::1]:8080:80\"", "::1", Some(8080)),
        ] {
            let mapping = plan(text, &none).unwrap();
            assert_eq!(on(Some(ip), mapping).1, host_port, "{text}");
        }
        for text in [
            "\"0.0.0.0:8080:80\"",
            "\"192.0.2.7:8080:80\"",
            "\"[::]:8080:80\"",
            "{target: 80, published: 8080, host_ip: 0.0.0.0}",
        ] {
            let refused = plan(text, &none).unwrap_err();
            assert_eq!(
                denied_permission(&refused),
                Some(ComposePermission::Publish),
                "{text}: {refused}"
            );
            assert!(
                refused.to_string().starts_with(
                    "compose service \"web\" asks for container port 80 published on "
                ),
                "{refused}"
            );
        }
    }

    #[test]
    fn with_publish_ports_are_published_as_written() {
        let publish = allow(&["publish"]);
        on(None, plan("\"8080:80\"", &publish).unwrap());
        on(
            Some("0.0.0.0"),
            plan("\"0.0.0.0:8080:80\"", &publish).unwrap(),
        );
        on(
            Some("192.0.2.7"),
            plan("\"192.0.2.7:8080:80\"", &publish).unwrap(),
        );
    }

    #[test]
    fn wharf_s_own_ports_are_refused_whatever_is_allowed() {
        for allowances in [ComposeAllowances::default(), all_allowed()] {
            for (text, port, owner) in [
                ("\"8420:80\"", 8420, "Wharf's API"),
                ("\"127.0.0.1:2019:2019\"", 2019, "Caddy's admin API"),
                ("{target: 8080, published: 80}", 80, "the edge"),
                ("\"80:8080/udp\"", 80, "the edge"),
            ] {
                let refused = plan(text, &allowances).unwrap_err();
                assert_eq!(
                    refused.to_string(),
                    format!(
                        "compose service \"web\" publishes host port {port}, where {owner} listens; Wharf never lets a compose file take it"
                    ),
                    "{text}"
                );
            }
        }
        // The engine picks a free port when none is given, and a container port is the
        // container's own.
        assert!(plan("\"2019\"", &ComposeAllowances::default()).is_ok());
    }
}

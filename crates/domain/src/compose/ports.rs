//! A compose service's `ports:`, in short (`"127.0.0.1:8080:80/tcp"`) and long syntax.

use std::net::IpAddr;

use serde_yaml_ng::{Mapping, Value};

use super::refusal::set_entries;
use super::service::ServiceReader;
use super::{ComposeRefusal, PortMapping, PortProtocol};
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
            .collect()
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

    #[test]
    fn ports() {
        let port = |text: &str| {
            web(
                &format!("    ports:\n      - {text}\n"),
                "",
                &ComposeAllowances::default(),
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

//! What a compose file may ask for only when the service's owner allowed it: the permissions
//! of the deploy settings' `compose_allow`, and the allowances read from them.

/// Something a compose file may ask for only when the service's owner allowed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComposePermission {
    /// `privileged: true`, or `cap_add: [ALL]`.
    Privileged,
    /// `cap_add` with any capability.
    CapAdd,
    /// A bind mount of a host path.
    HostBind,
    /// A mount of the container engine's socket, or of a directory that holds one.
    Socket,
    /// `network_mode: host`.
    HostNetwork,
    /// `pid: host`.
    HostPid,
    /// A port published on an address other than the host's loopback (`ports: ["8080:80"]`
    /// publishes on 127.0.0.1 without it).
    Publish,
}

impl ComposePermission {
    pub const ALL: [ComposePermission; 7] = [
        ComposePermission::Privileged,
        ComposePermission::CapAdd,
        ComposePermission::HostBind,
        ComposePermission::Socket,
        ComposePermission::HostNetwork,
        ComposePermission::HostPid,
        ComposePermission::Publish,
    ];

    /// The name in the deploy settings' `compose_allow`.
    pub fn name(self) -> &'static str {
        match self {
            ComposePermission::Privileged => "privileged",
            ComposePermission::CapAdd => "cap_add",
            ComposePermission::HostBind => "host_bind",
            ComposePermission::Socket => "socket",
            ComposePermission::HostNetwork => "host_network",
            ComposePermission::HostPid => "host_pid",
            ComposePermission::Publish => "publish",
        }
    }

    pub fn parse(name: &str) -> Option<ComposePermission> {
        ComposePermission::ALL
            .into_iter()
            .find(|permission| permission.name() == name)
    }
}

/// What a service's owner allowed a compose file to ask for (deploy settings `compose_allow`).
/// The default allows nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ComposeAllowances {
    pub privileged: bool,
    pub cap_add: bool,
    pub host_bind: bool,
    pub socket: bool,
    pub host_network: bool,
    pub host_pid: bool,
    pub publish: bool,
}

impl ComposeAllowances {
    /// Reads the names of `compose_allow`. Unknown names allow nothing: the server refuses them
    /// when the settings are saved, so one here is a name from a newer Wharf.
    pub fn from_names(names: &[String]) -> ComposeAllowances {
        let mut allow = ComposeAllowances::default();
        for permission in names
            .iter()
            .filter_map(|name| ComposePermission::parse(name))
        {
            *allow.flag_mut(permission) = true;
        }
        allow
    }

    pub fn allows(&self, permission: ComposePermission) -> bool {
        match permission {
            ComposePermission::Privileged => self.privileged,
            ComposePermission::CapAdd => self.cap_add,
            ComposePermission::HostBind => self.host_bind,
            ComposePermission::Socket => self.socket,
            ComposePermission::HostNetwork => self.host_network,
            ComposePermission::HostPid => self.host_pid,
            ComposePermission::Publish => self.publish,
        }
    }

    fn flag_mut(&mut self, permission: ComposePermission) -> &mut bool {
        match permission {
            ComposePermission::Privileged => &mut self.privileged,
            ComposePermission::CapAdd => &mut self.cap_add,
            ComposePermission::HostBind => &mut self.host_bind,
            ComposePermission::Socket => &mut self.socket,
            ComposePermission::HostNetwork => &mut self.host_network,
            ComposePermission::HostPid => &mut self.host_pid,
            ComposePermission::Publish => &mut self.publish,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::testing::*;
    use crate::compose::*;

    /// Each permission: the setting that asks for it, refused without the allowance and with
    /// every other one, and planned with it.
    #[test]
    fn permissions_are_refused_unless_allowed() {
        let cases: &[(&str, &str, ComposePermission)] = &[
            ("    privileged: true\n", "", ComposePermission::Privileged),
            ("    cap_add: [NET_ADMIN]\n", "", ComposePermission::CapAdd),
            (
                "    volumes:\n      - ./data:/data\n",
                "",
                ComposePermission::HostBind,
            ),
            (
                "    volumes:\n      - /etc:/x:ro\n",
                "",
                ComposePermission::HostBind,
            ),
            (
                "    volumes:\n      - ~/x:/y\n",
                "",
                ComposePermission::HostBind,
            ),
            (
                "    volumes:\n      - type: bind\n        source: /srv/www\n        target: /usr/share/nginx/html\n",
                "",
                ComposePermission::HostBind,
            ),
            (
                "    volumes:\n      - data:/data\n",
                "volumes:\n  data:\n    driver: local\n    driver_opts:\n      type: none\n      o: bind\n      device: /srv/data\n",
                ComposePermission::HostBind,
            ),
            (
                "    volumes:\n      - /var/run/docker.sock:/var/run/docker.sock\n",
                "",
                ComposePermission::Socket,
            ),
            (
                "    volumes:\n      - /run/podman/podman.sock:/var/run/docker.sock\n",
                "",
                ComposePermission::Socket,
            ),
            (
                "    volumes:\n      - /run/user/1000/podman/podman.sock:/s.sock\n",
                "",
                ComposePermission::Socket,
            ),
            (
                "    volumes:\n      - /srv/app/agent.sock:/agent.sock\n",
                "",
                ComposePermission::Socket,
            ),
            (
                "    volumes:\n      - /var/run/../run/./docker.sock:/d\n",
                "",
                ComposePermission::Socket,
            ),
            (
                "    volumes:\n      - type: bind\n        source: /var/run/docker.sock\n        target: /var/run/docker.sock\n",
                "",
                ComposePermission::Socket,
            ),
            (
                "    volumes:\n      - engine:/engine\n",
                "volumes:\n  engine:\n    driver_opts:\n      type: none\n      o: bind,ro\n      device: /run/podman/podman.sock\n",
                ComposePermission::Socket,
            ),
            (
                "    network_mode: host\n",
                "",
                ComposePermission::HostNetwork,
            ),
            ("    pid: host\n", "", ComposePermission::HostPid),
        ];
        for (settings, extra, permission) in cases {
            let others: Vec<&str> = ComposePermission::ALL
                .into_iter()
                .filter(|other| other != permission)
                .map(ComposePermission::name)
                .collect();
            for allowances in [ComposeAllowances::default(), allow(&others)] {
                let refused = refusal(settings, extra, &allowances);
                assert_eq!(
                    denied_permission(&refused),
                    Some(*permission),
                    "{settings}{extra}: {refused}"
                );
                assert!(
                    refused.to_string().ends_with(&format!(
                        "; Wharf refuses it unless the service's deploy settings allow {:?}",
                        permission.name()
                    )),
                    "{refused}"
                );
            }
            let planned = web(settings, extra, &allow(&[permission.name()]));
            assert!(planned.is_ok(), "{settings}{extra}: {planned:?}");
        }
    }

    #[test]
    fn allowed_settings_reach_the_plan() {
        let service = web(
            "    privileged: true\n    cap_add: [net_admin, SYS_TIME]\n    network_mode: host\n    pid: host\n    volumes:\n      - ./data/../cache/:/cache:ro\n      - /var/run/docker.sock:/var/run/docker.sock\n      - ~/backups:/backups:rw\n      - host:/host\n",
            "volumes:\n  host:\n    driver_opts:\n      type: none\n      o: bind,ro\n      device: /srv//host\n",
            &all_allowed(),
        )
        .unwrap();
        assert!(service.privileged && service.network_mode_host && service.pid_host);
        assert_eq!(service.cap_add, ["NET_ADMIN", "SYS_TIME"]);
        let mounts: Vec<(VolumeSource, &str, bool)> = service
            .volumes
            .iter()
            .map(|mount| (mount.source.clone(), mount.target.as_str(), mount.read_only))
            .collect();
        assert_eq!(
            mounts,
            [
                (VolumeSource::HostPath("./cache".into()), "/cache", true),
                (
                    VolumeSource::HostPath("/var/run/docker.sock".into()),
                    "/var/run/docker.sock",
                    false
                ),
                (
                    VolumeSource::HostPath("~/backups".into()),
                    "/backups",
                    false
                ),
                (VolumeSource::HostPath("/srv/host".into()), "/host", true),
            ]
        );
        let plain = web(
            "    privileged: false\n    cap_add: []\n    network_mode: bridge\n",
            "",
            &ComposeAllowances::default(),
        )
        .unwrap();
        assert!(!plain.privileged && plain.cap_add.is_empty() && !plain.network_mode_host);
    }

    #[test]
    fn capabilities() {
        let refused = refusal("    cap_add: [ALL]\n", "", &allow(&["cap_add"]));
        assert_eq!(
            denied_permission(&refused),
            Some(ComposePermission::Privileged)
        );
        assert!(
            web(
                "    cap_add: [ALL]\n",
                "",
                &allow(&["cap_add", "privileged"])
            )
            .is_ok()
        );
        assert!(matches!(
            refusal("    cap_add: [\"NET ADMIN\"]\n", "", &all_allowed()),
            ComposeRefusal::Invalid { .. }
        ));
    }

    #[test]
    fn allowances_from_names() {
        assert_eq!(allow(&[]), ComposeAllowances::default());
        let some = allow(&["socket", "host_pid", "unknown"]);
        assert_eq!(
            some,
            ComposeAllowances {
                socket: true,
                host_pid: true,
                ..ComposeAllowances::default()
            }
        );
        assert_eq!(
            all_allowed(),
            ComposeAllowances {
                privileged: true,
                cap_add: true,
                host_bind: true,
                socket: true,
                host_network: true,
                host_pid: true,
                publish: true,
            }
        );
        for permission in ComposePermission::ALL {
            assert_eq!(
                ComposePermission::parse(permission.name()),
                Some(permission)
            );
        }
    }
}

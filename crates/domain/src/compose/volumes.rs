//! Volumes: the file's top-level `volumes:` declarations and the mounts of each service
//! (anonymous, named, or host paths, which need the owner's allowance).

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

use super::host_paths::{
    SocketReach, check_container_path, looks_like_path, normalize_host_path, socket_reach,
};
use super::refusal::{advice_for, invalid, mapping_key, set_entries, unsupported};
use super::service::ServiceReader;
use super::{ComposePermission, ComposeRefusal, ComposeSubject, VolumeMount, VolumeSource};
use crate::names::quote;

impl ServiceReader<'_> {
    pub(super) fn mounts(&self, value: &Value) -> Result<Vec<VolumeMount>, ComposeRefusal> {
        let Some(items) = value.as_sequence() else {
            return Err(self.invalid("volumes", "expected a list"));
        };
        items
            .iter()
            .map(|item| match item {
                Value::String(_) => self.mount_short(&self.text("volumes", item)?),
                Value::Mapping(mount) => self.mount_long(mount),
                _ => Err(self.invalid(
                    "volumes",
                    "expected \"SOURCE:TARGET[:MODE]\" or a mapping with type:",
                )),
            })
            .collect()
    }

    /// `TARGET`, `SOURCE:TARGET` or `SOURCE:TARGET:MODE`; a source starting with `/`, `.` or
    /// `~` is a host path (as compose reads it), any other a named volume.
    fn mount_short(&self, text: &str) -> Result<VolumeMount, ComposeRefusal> {
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, mode) = match parts[..] {
            [target] => (None, target, None),
            [source, target] => (Some(source), target, None),
            [source, target, mode] => (Some(source), target, Some(mode)),
            _ => {
                return Err(self.invalid(
                    "volumes",
                    format!("{} is not SOURCE:TARGET[:MODE]", quote(text)),
                ));
            }
        };
        let mut read_only = false;
        for option in mode.into_iter().flat_map(|mode| mode.split(',')) {
            match option {
                "ro" => read_only = true,
                "rw" => read_only = false,
                other => {
                    return Err(self.unsupported(
                        format!("the volume mode {}", quote(other)),
                        "Wharf mounts with ro or rw only",
                    ));
                }
            }
        }
        let source = match source {
            None => None,
            Some(source) if looks_like_path(source) => Some(MountSource::Host(source)),
            Some(source) => Some(MountSource::Volume(source)),
        };
        self.mount(source, target, read_only)
    }

    fn mount_long(&self, mount: &Mapping) -> Result<VolumeMount, ComposeRefusal> {
        let mut kind = None;
        let mut source = None;
        let mut target = None;
        let mut read_only = false;
        for entry in set_entries(&self.subject, "volumes", mount) {
            let (key, value) = entry?;
            match key {
                "type" => kind = Some(self.text("volumes type", value)?),
                "source" => source = Some(self.text("volumes source", value)?),
                "target" => target = Some(self.text("volumes target", value)?),
                "read_only" => read_only = self.flag("volumes read_only", value)?,
                // Docker Desktop's file sharing hint: nothing on Linux.
                "consistency" => {}
                key => {
                    return Err(self.unsupported(
                        format!("volumes {}", quote(key)),
                        "Wharf mounts with type, source, target and read_only only",
                    ));
                }
            }
        }
        let target = target.ok_or_else(|| self.invalid("volumes", "a mount needs target:"))?;
        let source = match kind.as_deref() {
            Some("volume") => source.as_deref().map(MountSource::Volume),
            Some("bind") => {
                let source = source
                    .as_deref()
                    .ok_or_else(|| self.invalid("volumes", "a bind mount needs source:"))?;
                if !looks_like_path(source) {
                    return Err(self.invalid(
                        "volumes",
                        format!(
                            "the bind source {} is not a path: write {} or an absolute path",
                            quote(source),
                            quote(&format!("./{source}"))
                        ),
                    ));
                }
                Some(MountSource::Host(source))
            }
            Some(other) => {
                return Err(self.unsupported(
                    format!("volumes type: {}", quote(other)),
                    "mounts are named volumes or, when allowed, host paths",
                ));
            }
            None => return Err(self.invalid("volumes", "a mount needs type: volume or bind")),
        };
        self.mount(source, &target, read_only)
    }

    fn mount(
        &self,
        source: Option<MountSource<'_>>,
        target: &str,
        read_only: bool,
    ) -> Result<VolumeMount, ComposeRefusal> {
        check_container_path(target).map_err(|reason| self.invalid("volumes", reason))?;
        let (source, read_only) = match source {
            None => (VolumeSource::Anonymous, read_only),
            Some(MountSource::Host(path)) => {
                (VolumeSource::HostPath(self.host_path(path)?), read_only)
            }
            Some(MountSource::Volume(name)) => match self.volumes.get(name) {
                Some(DeclaredVolume::Local) => (VolumeSource::Named(name.to_owned()), read_only),
                Some(DeclaredVolume::HostBind {
                    device,
                    read_only: declared_read_only,
                }) => (
                    VolumeSource::HostPath(self.host_path(device)?),
                    read_only || *declared_read_only,
                ),
                None => {
                    return Err(self.invalid(
                        "volumes",
                        format!(
                            "the volume {} is not declared under the top-level volumes:",
                            quote(name)
                        ),
                    ));
                }
            },
        };
        Ok(VolumeMount {
            source,
            target: target.to_owned(),
            read_only,
        })
    }

    /// Normalizes a host path and checks that the owner allowed mounting it.
    fn host_path(&self, path: &str) -> Result<String, ComposeRefusal> {
        let path = normalize_host_path(path).map_err(|reason| self.invalid("volumes", reason))?;
        match socket_reach(&path) {
            SocketReach::Socket => self.require(
                ComposePermission::Socket,
                format!(
                    "a mount of the container engine's socket ({})",
                    quote(&path)
                ),
            )?,
            SocketReach::Holds => {
                self.require(
                    ComposePermission::HostBind,
                    format!("a bind mount of the host path {}", quote(&path)),
                )?;
                self.require(
                    ComposePermission::Socket,
                    format!(
                        "a mount of {}, which reaches the container engine's socket",
                        quote(&path)
                    ),
                )?;
            }
            SocketReach::None => self.require(
                ComposePermission::HostBind,
                format!("a bind mount of the host path {}", quote(&path)),
            )?,
        }
        Ok(path)
    }
}

/// Where a mount in a service comes from, before it is checked.
enum MountSource<'a> {
    Host(&'a str),
    Volume(&'a str),
}

/// A volume under the file's top-level `volumes:`.
#[derive(Debug)]
pub(super) enum DeclaredVolume {
    /// A volume of the engine's local driver.
    Local,
    /// A local volume whose options bind a host path (`o: bind`, `device: PATH`): a bind mount
    /// by another name, checked as one where a service mounts it.
    HostBind { device: String, read_only: bool },
}

pub(super) fn read_volume_declarations(
    value: Option<&Value>,
) -> Result<BTreeMap<String, DeclaredVolume>, ComposeRefusal> {
    let mut volumes = BTreeMap::new();
    let declarations = match value {
        None | Some(Value::Null) => return Ok(volumes),
        Some(Value::Mapping(declarations)) => declarations,
        Some(_) => {
            return Err(invalid(
                &ComposeSubject::File,
                "volumes",
                "expected a mapping of volumes",
            ));
        }
    };
    for (name, declaration) in declarations {
        let name = mapping_key(&ComposeSubject::File, "volumes", name)?;
        let subject = ComposeSubject::Volume(name.to_owned());
        let valid_name = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !valid_name {
            return Err(invalid(
                &subject,
                "name",
                "use up to 64 letters, digits, '_', '.' and '-', starting with a letter or digit",
            ));
        }
        let declared = match declaration {
            Value::Null => DeclaredVolume::Local,
            Value::Mapping(fields) => read_volume_declaration(&subject, fields)?,
            _ => return Err(invalid(&subject, "definition", "expected a mapping")),
        };
        volumes.insert(name.to_owned(), declared);
    }
    Ok(volumes)
}

fn read_volume_declaration(
    subject: &ComposeSubject,
    fields: &Mapping,
) -> Result<DeclaredVolume, ComposeRefusal> {
    let mut declared = DeclaredVolume::Local;
    for entry in set_entries(subject, "setting", fields) {
        let (key, value) = entry?;
        match key {
            "driver" => {
                if value.as_str() != Some("local") {
                    return Err(unsupported(
                        subject,
                        "driver".into(),
                        "Wharf creates volumes with the local driver",
                    ));
                }
            }
            "driver_opts" => declared = read_driver_options(subject, value)?,
            "labels" => {}
            key if key.starts_with("x-") => {}
            "external" | "name" => {
                return Err(unsupported(
                    subject,
                    key.into(),
                    "Wharf names each stack's volumes itself, so a stack reaches no volume but its own",
                ));
            }
            key => return Err(unsupported(subject, quote(key), advice_for(key))),
        }
    }
    Ok(declared)
}

/// The local driver's options: only a bind of a host path is understood (`type: none`,
/// `o: bind`, `device: PATH`); any other option would be lost on the way to the runtime, and a
/// `device` without `bind` mounts a host file system.
fn read_driver_options(
    subject: &ComposeSubject,
    value: &Value,
) -> Result<DeclaredVolume, ComposeRefusal> {
    let not_a_bind = || {
        unsupported(
            subject,
            "driver_opts".into(),
            "the only driver options Wharf understands bind a host path (type: none, o: bind, device: PATH)",
        )
    };
    let Some(options) = value.as_mapping() else {
        return Err(invalid(subject, "driver_opts", "expected a mapping"));
    };
    let mut device = None;
    let mut bind = false;
    let mut read_only = false;
    for (key, value) in options {
        let key = mapping_key(subject, "driver_opts", key)?;
        let text = match value {
            Value::String(text) => text.as_str(),
            _ => return Err(invalid(subject, "driver_opts", "expected string values")),
        };
        match key {
            "type" if text == "none" => {}
            "o" => {
                for option in text.split(',') {
                    match option {
                        "bind" | "rbind" => bind = true,
                        "ro" => read_only = true,
                        "rw" => read_only = false,
                        _ => return Err(not_a_bind()),
                    }
                }
            }
            "device" => device = Some(text),
            _ => return Err(not_a_bind()),
        }
    }
    match (bind, device) {
        (true, Some(device)) if device.starts_with('/') => Ok(DeclaredVolume::HostBind {
            device: device.to_owned(),
            read_only,
        }),
        (true, _) => Err(invalid(
            subject,
            "driver_opts",
            "a bind needs device: with an absolute path",
        )),
        (false, None) if options.is_empty() => Ok(DeclaredVolume::Local),
        (false, _) => Err(not_a_bind()),
    }
}

#[cfg(test)]
mod tests {
    use crate::compose::testing::*;
    use crate::compose::*;

    #[test]
    fn volumes() {
        let mounts = web(
            "    volumes:\n      - /cache\n      - data:/data:ro\n      - type: volume\n        source: data\n        target: /again\n        read_only: true\n      - type: volume\n        target: /scratch\n",
            "volumes:\n  data: {}\n",
            &ComposeAllowances::default(),
        )
        .unwrap()
        .volumes;
        assert_eq!(
            mounts,
            [
                VolumeMount {
                    source: VolumeSource::Anonymous,
                    target: "/cache".into(),
                    read_only: false
                },
                VolumeMount {
                    source: VolumeSource::Named("data".into()),
                    target: "/data".into(),
                    read_only: true
                },
                VolumeMount {
                    source: VolumeSource::Named("data".into()),
                    target: "/again".into(),
                    read_only: true
                },
                VolumeMount {
                    source: VolumeSource::Anonymous,
                    target: "/scratch".into(),
                    read_only: false
                },
            ]
        );
        for (settings, extra) in [
            ("    volumes:\n      - undeclared:/data\n", ""),
            (
                "    volumes:\n      - data:relative\n",
                "volumes:\n  data:\n",
            ),
            ("    volumes:\n      - data:/a,b\n", "volumes:\n  data:\n"),
            ("    volumes:\n      - a:b:c:d\n", ""),
            ("    volumes:\n      - ../outside:/x\n", ""),
            ("    volumes:\n      - ./a/../../outside:/x\n", ""),
            ("    volumes:\n      - ~/../root:/x\n", ""),
            ("    volumes:\n      - ~root/x:/x\n", ""),
            (
                "    volumes:\n      - type: bind\n        source: data\n        target: /x\n",
                "",
            ),
            ("    volumes:\n      - type: bind\n        target: /x\n", ""),
            (
                "    volumes:\n      - {source: data, target: /x}\n",
                "volumes:\n  data:\n",
            ),
            ("", "volumes:\n  \"../x\": {}\n"),
        ] {
            let refused = refusal(settings, extra, &all_allowed());
            assert!(
                matches!(
                    refused,
                    ComposeRefusal::Invalid { .. } | ComposeRefusal::Unsupported { .. }
                ),
                "{settings}{extra}: {refused:?}"
            );
        }
        // A declared volume that binds a host path is checked where it is mounted, not where it
        // is declared.
        assert!(web("", "volumes:\n  unused:\n    driver_opts:\n      type: none\n      o: bind\n      device: /etc\n", &ComposeAllowances::default()).is_ok());
    }
}

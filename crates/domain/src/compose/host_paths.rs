//! Host paths as text: normalizing them, telling which reach the container engine's socket, and
//! checking paths inside the container.

use crate::names::quote;

/// Whether mounting the host path `path` gives the container the engine's socket: the path is
/// a socket (a known engine socket, or any name ending in `.sock`), a directory that holds a
/// known one (`/run`, `/var`, `/`), or under `/proc` (every host file is reachable through
/// `/proc/<pid>/root`). The plan checks paths as written; the runtime checks again after
/// resolving symbolic links, since a link in a repository or on the host can point anywhere.
/// A path that cannot be read as a host path counts as reaching the socket.
pub fn reaches_container_socket(path: &str) -> bool {
    match normalize_host_path(path) {
        Ok(path) => socket_reach(&path) != SocketReach::None,
        Err(_) => true,
    }
}

/// How a host path relates to the container engine's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SocketReach {
    None,
    /// The path is a socket.
    Socket,
    /// The path is a directory the socket is found under.
    Holds,
}

/// Where engines put their sockets; `*` stands for any one segment (a user id).
const ENGINE_SOCKETS: &[&str] = &[
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/podman/podman.sock",
    "/var/run/podman/podman.sock",
    "/run/user/*/podman/podman.sock",
    "/run/user/*/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
    "~/.docker/run/docker.sock",
];

/// Classifies a normalized host path.
pub(super) fn socket_reach(path: &str) -> SocketReach {
    let segments = path_segments(path);
    if segments.last().is_some_and(|last| last.ends_with(".sock")) {
        return SocketReach::Socket;
    }
    if segments.first() == Some(&"proc") {
        return SocketReach::Holds;
    }
    for socket in ENGINE_SOCKETS {
        let pattern = path_segments(socket);
        let leads_to = segments.len() <= pattern.len()
            && segments
                .iter()
                .zip(&pattern)
                .all(|(segment, pattern)| *pattern == "*" || segment == pattern);
        if leads_to {
            return if segments.len() == pattern.len() {
                SocketReach::Socket
            } else {
                SocketReach::Holds
            };
        }
    }
    SocketReach::None
}

/// The segments of an absolute path (`/a/b` → `a`, `b`) or a home path (`~/a` → `~`, `a`).
fn path_segments(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .collect()
}

/// How compose tells a host path from a volume name.
pub(super) fn looks_like_path(source: &str) -> bool {
    source.starts_with(['/', '.', '~'])
}

/// Resolves `.`, `..` and repeated slashes in a host path as text. Absolute paths stay under
/// `/`; `~/` paths may not use `..` (the home directory's location is unknown here); relative
/// paths may not leave the compose file's directory.
pub(super) fn normalize_host_path(path: &str) -> Result<String, String> {
    if path.is_empty() || path.len() > 1024 {
        return Err("a host path has 1 to 1024 characters".into());
    }
    if path
        .chars()
        .any(|c| c.is_control() || c == ',' || c == ':' || c == '\\')
    {
        return Err(format!(
            "the host path {} contains a control character, ',', ':' or '\\'",
            quote(path)
        ));
    }
    let (prefix, rest) = if let Some(rest) = path.strip_prefix('/') {
        ("/", rest)
    } else if path == "~" || path.starts_with("~/") {
        ("~/", &path[1..])
    } else if path.starts_with('~') {
        return Err(format!(
            "the host path {} names another user's home: write an absolute path",
            quote(path)
        ));
    } else {
        ("./", path)
    };
    let mut segments: Vec<&str> = Vec::new();
    for segment in rest.split('/') {
        match segment {
            "" | "." => {}
            ".." if prefix == "/" => {
                segments.pop();
            }
            ".." => {
                if prefix == "~/" || segments.pop().is_none() {
                    return Err(format!(
                        "the host path {} leaves the {}: write an absolute path",
                        quote(path),
                        if prefix == "~/" {
                            "home directory"
                        } else {
                            "compose file's directory"
                        }
                    ));
                }
            }
            segment => segments.push(segment),
        }
    }
    Ok(match (prefix, segments.is_empty()) {
        ("/", true) => "/".to_owned(),
        ("~/", true) => "~".to_owned(),
        ("./", true) => ".".to_owned(),
        (prefix, false) => format!("{prefix}{}", segments.join("/")),
        _ => unreachable!("the prefix is one of three"),
    })
}

/// A path inside the container: absolute, printable, and free of the separators of
/// `--volume` and `--mount`.
pub(super) fn check_container_path(path: &str) -> Result<(), String> {
    if path.starts_with('/')
        && path.len() <= 1024
        && !path.chars().any(|c| c.is_control() || c == ',' || c == ':')
    {
        Ok(())
    } else {
        Err(format!(
            "{} is not an absolute path in the container (without ',' or ':')",
            quote(path)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::testing::*;
    use crate::compose::*;

    #[test]
    fn sockets_need_their_own_allowance_even_where_host_paths_are_allowed() {
        let host_bind = allow(&["host_bind"]);
        for mount in [
            "/var/run/docker.sock:/var/run/docker.sock",
            "/run/user/1000/podman/podman.sock:/var/run/docker.sock",
            "./app.sock:/app.sock",
            "~/.docker/run/docker.sock:/d.sock",
        ] {
            let refused = refusal(&format!("    volumes:\n      - {mount}\n"), "", &host_bind);
            assert_eq!(
                denied_permission(&refused),
                Some(ComposePermission::Socket),
                "{mount}"
            );
        }
        // Directories that hold a socket need both allowances.
        for mount in [
            "/:/host",
            "/run:/run",
            "/var:/var",
            "/run/user/1000:/u",
            "/proc/1/root:/r",
            "/proc:/p",
        ] {
            let settings = format!("    volumes:\n      - {mount}\n");
            let refused = refusal(&settings, "", &ComposeAllowances::default());
            assert_eq!(
                denied_permission(&refused),
                Some(ComposePermission::HostBind),
                "{mount}"
            );
            let refused = refusal(&settings, "", &host_bind);
            assert_eq!(
                denied_permission(&refused),
                Some(ComposePermission::Socket),
                "{mount}"
            );
            let refused = refusal(&settings, "", &allow(&["socket"]));
            assert_eq!(
                denied_permission(&refused),
                Some(ComposePermission::HostBind),
                "{mount}"
            );
            assert!(
                web(&settings, "", &allow(&["host_bind", "socket"])).is_ok(),
                "{mount}"
            );
        }
        // A socket alone needs only "socket".
        assert!(
            web(
                "    volumes:\n      - /run/podman/podman.sock:/run/podman/podman.sock\n",
                "",
                &allow(&["socket"])
            )
            .is_ok()
        );
        // Paths that lead nowhere near a socket need only "host_bind".
        assert!(
            web(
                "    volumes:\n      - /srv/www:/www\n      - /run/secrets-not:/x\n",
                "",
                &host_bind
            )
            .is_ok()
        );
    }

    #[test]
    fn socket_paths_for_the_runtime() {
        for path in [
            "/var/run/docker.sock",
            "/run/podman/podman.sock",
            "/run/user/1000/podman/podman.sock",
            "/run/user/1000",
            "/",
            "/proc/self/root",
            "//run//",
            "/home/app/x.sock",
            "relative/../../escape",
            "",
        ] {
            assert!(reaches_container_socket(path), "{path}");
        }
        for path in [
            "/srv/data",
            "/home/app",
            "/var/lib/app",
            "/run/user/1000/app",
            "./data",
        ] {
            assert!(!reaches_container_socket(path), "{path}");
        }
    }
}

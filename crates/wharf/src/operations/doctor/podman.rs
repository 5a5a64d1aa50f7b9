//! The container runtime's checks: does it run (`podman info`), and, for Podman on a host
//! without systemd, does containers.conf hold what such a host needs: `runtime = "runc"`,
//! `cgroup_manager = "cgroupfs"`, `events_logger = "file"` and `default_ulimits` that a
//! container may set. Reading the files and judging them are pure functions; only `inspect`
//! runs a program.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use wharf_runtime::process::{CommandSpec, find_program, output};

use super::Verdict;

const RUNTIME_CHECK: &str = "runtime";
const CONFIG_CHECK: &str = "podman config";
/// `podman info` may take a while on a cold store; it is still a local command.
const INFO_TIMEOUT: Duration = Duration::from_secs(30);
const INFO_MAX_BYTES: usize = 1 << 20;

/// What the runtime said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeFound {
    pub verdict: Verdict,
    /// Where it keeps images, when it said.
    pub image_store: Option<PathBuf>,
}

/// The parts of `podman info --format json` the doctor reads.
#[derive(Debug, Deserialize)]
struct PodmanInfo {
    host: PodmanHost,
    store: PodmanStore,
    version: PodmanVersion,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodmanHost {
    cgroup_manager: String,
    oci_runtime: PodmanOciRuntime,
}

#[derive(Debug, Deserialize)]
struct PodmanOciRuntime {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodmanStore {
    graph_root: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PodmanVersion {
    version: String,
}

/// Runs the runtime's own report (`podman info`, `docker info`) and judges it.
pub async fn inspect(runtime: &str) -> RuntimeFound {
    let (program, args): (&str, &[&str]) = match runtime {
        "podman" => ("podman", &["info", "--format", "json"]),
        "docker" => ("docker", &["info", "--format", "{{json .}}"]),
        other => {
            return RuntimeFound {
                verdict: Verdict::failed(
                    RUNTIME_CHECK,
                    format!("WHARF_RUNTIME is {other:?}: set it to podman or docker"),
                ),
                image_store: None,
            };
        }
    };
    if find_program(Path::new(program)).is_none() {
        let install = match program {
            "podman" => {
                "apt-get install podman runc uidmap (scripts/setup.sh's need_podman does it)"
            }
            _ => "install Docker, or set WHARF_RUNTIME=podman",
        };
        return RuntimeFound {
            verdict: Verdict::failed(
                RUNTIME_CHECK,
                format!("{program} is not installed: {install}"),
            ),
            image_store: None,
        };
    }
    let spec = CommandSpec::new(program).args(args.iter().copied());
    match output(&spec, INFO_TIMEOUT, INFO_MAX_BYTES).await {
        Ok(info) if info.success() && program == "podman" => judge_podman_info(&info.stdout),
        Ok(info) if info.success() => judge_docker_info(&info.stdout),
        Ok(info) => RuntimeFound {
            verdict: Verdict::failed(
                RUNTIME_CHECK,
                format!(
                    "`{}` {}: {}; see the containers.conf line below",
                    spec.display(),
                    info.ended,
                    info.last_line()
                ),
            ),
            image_store: None,
        },
        Err(error) => RuntimeFound {
            verdict: Verdict::failed(RUNTIME_CHECK, error.to_string()),
            image_store: None,
        },
    }
}

fn judge_podman_info(json: &str) -> RuntimeFound {
    match serde_json::from_str::<PodmanInfo>(json) {
        Ok(info) => RuntimeFound {
            verdict: Verdict::ok(
                RUNTIME_CHECK,
                format!(
                    "podman {} (runtime {}, cgroups {})",
                    info.version.version, info.host.oci_runtime.name, info.host.cgroup_manager
                ),
            ),
            image_store: Some(info.store.graph_root),
        },
        Err(error) => RuntimeFound {
            verdict: Verdict::failed(
                RUNTIME_CHECK,
                format!(
                    "`podman info` answered what Wharf cannot read ({error}): is this Podman 4?"
                ),
            ),
            image_store: None,
        },
    }
}

fn judge_docker_info(json: &str) -> RuntimeFound {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct DockerInfo {
        server_version: String,
        docker_root_dir: PathBuf,
    }
    match serde_json::from_str::<DockerInfo>(json) {
        Ok(info) => RuntimeFound {
            verdict: Verdict::ok(RUNTIME_CHECK, format!("docker {}", info.server_version)),
            image_store: Some(info.docker_root_dir),
        },
        Err(error) => RuntimeFound {
            verdict: Verdict::failed(
                RUNTIME_CHECK,
                format!("`docker info` answered what Wharf cannot read: {error}"),
            ),
            image_store: None,
        },
    }
}

/// The containers.conf settings Wharf depends on, as the files Podman reads leave them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PodmanSettings {
    pub runtime: Option<String>,
    pub cgroup_manager: Option<String>,
    pub events_logger: Option<String>,
    pub default_ulimits: Option<Vec<String>>,
}

/// Reads `files` (path and text) in order, a later file's setting replacing an earlier one's, as
/// Podman does. A file that is not TOML is an error naming it.
pub fn read_settings(files: &[(PathBuf, String)]) -> Result<PodmanSettings, String> {
    let mut settings = PodmanSettings::default();
    for (path, text) in files {
        let table: toml::Table = toml::from_str(text).map_err(|error| {
            format!("{} is not valid TOML: {}", path.display(), error.message())
        })?;
        let section = |name: &str| table.get(name).and_then(toml::Value::as_table);
        let text_of = |section: Option<&toml::Table>, key: &str| {
            section
                .and_then(|table| table.get(key))
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
        };
        let engine = section("engine");
        if let Some(runtime) = text_of(engine, "runtime") {
            settings.runtime = Some(runtime);
        }
        if let Some(manager) = text_of(engine, "cgroup_manager") {
            settings.cgroup_manager = Some(manager);
        }
        if let Some(logger) = text_of(engine, "events_logger") {
            settings.events_logger = Some(logger);
        }
        let ulimits = section("containers")
            .and_then(|containers| containers.get("default_ulimits"))
            .and_then(toml::Value::as_array);
        if let Some(ulimits) = ulimits {
            settings.default_ulimits = Some(
                ulimits
                    .iter()
                    .filter_map(toml::Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            );
        }
    }
    Ok(settings)
}

/// What a host without systemd needs, as `(section, key, the line to write)`.
const NEEDED_WITHOUT_SYSTEMD: [(&str, &str, &str); 4] = [
    ("engine", "runtime", r#"runtime = "runc""#),
    ("engine", "cgroup_manager", r#"cgroup_manager = "cgroupfs""#),
    ("engine", "events_logger", r#"events_logger = "file""#),
    (
        "containers",
        "default_ulimits",
        r#"default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]"#,
    ),
];

/// Judges the settings: where systemd runs, Podman's defaults suit the host; without it, the
/// four settings above must be there, and the verdict names the file and the lines to add.
pub fn judge_settings(
    settings: &PodmanSettings,
    systemd_runs: bool,
    file_to_edit: &Path,
) -> Verdict {
    if systemd_runs {
        return Verdict::ok(
            CONFIG_CHECK,
            "systemd runs here: Podman's defaults suit this host",
        );
    }
    let has = |key: &str| match key {
        "runtime" => settings.runtime.as_deref() == Some("runc"),
        "cgroup_manager" => settings.cgroup_manager.as_deref() == Some("cgroupfs"),
        "events_logger" => settings.events_logger.as_deref() == Some("file"),
        _ => settings
            .default_ulimits
            .as_ref()
            .is_some_and(|limits| limits.iter().any(|limit| limit.starts_with("nofile="))),
    };
    let mut missing: Vec<(&str, &str)> = Vec::new();
    for (section, key, line) in NEEDED_WITHOUT_SYSTEMD {
        if !has(key) {
            missing.push((section, line));
        }
    }
    if missing.is_empty() {
        return Verdict::ok(
            CONFIG_CHECK,
            "runc, cgroupfs, file events and default ulimits, as a host without systemd needs",
        );
    }
    let mut fixes = Vec::new();
    for section in ["engine", "containers"] {
        let lines: Vec<&str> = missing
            .iter()
            .filter(|(of, _)| *of == section)
            .map(|(_, line)| *line)
            .collect();
        if !lines.is_empty() {
            fixes.push(format!("[{section}] {}", lines.join(", ")));
        }
    }
    Verdict::failed(
        CONFIG_CHECK,
        format!(
            "no systemd runs here, so Podman needs in {}: {} (scripts/setup.sh's need_podman \
             writes them)",
            file_to_edit.display(),
            fixes.join("; ")
        ),
    )
}

/// The containers.conf files Podman reads, in its order, and the one an operator should edit.
/// `CONTAINERS_CONF` replaces them all; users other than root also read their own.
pub fn settings_files() -> (Vec<PathBuf>, PathBuf) {
    if let Some(only) = std::env::var_os("CONTAINERS_CONF").filter(|value| !value.is_empty()) {
        let only = PathBuf::from(only);
        return (vec![only.clone()], only);
    }
    let mut files = vec![
        PathBuf::from("/usr/share/containers/containers.conf"),
        PathBuf::from("/etc/containers/containers.conf"),
    ];
    files.extend(drop_ins(Path::new("/etc/containers/containers.conf.d")));
    let mut to_edit = PathBuf::from("/etc/containers/containers.conf");
    let root = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|own| own.uid() == 0)
    };
    if !root {
        let config_home = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")));
        if let Some(config_home) = config_home {
            let own = config_home.join("containers");
            files.push(own.join("containers.conf"));
            files.extend(drop_ins(&own.join("containers.conf.d")));
            to_edit = own.join("containers.conf");
        }
    }
    (files, to_edit)
}

/// The `*.conf` files of a drop-in directory, by name.
fn drop_ins(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|listing| {
            listing
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "conf"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Reads Podman's containers.conf files and judges them for this host.
pub fn check_settings() -> Verdict {
    let (paths, to_edit) = settings_files();
    let mut files = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push((path, text)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Verdict::failed(
                    CONFIG_CHECK,
                    format!("cannot read {}: {error}", path.display()),
                );
            }
        }
    }
    match read_settings(&files) {
        Ok(settings) => judge_settings(&settings, systemd_runs(), &to_edit),
        Err(error) => Verdict::failed(CONFIG_CHECK, error),
    }
}

/// Whether systemd is this host's init (what `sd_booted` asks).
fn systemd_runs() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    const SETUP_CONF: &str = r#"# wharf: podman settings
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"#;

    fn files(texts: &[&str]) -> Vec<(PathBuf, String)> {
        texts
            .iter()
            .enumerate()
            .map(|(index, text)| {
                (
                    PathBuf::from(format!("/conf/{index}.conf")),
                    (*text).to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn the_settings_scripts_setup_writes_are_read() {
        let settings = read_settings(&files(&[SETUP_CONF])).unwrap();
        assert_eq!(
            settings,
            PodmanSettings {
                runtime: Some("runc".to_owned()),
                cgroup_manager: Some("cgroupfs".to_owned()),
                events_logger: Some("file".to_owned()),
                default_ulimits: Some(vec![
                    "nofile=20000:20000".to_owned(),
                    "nproc=4096:4096".to_owned()
                ]),
            }
        );
        let verdict = judge_settings(
            &settings,
            false,
            Path::new("/etc/containers/containers.conf"),
        );
        assert_eq!(verdict.status, Status::Ok, "{verdict:?}");
    }

    #[test]
    fn a_later_file_replaces_an_earlier_ones_setting() {
        let shipped = "[engine]\n# runtime = \"crun\"\ncgroup_manager = \"systemd\"\n";
        let settings = read_settings(&files(&[shipped, SETUP_CONF])).unwrap();
        assert_eq!(settings.cgroup_manager.as_deref(), Some("cgroupfs"));
        let settings =
            read_settings(&files(&[SETUP_CONF, "[engine]\nruntime = \"crun\"\n"])).unwrap();
        assert_eq!(settings.runtime.as_deref(), Some("crun"));
        assert_eq!(settings.events_logger.as_deref(), Some("file"));
    }

    #[test]
    fn without_systemd_each_missing_setting_is_named_with_its_line() {
        let settings = read_settings(&files(&["[engine]\nruntime = \"runc\"\n"])).unwrap();
        let verdict = judge_settings(
            &settings,
            false,
            Path::new("/etc/containers/containers.conf"),
        );
        assert_eq!(verdict.status, Status::Failed);
        assert_eq!(
            verdict.detail,
            "no systemd runs here, so Podman needs in /etc/containers/containers.conf: [engine] \
             cgroup_manager = \"cgroupfs\", events_logger = \"file\"; [containers] \
             default_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"] (scripts/setup.sh's \
             need_podman writes them)"
        );
        let nothing = read_settings(&[]).unwrap();
        let verdict = judge_settings(&nothing, false, Path::new("c.conf"));
        assert!(
            verdict
                .detail
                .contains(r#"[engine] runtime = "runc", cgroup_manager"#),
            "{verdict:?}"
        );
    }

    #[test]
    fn with_systemd_podmans_defaults_do() {
        let verdict = judge_settings(&PodmanSettings::default(), true, Path::new("c.conf"));
        assert_eq!(verdict.status, Status::Ok);
    }

    #[test]
    fn a_file_that_is_not_toml_is_named() {
        let error = read_settings(&files(&["[engine\nruntime = 1"])).unwrap_err();
        assert!(
            error.starts_with("/conf/0.conf is not valid TOML"),
            "{error}"
        );
    }

    #[test]
    fn podman_info_gives_the_version_runtime_and_image_store() {
        let json = r#"{"host": {"cgroupManager": "cgroupfs", "ociRuntime": {"name": "runc",
            "path": "/usr/bin/runc"}, "eventLogger": "file"}, "store": {"graphRoot":
            "/var/lib/containers/storage"}, "version": {"Version": "4.3.1", "APIVersion": "4.3.1"}}"#;
        let found = judge_podman_info(json);
        assert_eq!(
            found.verdict,
            Verdict::ok(
                RUNTIME_CHECK,
                "podman 4.3.1 (runtime runc, cgroups cgroupfs)"
            )
        );
        assert_eq!(
            found.image_store,
            Some(PathBuf::from("/var/lib/containers/storage"))
        );
        assert_eq!(judge_podman_info("{}").verdict.status, Status::Failed);
    }
}

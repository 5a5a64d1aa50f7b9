//! The run view of a compose file, what Wharf runs: one Podman container per compose service,
//! started in an order that respects `depends_on`, with images pinned to what Wharf built.
//!
//! Whoever can push to the repository can write its compose file, so the file must not be able
//! to take over the host. What reaches past a container's isolation (privileged mode, added
//! capabilities, host paths, the container engine's socket, the host's network or process
//! namespace) is refused unless the service's owner allowed it in the deploy settings
//! (`compose_allow`, read by [`ComposeAllowances::from_names`]). A few things Wharf never does are
//! refused whatever the settings say.
//!
//! Fields are read from an allow-list: a field Wharf does not know is refused, not ignored.
//! Compose keeps growing (`use_api_socket`, a recent field, mounts the engine's socket), and a
//! field ignored silently is a setting its author believes is in force. The fields ignored on
//! purpose are [`IGNORED_SERVICE_FIELDS`](super::IGNORED_SERVICE_FIELDS); top-level
//! `networks`, `name` and `version` are ignored too, because Wharf gives each stack its own
//! network and name.
//!
//! Decisions a reader of a compose file may not expect, each tested in the module that makes it:
//! - **Interpolation.** Wharf does not interpolate: a `$` in a value Wharf reads is refused unless
//!   written `$$`, which gives a literal `$` as in compose. Values that differ per deploy belong
//!   in the service's Wharf variables, not in the file.
//! - **String commands** (`command: npm start`) are split into words as compose splits them
//!   (POSIX quoting, no shell runs). Unquoted shell operators (`;`, `&`, `|`, `<`, `>`, a
//!   backtick) are refused, because nothing would interpret them: write
//!   `["sh", "-c", "…"]` for a shell.
//! - **`secrets`, `configs`, `env_file`** are refused: the files they name live in a checkout the
//!   deploy host does not have, and secret values belong in Wharf variables, which are sealed.
//! - **Variables without a value** (`- DEBUG`, `DEBUG:`) are refused: compose would copy them from
//!   the environment of whoever runs it, which under Wharf is Wharf's own.
//! - **Host paths** are classified by their text. Relative sources must stay inside the compose
//!   file's directory. A path that *is* an engine socket needs `socket`; a directory that holds
//!   one (`/run`, `/`, `/proc`) needs `host_bind` and `socket`. Symbolic links on the host are
//!   for the runtime to resolve, and it checks the resolved path again with
//!   [`reaches_container_socket`](super::reaches_container_socket).
//! - **`depends_on`** conditions `service_started` and `service_healthy` are both kept as a plain
//!   dependency: the runtime starts a service after its dependencies run and, where they have a
//!   health check, are healthy. `service_completed_successfully` (one-shot jobs) is refused.
//! - **Health checks** must give `test` (or disable the check): Wharf does not retime an image's
//!   own `HEALTHCHECK`. `start_interval` is ignored: probes run every `interval` from the start.

use std::net::IpAddr;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::file::ComposeFile;
use super::refusal::{advice_for, invalid, mapping_key, unsupported};
use super::service::ServiceReader;
use super::start_order::start_order;
use super::volumes::read_volume_declarations;
use super::{ComposeAllowances, ComposeRefusal, ComposeSubject};
use crate::names::{DnsLabel, quote};

/// The most services one stack may have.
pub const MAX_STACK_SERVICES: usize = 50;

/// A compose file turned into what Wharf runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackPlan {
    /// In start order: every service comes after the services it depends on; services that do
    /// not depend on each other keep the file's order.
    pub services: Vec<StackService>,
}

/// One compose service, as one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackService {
    /// The compose service name, a DNS label: other services reach it by this name.
    pub name: String,
    /// The image to run: the pinned image Wharf built for a service with `build:`, else the
    /// file's `image:` as written.
    pub image: String,
    /// Replaces the image's `CMD`; `Some(vec![])` clears it.
    pub command: Option<Vec<String>>,
    /// Replaces the image's `ENTRYPOINT`; `Some(vec![])` clears it.
    pub entrypoint: Option<Vec<String>>,
    /// Variables in the file's order (map or list form), with literal values.
    pub environment: Vec<(String, String)>,
    pub ports: Vec<PortMapping>,
    pub volumes: Vec<VolumeMount>,
    /// `None` keeps the image's own `HEALTHCHECK`.
    pub healthcheck: Option<ComposeHealthcheck>,
    /// Services of the same stack that start before this one.
    pub depends_on: Vec<String>,
    /// True only when the owner allowed `privileged`.
    pub privileged: bool,
    /// Capability names, upper case; non-empty only when the owner allowed `cap_add`.
    pub cap_add: Vec<String>,
    /// True only when the owner allowed `host_network`.
    pub network_mode_host: bool,
    /// True only when the owner allowed `host_pid`.
    pub pid_host: bool,
    /// `user`, `user:group` or numeric ids, as `podman run --user` takes them.
    pub user: Option<String>,
    /// An absolute path in the container.
    pub working_dir: Option<String>,
}

/// A port the container listens on, and where the host publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    pub container_port: u16,
    /// `None` publishes on a port the engine picks (compose's `"8080"` form).
    pub host_port: Option<u16>,
    /// `None` publishes on every address of the host, which only a service allowed `publish`
    /// gets: without it a port is published on 127.0.0.1.
    pub host_ip: Option<IpAddr>,
    pub protocol: PortProtocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortProtocol {
    Tcp,
    Udp,
}

/// A host port Wharf itself listens on, which no compose file may publish: the server's API,
/// Caddy's admin API, the edge's HTTP and HTTPS ports, the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedPort {
    pub port: u16,
    /// What listens there, as refusals name it ("Caddy's admin API").
    pub owner: String,
}

/// A mount into the container. Paths hold no `:`, `,` or control characters, so the runtime can
/// put them into `--volume`/`--mount` arguments as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    pub source: VolumeSource,
    /// An absolute path in the container.
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// A volume of its own for this container (`- /data`).
    Anonymous,
    /// A volume declared under the file's top-level `volumes:`; the runtime scopes the name to
    /// the stack.
    Named(String),
    /// A host path, normalized as text: absolute, `~/…` (the home of the user running the
    /// containers), or `./…` (relative to the compose file's directory). Present only when the
    /// owner allowed it.
    HostPath(String),
}

/// A compose `healthcheck:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeHealthcheck {
    pub test: HealthTest,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
    pub start_period: Option<Duration>,
}

/// What a health probe runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthTest {
    /// A program and its arguments (`["CMD", "curl", "-f", "http://localhost/"]`).
    Exec(Vec<String>),
    /// A line for the container's `/bin/sh -c` (`["CMD-SHELL", "…"]`, or `test:` as a string).
    Shell(String),
    /// No probe at all, not even the image's own `HEALTHCHECK` (`["NONE"]`, `disable: true`).
    Disabled,
}

impl HealthTest {
    /// The probe as one argument vector: `None` when disabled.
    pub fn argv(&self) -> Option<Vec<String>> {
        match self {
            HealthTest::Exec(argv) => Some(argv.clone()),
            HealthTest::Shell(line) => Some(vec!["/bin/sh".into(), "-c".into(), line.clone()]),
            HealthTest::Disabled => None,
        }
    }
}

/// Plans the deploy of the compose file `text`.
///
/// `images` maps compose service names to the pinned images the build pushed (for example
/// `reg/p/s/web@sha256:…`). A service with `build:` must have an entry; a service with only
/// `image:` keeps its image (an entry for it is not used). `reserved` are the host's ports Wharf
/// listens on, which no service may publish, whatever its allowances.
pub fn plan_stack(
    text: &str,
    images: &[(String, String)],
    allow: &ComposeAllowances,
    reserved: &[ReservedPort],
) -> Result<StackPlan, ComposeRefusal> {
    let root = ComposeFile::parse(text).and_then(ComposeFile::merged)?;
    let Some(root) = root.as_mapping() else {
        return Err(invalid(
            &ComposeSubject::File,
            "top level",
            "expected a mapping with services:",
        ));
    };

    let file = ComposeSubject::File;
    let mut services = None;
    let mut volumes = None;
    for (key, value) in root {
        let key = mapping_key(&file, "top level", key)?;
        match key {
            "services" => services = Some(value),
            "volumes" => volumes = Some(value),
            "networks" | "name" | "version" => {}
            key if key.starts_with("x-") => {}
            key => return Err(unsupported(&file, quote(key), advice_for(key))),
        }
    }
    let volumes = read_volume_declarations(volumes)?;

    let services = match services {
        None | Some(Value::Null) => return Err(ComposeRefusal::NoServices),
        Some(Value::Mapping(services)) => services,
        Some(_) => return Err(invalid(&file, "services", "expected a mapping of services")),
    };
    if services.is_empty() {
        return Err(ComposeRefusal::NoServices);
    }
    if services.len() > MAX_STACK_SERVICES {
        return Err(ComposeRefusal::TooManyServices {
            count: services.len(),
        });
    }
    let mut planned = Vec::with_capacity(services.len());
    for (name, definition) in services {
        let name = mapping_key(&file, "services", name)?;
        let reader = ServiceReader {
            subject: ComposeSubject::Service(name.to_owned()),
            allow,
            volumes: &volumes,
            reserved,
        };
        if DnsLabel::parse("compose service name", name).is_err() {
            return Err(reader.invalid(
                "name",
                "use 1-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit",
            ));
        }
        planned.push(reader.service(name, definition, images)?);
    }
    Ok(StackPlan {
        services: start_order(planned)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::testing::*;
    use crate::compose::*;

    const STACK: &str = r#"
name: shop
x-common: &common
  restart: unless-stopped
  labels:
    team: shop
services:
  web:
    <<: *common
    build: ./web
    image: shop-web
    container_name: web-1
    ports:
      - "8080:3000"
    environment:
      REDIS_URL: redis://redis:6379
      WORKERS: 4
      PRICE_TAG: "$$5"
    depends_on:
      redis:
        condition: service_healthy
    healthcheck:
      test: curl -fsS http://localhost:3000/health || exit 1
      interval: 30s
      timeout: 5s
      retries: 3
      start_period: 1m
  redis:
    <<: *common
    image: redis:7.4
    command: ["redis-server", "--appendonly", "yes"]
    volumes:
      - cache:/data
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 1m30s
  worker:
    build:
      context: .
      dockerfile: worker.Dockerfile
    command: node worker.js --queue 'orders high'
    environment:
      - REDIS_URL=redis://redis:6379
      - MODE=
    depends_on: [web, redis]
volumes:
  cache:
networks:
  default:
"#;

    const IMAGES: &[(&str, &str)] = &[
        ("web", "reg.local/shop/web@sha256:aaaa"),
        ("worker", "reg.local/shop/worker@sha256:bbbb"),
    ];

    fn images() -> Vec<(String, String)> {
        IMAGES
            .iter()
            .map(|(name, image)| ((*name).to_owned(), (*image).to_owned()))
            .collect()
    }

    #[test]
    fn plans_a_realistic_stack_in_start_order() {
        let plan = plan_stack(STACK, &images(), &ComposeAllowances::default(), &[]).unwrap();
        let names: Vec<&str> = plan
            .services
            .iter()
            .map(|service| service.name.as_str())
            .collect();
        assert_eq!(names, ["redis", "web", "worker"]);

        let redis = &plan.services[0];
        assert_eq!(
            redis,
            &StackService {
                name: "redis".into(),
                image: "redis:7.4".into(),
                command: Some(vec![
                    "redis-server".into(),
                    "--appendonly".into(),
                    "yes".into()
                ]),
                entrypoint: None,
                environment: vec![],
                ports: vec![],
                volumes: vec![VolumeMount {
                    source: VolumeSource::Named("cache".into()),
                    target: "/data".into(),
                    read_only: false,
                }],
                healthcheck: Some(ComposeHealthcheck {
                    test: HealthTest::Exec(vec!["redis-cli".into(), "ping".into()]),
                    interval: Some(Duration::from_secs(90)),
                    timeout: None,
                    retries: None,
                    start_period: None,
                }),
                depends_on: vec![],
                privileged: false,
                cap_add: vec![],
                network_mode_host: false,
                pid_host: false,
                user: None,
                working_dir: None,
            }
        );

        let web = &plan.services[1];
        assert_eq!(
            web.image, "reg.local/shop/web@sha256:aaaa",
            "the built image wins over image:"
        );
        assert_eq!(
            web.ports,
            [PortMapping {
                container_port: 3000,
                host_port: Some(8080),
                host_ip: Some(std::net::Ipv4Addr::LOCALHOST.into()),
                protocol: PortProtocol::Tcp,
            }],
            "published on loopback only: the service is not allowed publish"
        );
        assert_eq!(
            web.environment,
            [
                ("REDIS_URL".into(), "redis://redis:6379".into()),
                ("WORKERS".into(), "4".into()),
                ("PRICE_TAG".into(), "$5".into()),
            ]
        );
        assert_eq!(web.depends_on, ["redis"]);
        assert_eq!(
            web.healthcheck,
            Some(ComposeHealthcheck {
                test: HealthTest::Shell("curl -fsS http://localhost:3000/health || exit 1".into()),
                interval: Some(Duration::from_secs(30)),
                timeout: Some(Duration::from_secs(5)),
                retries: Some(3),
                start_period: Some(Duration::from_secs(60)),
            })
        );

        let worker = &plan.services[2];
        assert_eq!(worker.image, "reg.local/shop/worker@sha256:bbbb");
        assert_eq!(
            worker.command.as_deref(),
            Some(
                &[
                    "node".to_owned(),
                    "worker.js".into(),
                    "--queue".into(),
                    "orders high".into()
                ][..]
            )
        );
        assert_eq!(
            worker.environment,
            [
                ("REDIS_URL".into(), "redis://redis:6379".into()),
                ("MODE".into(), String::new())
            ]
        );
        assert_eq!(worker.depends_on, ["web", "redis"]);
    }

    #[test]
    fn built_services_need_their_image_and_others_keep_theirs() {
        let text = "services:\n  web:\n    build: .\n  db:\n    image: postgres:17\n";
        let refusal = plan_stack(text, &[], &ComposeAllowances::default(), &[]).unwrap_err();
        assert_eq!(
            refusal,
            ComposeRefusal::NotBuilt {
                service: "web".into()
            }
        );
        assert_eq!(
            refusal.to_string(),
            "compose service \"web\" has a build: section, but the build produced no image for it"
        );
        let pinned = vec![
            ("web".to_owned(), "reg/p/s/web@sha256:1".to_owned()),
            ("db".to_owned(), "reg/p/s/db@sha256:2".to_owned()),
        ];
        let plan = plan_stack(text, &pinned, &ComposeAllowances::default(), &[]).unwrap();
        assert_eq!(plan.services[0].image, "reg/p/s/web@sha256:1");
        assert_eq!(plan.services[1].image, "postgres:17");

        let neither = plan_stack(
            "services:\n  web:\n    ports: [\"80\"]\n",
            &[],
            &ComposeAllowances::default(),
            &[],
        );
        assert!(
            matches!(neither, Err(ComposeRefusal::Invalid { .. })),
            "{neither:?}"
        );
        for image in ["--privileged", "a b", "", "x;y"] {
            let text = format!("services:\n  web:\n    image: {image:?}\n");
            assert!(
                plan_stack(&text, &[], &ComposeAllowances::default(), &[]).is_err(),
                "{image}"
            );
        }
    }

    #[test]
    fn the_refusal_names_the_service_the_field_and_the_setting() {
        let text = "services:\n  web:\n    image: nginx\n  db:\n    image: postgres:17\n    privileged: true\n";
        assert_eq!(
            plan_stack(text, &[], &ComposeAllowances::default(), &[])
                .unwrap_err()
                .to_string(),
            "compose service \"db\" asks for privileged mode; Wharf refuses it unless the service's deploy settings allow \"privileged\""
        );
        assert_eq!(
            refusal(
                "    cap_add: [SYS_ADMIN]\n",
                "",
                &ComposeAllowances::default()
            )
            .to_string(),
            "compose service \"web\" asks for added capabilities (cap_add: SYS_ADMIN); Wharf refuses it unless the service's deploy settings allow \"cap_add\""
        );
        assert_eq!(
            refusal(
                "    volumes:\n      - /etc:/x\n",
                "",
                &ComposeAllowances::default()
            )
            .to_string(),
            "compose service \"web\" asks for a bind mount of the host path \"/etc\"; Wharf refuses it unless the service's deploy settings allow \"host_bind\""
        );
        assert_eq!(
            refusal("    devices:\n      - /dev/kvm\n", "", &all_allowed()).to_string(),
            "compose service \"web\" sets \"devices\", which Wharf does not support: it gives the container the host's devices"
        );
    }

    #[test]
    fn never_supported_whatever_is_allowed() {
        for (settings, extra) in [
            ("    devices:\n      - /dev/sda:/dev/sda\n", ""),
            ("    security_opt:\n      - seccomp:unconfined\n", ""),
            ("    ipc: host\n", ""),
            ("    ipc: shareable\n", ""),
            ("    userns_mode: host\n", ""),
            ("    cgroup_parent: /system.slice\n", ""),
            (
                "    extends:\n      file: ../other.yml\n      service: base\n",
                "",
            ),
            ("    secrets: [token]\n", ""),
            ("    env_file: .env\n", ""),
            ("    use_api_socket: true\n", ""),
            ("    sysctls:\n      net.ipv4.ip_forward: 1\n", ""),
            ("    volumes_from: [other]\n", ""),
            ("    network_mode: \"container:abc\"\n", ""),
            ("    pid: \"service:db\"\n", ""),
            ("    made_up_field: 1\n", ""),
            ("    mem_limit: 1g\n", ""),
            ("    cap_drop: [ALL]\n", ""),
            ("", "secrets:\n  token:\n    file: /etc/shadow\n"),
            ("", "configs:\n  app:\n    file: ./app.conf\n"),
            ("", "include:\n  - other.yml\n"),
            ("", "volumes:\n  data:\n    external: true\n"),
            ("", "volumes:\n  data:\n    name: other-project_data\n"),
            ("", "volumes:\n  data:\n    driver: rexray\n"),
            (
                "",
                "volumes:\n  data:\n    driver_opts:\n      type: ext4\n      device: /dev/sdb1\n",
            ),
            (
                "",
                "volumes:\n  data:\n    driver_opts:\n      type: tmpfs\n      o: size=100m\n",
            ),
            (
                "    volumes:\n      - type: tmpfs\n        target: /tmp\n",
                "",
            ),
            (
                "    volumes:\n      - type: bind\n        source: ./x\n        target: /x\n        bind:\n          propagation: rshared\n",
                "",
            ),
            ("    volumes:\n      - ./data:/data:z\n", ""),
            ("    ports:\n      - \"8000-8001:8000-8001\"\n", ""),
            ("    ports:\n      - \"80/sctp\"\n", ""),
        ] {
            let refused = refusal(settings, extra, &all_allowed());
            assert!(
                matches!(refused, ComposeRefusal::Unsupported { .. }),
                "{settings}{extra}: {refused:?}"
            );
        }
        assert_eq!(
            refusal("    ipc: host\n", "", &all_allowed()).to_string(),
            "compose service \"web\" sets ipc: \"host\", which Wharf does not support: it shares the host's IPC namespace with the container"
        );
        assert_eq!(
            refusal(
                "",
                "secrets:\n  token:\n    file: ./token\n",
                &all_allowed()
            )
            .to_string(),
            "the compose file sets \"secrets\", which Wharf does not support: their files are not on the deploy host; set the values as Wharf variables of the service"
        );
    }

    #[test]
    fn harmless_fields_are_ignored() {
        let service = web(
            "    container_name: prod-db\n    hostname: web\n    restart: always\n    labels: {a: b}\n    expose: [\"80\"]\n    networks: [front]\n    logging:\n      driver: json-file\n    stop_grace_period: 1m\n    init: true\n    x-notes: anything\n",
            "version: \"3.9\"\nnetworks:\n  front: {}\nx-anchors: {}\n",
            &ComposeAllowances::default(),
        )
        .unwrap();
        assert_eq!(service.name, "web");
        assert_eq!(service.image, "nginx:1.27");
    }

    #[test]
    fn the_file_as_a_whole() {
        let none = ComposeAllowances::default();
        assert_eq!(
            plan_stack(&"#".repeat(MAX_COMPOSE_BYTES + 1), &[], &none, &[]),
            Err(ComposeRefusal::TooLarge)
        );
        assert!(matches!(
            plan_stack("services: [", &[], &none, &[]),
            Err(ComposeRefusal::NotYaml(_))
        ));
        assert!(matches!(
            plan_stack("- a\n- b\n", &[], &none, &[]),
            Err(ComposeRefusal::Invalid { .. })
        ));
        assert_eq!(
            plan_stack("services: {}\n", &[], &none, &[]),
            Err(ComposeRefusal::NoServices)
        );
        assert_eq!(
            plan_stack("volumes: {}\n", &[], &none, &[]),
            Err(ComposeRefusal::NoServices)
        );
        let many: String = (0..=MAX_STACK_SERVICES)
            .map(|index| format!("  s{index}:\n    image: x\n"))
            .collect();
        assert_eq!(
            plan_stack(&format!("services:\n{many}"), &[], &none, &[]),
            Err(ComposeRefusal::TooManyServices {
                count: MAX_STACK_SERVICES + 1
            })
        );
        for name in ["Web", "web_1", "-web", "a.b"] {
            let text = format!("services:\n  {name}:\n    image: x\n");
            let refused = plan_stack(&text, &[], &none, &[]).unwrap_err();
            assert!(
                refused
                    .to_string()
                    .starts_with(&format!("compose service {name:?} has an invalid name")),
                "{refused}"
            );
        }
        // A repeated key must not let a later `privileged: true` hide behind an earlier `false`.
        let repeated = plan_stack(
            "services:\n  web:\n    image: x\n    privileged: false\n    privileged: true\n",
            &[],
            &none,
            &[],
        );
        assert!(
            matches!(repeated, Err(ComposeRefusal::NotYaml(_))),
            "{repeated:?}"
        );
        // What a merge key brings in is checked like the rest.
        let merged = plan_stack(
            "x-base: &base\n  privileged: true\nservices:\n  web:\n    <<: *base\n    image: x\n",
            &[],
            &none,
            &[],
        );
        assert_eq!(
            merged.as_ref().map_err(denied_permission),
            Err(Some(ComposePermission::Privileged)),
            "{merged:?}"
        );
        // Aliases that expand beyond reason are refused by the parser.
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..10 {
            let previous = (b'a' + level - 1) as char;
            let name = (b'a' + level) as char;
            bomb.push_str(&format!("{name}: &{name} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"));
        }
        bomb.push_str("services:\n  web:\n    image: x\n");
        assert!(matches!(
            plan_stack(&bomb, &[], &none, &[]),
            Err(ComposeRefusal::NotYaml(_))
        ));
    }
}

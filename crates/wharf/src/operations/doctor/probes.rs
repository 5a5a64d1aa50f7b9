//! The doctor's checks beyond the container runtime: Caddy, the registry, the database, a given
//! server, the clock, disk space and GitHub. Each probe gathers a reading (an HTTP answer, a
//! schema version, `df`'s line) and a pure function judges it, so every verdict is tested with
//! plain values. Every network probe has a short deadline: a host without a route to GitHub
//! hears so within seconds.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use wharf_runtime::process::{CommandSpec, find_program, output};
use wharf_store::{NEWEST_SCHEMA, Store};

use super::{DoctorArgs, Verdict, podman};
use crate::config::{DatabaseLocation, StateArgs};

/// How long a connection may take to open, and a whole request to be answered.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long opening the database may take.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a local program (`df`, `caddy version`) may take.
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Free space below which a disk check fails, and below which it warns.
const DISK_FAILS_BELOW: u64 = 1 << 30;
const DISK_WARNS_BELOW: u64 = 5 << 30;
/// A clock this close to the other is in step (a `Date` header counts whole seconds).
const CLOCK_IN_STEP: f64 = 2.0;
/// A clock further off than this fails: GitHub refuses App tokens dated a minute off.
const CLOCK_FAILS_BEYOND: f64 = 60.0;

/// Runs every check, the slow network ones at the same time, and returns their verdicts in the
/// order they are printed.
pub async fn check_all(args: &DoctorArgs) -> Vec<Verdict> {
    let http = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("wharf-doctor/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("an HTTP client with timeouts builds");
    let server = args.server.as_deref();
    let (runtime, caddy, registry, database, server, github) = tokio::join!(
        podman::inspect(&args.agent.runtime),
        caddy(&http, &args.agent.caddy_admin),
        registry(&http, args.registry.as_deref(), args.registry_insecure),
        database(&args.state),
        async {
            match server {
                Some(url) => Some(server_answers(&http, url).await),
                None => None,
            }
        },
        github(&http, &args.github_api_url),
    );
    let mut verdicts = vec![runtime.verdict];
    if args.agent.runtime == "podman" {
        verdicts.push(podman::check_settings());
        verdicts.push(judge_build_firewall(
            find_program(Path::new("iptables")).is_some(),
            find_program(Path::new("ip6tables")).is_some(),
        ));
    }
    verdicts.extend([caddy, registry, database]);
    let mut clock_reading = None;
    if let Some((verdict, reading)) = server {
        verdicts.push(verdict);
        clock_reading = Some(reading);
    }
    let (github, github_clock) = github;
    verdicts.push(judge_clock(
        clock_reading.flatten().or(github_clock).as_ref(),
        args.server.is_some(),
    ));
    verdicts.push(disk("data disk", &args.state.data_dir).await);
    if let Some(store) = runtime.image_store {
        verdicts.push(disk("image disk", &store).await);
    }
    verdicts.push(github);
    verdicts
}

/// Isolated builds (the default) run on a Podman network the agent guards with iptables and
/// ip6tables; without them such builds fail.
fn judge_build_firewall(iptables: bool, ip6tables: bool) -> Verdict {
    const CHECK: &str = "build network";
    let missing: Vec<&str> = [("iptables", iptables), ("ip6tables", ip6tables)]
        .into_iter()
        .filter(|(_, found)| !found)
        .map(|(program, _)| program)
        .collect();
    if missing.is_empty() {
        return Verdict::ok(
            CHECK,
            "iptables and ip6tables are installed: isolated builds keep RUN steps off this host",
        );
    }
    Verdict::failed(
        CHECK,
        format!(
            "{} not installed: isolated builds (the default) fail without it; apt-get install \
             iptables, or build the services with --build-network open",
            missing.join(" and ")
        ),
    )
}

/// Why a request got no answer, in a few words.
fn reason(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("no answer within {} s", REQUEST_TIMEOUT.as_secs());
    }
    let mut innermost: &dyn std::error::Error = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

async fn caddy(http: &reqwest::Client, admin: &str) -> Verdict {
    const CHECK: &str = "caddy";
    if http
        .get(format!("http://{admin}/config/"))
        .send()
        .await
        .is_ok()
    {
        return Verdict::ok(
            CHECK,
            format!("Caddy answers on {admin}; the agent routes the apps through it"),
        );
    }
    if find_program(Path::new("caddy")).is_none() {
        return Verdict::failed(
            CHECK,
            format!(
                "no Caddy answers on {admin} and caddy is not installed: apt-get install caddy \
                 (or set WHARF_CADDY_ADMIN to the Caddy the agent should use)"
            ),
        );
    }
    let version = match output(
        &CommandSpec::new("caddy").arg("version"),
        PROGRAM_TIMEOUT,
        64 * 1024,
    )
    .await
    {
        Ok(found) if found.success() => found
            .stdout
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_owned(),
        Ok(found) => {
            return Verdict::failed(
                CHECK,
                format!("`caddy version` {}: {}", found.ended, found.last_line()),
            );
        }
        Err(error) => return Verdict::failed(CHECK, error.to_string()),
    };
    Verdict::ok(
        CHECK,
        format!(
            "caddy {version} is installed; the agent starts it (nothing answers on {admin} yet)"
        ),
    )
}

async fn registry(http: &reqwest::Client, registry: Option<&str>, insecure: bool) -> Verdict {
    const CHECK: &str = "registry";
    let Some(registry) = registry.filter(|name| !name.is_empty()) else {
        return if find_program(Path::new("docker-registry")).is_some() {
            Verdict::ok(
                CHECK,
                "WHARF_REGISTRY is not set: `wharf up` runs docker-registry on 127.0.0.1:5000 \
                 (a `wharf server` needs WHARF_REGISTRY; agents learn it from the server)",
            )
        } else {
            Verdict::failed(
                CHECK,
                "WHARF_REGISTRY is not set and docker-registry is not installed: set \
                 WHARF_REGISTRY, or apt-get install docker-registry for `wharf up`",
            )
        };
    };
    let scheme = if insecure { "http" } else { "https" };
    let url = format!("{scheme}://{registry}/v2/");
    let answer = http
        .get(&url)
        .send()
        .await
        .map(|response| response.status().as_u16())
        .map_err(|error| reason(&error));
    judge_registry(registry, &url, insecure, answer)
}

/// A registry answers `GET /v2/` with 200, or 401 when it wants credentials.
fn judge_registry(
    registry: &str,
    url: &str,
    insecure: bool,
    answer: Result<u16, String>,
) -> Verdict {
    const CHECK: &str = "registry";
    match answer {
        Ok(status @ (200 | 401)) => Verdict::ok(
            CHECK,
            format!("{registry} answers the registry API (HTTP {status})"),
        ),
        Ok(status) => Verdict::failed(
            CHECK,
            format!("{url} answered HTTP {status}: is WHARF_REGISTRY a registry?"),
        ),
        Err(why) => {
            let hint = if insecure {
                ""
            } else {
                " (WHARF_REGISTRY_INSECURE=true for a registry on plain HTTP)"
            };
            Verdict::failed(
                CHECK,
                format!("cannot reach {url}: {why}; check WHARF_REGISTRY{hint}"),
            )
        }
    }
}

async fn database(state: &StateArgs) -> Verdict {
    const CHECK: &str = "database";
    let (url, what) = match state.database_location() {
        Err(error) => return Verdict::failed(CHECK, format!("{error:#}")),
        Ok(DatabaseLocation::Sqlite(path)) => {
            if !path.exists() {
                return Verdict::ok(
                    CHECK,
                    format!("no database yet: `wharf server` creates {}", path.display()),
                );
            }
            (
                format!("sqlite://{}", path.display()),
                format!("SQLite {}", path.display()),
            )
        }
        Ok(DatabaseLocation::Postgres) => (
            state
                .database_url
                .as_ref()
                .map(|url| secrecy::ExposeSecret::expose_secret(url).to_owned())
                .unwrap_or_default(),
            "PostgreSQL (WHARF_DATABASE_URL)".to_owned(),
        ),
    };
    let version = tokio::time::timeout(DATABASE_TIMEOUT, async {
        let store = Store::open_existing(&url).await?;
        let version = store.schema_version().await;
        store.close().await;
        version
    })
    .await;
    match version {
        Ok(Ok(version)) => judge_schema(&what, version),
        Ok(Err(error)) => Verdict::failed(
            CHECK,
            format!(
                "cannot open {what}: {error}; check WHARF_DATABASE_URL and that the database runs"
            ),
        ),
        Err(_) => Verdict::failed(
            CHECK,
            format!(
                "{what} did not answer within {} s; check WHARF_DATABASE_URL and that the database runs",
                DATABASE_TIMEOUT.as_secs()
            ),
        ),
    }
}

/// Judges a database's schema against the newest this Wharf knows.
fn judge_schema(what: &str, version: Option<i64>) -> Verdict {
    const CHECK: &str = "database";
    match version {
        None => Verdict::ok(
            CHECK,
            format!("{what} is empty: `wharf server` creates Wharf's schema in it"),
        ),
        Some(version) if version > NEWEST_SCHEMA => Verdict::failed(
            CHECK,
            format!(
                "{what} has schema {version}, newer than this Wharf's ({NEWEST_SCHEMA}): run the \
                 Wharf that wrote it, or a newer one"
            ),
        ),
        Some(version) if version < NEWEST_SCHEMA => Verdict::ok(
            CHECK,
            format!(
                "{what}, schema {version}: `wharf server` brings it to {NEWEST_SCHEMA} when it starts"
            ),
        ),
        Some(version) => Verdict::ok(CHECK, format!("{what}, schema {version}")),
    }
}

/// A remote clock's reading: how far ahead of this host's it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ClockReading {
    /// Whose clock (a URL).
    pub source: String,
    /// Seconds the remote clock is ahead of this host's (negative: behind).
    pub ahead: f64,
}

/// Reads a `Date` header against this host's clock at the middle of the request.
fn clock_reading(
    source: &str,
    sent: SystemTime,
    answered: SystemTime,
    date: Option<&str>,
) -> Option<ClockReading> {
    let remote = httpdate::parse_http_date(date?).ok()?;
    let half_way = sent + answered.duration_since(sent).unwrap_or_default() / 2;
    let ahead = match remote.duration_since(half_way) {
        Ok(ahead) => ahead.as_secs_f64(),
        Err(behind) => -behind.duration().as_secs_f64(),
    };
    Some(ClockReading {
        source: source.to_owned(),
        ahead,
    })
}

/// Sends `GET url` and reads the answer's status and `Date`.
async fn get_with_clock(
    http: &reqwest::Client,
    url: &str,
    source: &str,
) -> Result<(u16, Option<ClockReading>), String> {
    let sent = SystemTime::now();
    let response = http.get(url).send().await.map_err(|error| reason(&error))?;
    let answered = SystemTime::now();
    let date = response
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|value| value.to_str().ok());
    Ok((
        response.status().as_u16(),
        clock_reading(source, sent, answered, date),
    ))
}

async fn server_answers(http: &reqwest::Client, server: &str) -> (Verdict, Option<ClockReading>) {
    const CHECK: &str = "server";
    let server = server.trim_end_matches('/');
    match get_with_clock(http, &format!("{server}/healthz"), server).await {
        Ok((200, reading)) => (Verdict::ok(CHECK, format!("{server} answers")), reading),
        Ok((status, reading)) => (
            Verdict::failed(
                CHECK,
                format!("{server}/healthz answered HTTP {status}: is WHARF_SERVER a Wharf server?"),
            ),
            reading,
        ),
        Err(why) => (
            Verdict::failed(
                CHECK,
                format!("cannot reach {server}: {why}; check WHARF_SERVER and the firewall"),
            ),
            None,
        ),
    }
}

/// Judges this host's clock against a reading; `server_given` says whether one was asked for.
fn judge_clock(reading: Option<&ClockReading>, server_given: bool) -> Verdict {
    const CHECK: &str = "clock";
    let Some(reading) = reading else {
        let why = if server_given {
            "neither the server nor GitHub gave a Date to compare with"
        } else {
            "nothing to compare with: pass --server URL (or set WHARF_SERVER), or let GitHub answer"
        };
        return Verdict::skipped(CHECK, why);
    };
    let off = reading.ahead.abs();
    if off <= CLOCK_IN_STEP {
        return Verdict::ok(
            CHECK,
            format!(
                "in step with {} (within {CLOCK_IN_STEP:.0} s)",
                reading.source
            ),
        );
    }
    let side = if reading.ahead > 0.0 {
        "behind"
    } else {
        "ahead of"
    };
    let detail = format!(
        "{off:.0} s {side} {}: keep the clock in sync with NTP (apt-get install \
         systemd-timesyncd, or chrony)",
        reading.source
    );
    if off > CLOCK_FAILS_BEYOND {
        Verdict::failed(
            CHECK,
            format!("{detail}; GitHub refuses App tokens from a clock this far off"),
        )
    } else {
        Verdict::warning(CHECK, detail)
    }
}

/// Free space under `path` (or the nearest folder above it that exists), from `df`.
async fn disk(check: &'static str, path: &Path) -> Verdict {
    let existing = path
        .ancestors()
        .find(|ancestor| !ancestor.as_os_str().is_empty() && ancestor.exists())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let spec = CommandSpec::new("df").arg("-Pk").arg(&existing);
    match output(&spec, PROGRAM_TIMEOUT, 64 * 1024).await {
        Ok(df) if df.success() => match parse_df(&df.stdout) {
            Some((available, mount)) => judge_disk(check, path, available, &mount),
            None => Verdict::failed(
                check,
                format!("`{}` printed what Wharf cannot read", spec.display()),
            ),
        },
        Ok(df) => Verdict::failed(
            check,
            format!("`{}` {}: {}", spec.display(), df.ended, df.last_line()),
        ),
        Err(error) => Verdict::failed(check, error.to_string()),
    }
}

/// The bytes available and the mount point from `df -Pk`'s output (a header, then one line).
fn parse_df(text: &str) -> Option<(u64, String)> {
    let line = text.lines().nth(1)?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    // Filesystem, 1024-blocks, Used, Available, Capacity, Mounted on (which may hold spaces).
    if fields.len() < 6 {
        return None;
    }
    let available_kib: u64 = fields[3].parse().ok()?;
    Some((available_kib * 1024, fields[5..].join(" ")))
}

fn judge_disk(check: &'static str, path: &Path, available: u64, mount: &str) -> Verdict {
    let gib = available as f64 / (1u64 << 30) as f64;
    let found = format!("{gib:.1} GiB free on {mount} (for {})", path.display());
    if available < DISK_FAILS_BELOW {
        Verdict::failed(
            check,
            format!("{found}: free at least 1 GiB (old images: podman image prune)"),
        )
    } else if available < DISK_WARNS_BELOW {
        Verdict::warning(check, format!("{found}: builds and images soon need more"))
    } else {
        Verdict::ok(check, found)
    }
}

/// Whether GitHub's API answers at all; any HTTP answer will do (even a rate limit).
async fn github(http: &reqwest::Client, api_url: &str) -> (Verdict, Option<ClockReading>) {
    let api_url = api_url.trim_end_matches('/');
    let answer = get_with_clock(http, &format!("{api_url}/"), api_url).await;
    match answer {
        Ok((status, reading)) => (judge_github(api_url, Ok(status)), reading),
        Err(why) => (judge_github(api_url, Err(why)), None),
    }
}

fn judge_github(api_url: &str, answer: Result<u16, String>) -> Verdict {
    const CHECK: &str = "github";
    match answer {
        Ok(status) => Verdict::ok(CHECK, format!("{api_url} answers (HTTP {status})")),
        Err(why) => Verdict::warning(
            CHECK,
            format!(
                "cannot reach {api_url} ({why}): webhooks still arrive, but private repositories \
                 cannot be fetched and deployment statuses wait until it answers; check DNS, the \
                 firewall or a proxy (HTTPS_PROXY), or WHARF_GITHUB_API_URL"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn isolated_builds_need_iptables_and_ip6tables() {
        assert!(
            judge_build_firewall(true, true)
                .detail
                .starts_with("iptables and ip6tables are installed")
        );
        assert_eq!(judge_build_firewall(true, true).status, Status::Ok);
        let missing = judge_build_firewall(true, false);
        assert_eq!(missing.status, Status::Failed);
        assert!(
            missing.detail.starts_with("ip6tables not installed"),
            "{}",
            missing.detail
        );
        assert!(missing.detail.contains("--build-network open"));
        let both = judge_build_firewall(false, false);
        assert!(
            both.detail
                .starts_with("iptables and ip6tables not installed"),
            "{}",
            both.detail
        );
    }

    use super::super::Status;
    use super::*;

    #[test]
    fn a_registry_answers_with_200_or_asks_for_credentials() {
        let judge = |answer| judge_registry("r.test", "https://r.test/v2/", false, answer);
        assert_eq!(judge(Ok(200)).status, Status::Ok);
        assert_eq!(
            judge(Ok(401)).detail,
            "r.test answers the registry API (HTTP 401)"
        );
        assert_eq!(judge(Ok(404)).status, Status::Failed);
        let away = judge(Err("Connection refused (os error 111)".to_owned()));
        assert_eq!(
            away.detail,
            "cannot reach https://r.test/v2/: Connection refused (os error 111); check \
             WHARF_REGISTRY (WHARF_REGISTRY_INSECURE=true for a registry on plain HTTP)"
        );
    }

    #[test]
    fn a_schema_newer_than_this_wharf_fails() {
        assert_eq!(judge_schema("SQLite a.db", None).status, Status::Ok);
        assert_eq!(
            judge_schema("SQLite a.db", Some(NEWEST_SCHEMA)).detail,
            format!("SQLite a.db, schema {NEWEST_SCHEMA}")
        );
        let older = judge_schema("SQLite a.db", Some(1));
        assert_eq!(older.status, Status::Ok);
        assert!(older.detail.contains("brings it to"), "{older:?}");
        let newer = judge_schema("SQLite a.db", Some(NEWEST_SCHEMA + 1));
        assert_eq!(newer.status, Status::Failed);
        assert!(
            newer.detail.contains("newer than this Wharf's"),
            "{newer:?}"
        );
    }

    #[test]
    fn a_date_header_is_read_against_the_middle_of_the_request() {
        let sent = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let answered = sent + Duration::from_secs(2);
        let reading =
            clock_reading("s", sent, answered, Some("Sun, 06 Nov 1994 08:49:48 GMT")).unwrap();
        assert_eq!(reading.ahead, 10.0);
        let reading =
            clock_reading("s", sent, answered, Some("Sun, 06 Nov 1994 08:49:30 GMT")).unwrap();
        assert_eq!(reading.ahead, -8.0);
        assert_eq!(clock_reading("s", sent, answered, Some("yesterday")), None);
        assert_eq!(clock_reading("s", sent, answered, None), None);
    }

    #[test]
    fn a_clock_off_by_seconds_warns_and_by_minutes_fails() {
        let reading = |ahead| ClockReading {
            source: "http://wharf.test".to_owned(),
            ahead,
        };
        assert_eq!(judge_clock(Some(&reading(1.5)), true).status, Status::Ok);
        let behind = judge_clock(Some(&reading(12.0)), true);
        assert_eq!(behind.status, Status::Warning);
        assert!(
            behind
                .detail
                .starts_with("12 s behind http://wharf.test: keep the clock in sync"),
            "{behind:?}"
        );
        let ahead = judge_clock(Some(&reading(-300.0)), true);
        assert_eq!(ahead.status, Status::Failed);
        assert!(
            ahead.detail.starts_with("300 s ahead of http://wharf.test"),
            "{ahead:?}"
        );
        assert_eq!(judge_clock(None, false).status, Status::Skipped);
    }

    #[test]
    fn dfs_line_gives_the_free_space_and_mount_point() {
        let text = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n\
                    /dev/vda         264212084 41021596  54264292      44% /srv/my data\n";
        assert_eq!(
            parse_df(text),
            Some((54_264_292 * 1024, "/srv/my data".to_owned()))
        );
        assert_eq!(parse_df("Filesystem\n"), None);
        assert_eq!(parse_df(""), None);
    }

    #[test]
    fn little_free_space_warns_and_almost_none_fails() {
        let path = Path::new("/var/lib/wharf");
        let ok = judge_disk("data disk", path, 40 << 30, "/");
        assert_eq!(ok.detail, "40.0 GiB free on / (for /var/lib/wharf)");
        assert_eq!(
            judge_disk("data disk", path, 3 << 30, "/").status,
            Status::Warning
        );
        assert_eq!(
            judge_disk("data disk", path, 200 << 20, "/").status,
            Status::Failed
        );
    }

    #[test]
    fn github_out_of_reach_is_a_warning() {
        assert_eq!(
            judge_github("https://api.github.com", Ok(403)).status,
            Status::Ok
        );
        let away = judge_github(
            "https://api.github.com",
            Err("no answer within 5 s".to_owned()),
        );
        assert_eq!(away.status, Status::Warning);
        assert!(away.detail.contains("webhooks still arrive"), "{away:?}");
    }
}

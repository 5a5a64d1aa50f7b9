//! `wharf-bench intake`: webhook intake throughput and latency of Wharf and of adnanh/webhook,
//! side by side in one run, and a durability check of Wharf (SIGKILL under load, restart, count).
//!
//! Per target: warm-up, then saturation (closed loop, C connections), then a fixed rate (open
//! loop at R requests/s, latency from each request's due time). Wharf is then killed with
//! SIGKILL while under load, restarted on the same data directory, and every delivery it
//! answered 202 must be found in its store.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use reqwest::header::HeaderValue;
use serde_json::{Value, json};

use crate::load::{self, Phase, Target};
use crate::payload::{BRANCH, Generator, REPO, start_tracking_server};
use crate::procs::{self, Child, CpuTime, WharfLaunch};
use crate::report;

/// Requests per second of closed-loop time the pool is sized for; beyond that a phase ends early
/// (and the report says so) rather than sending a request twice.
const POOL_RATE_BUDGET: usize = 12_000;
/// How long Wharf is loaded before it is killed.
const CRASH_AFTER: Duration = Duration::from_millis(1500);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The `wharf` binary to start as `BIN server`.
    #[arg(long)]
    wharf: PathBuf,
    /// The adnanh/webhook binary.
    #[arg(long, default_value = "webhook")]
    webhook: PathBuf,
    /// Length of the saturation and of the fixed-rate phase, per target, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent connections of the saturation phase.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Requests per second of the fixed-rate phase.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Warm-up before the measured phases, per target, in seconds.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Signed requests to build up front (default: enough for 12,000 requests/s of closed loop).
    #[arg(long)]
    pool: Option<usize>,
    /// Where to write the Markdown report.
    #[arg(long, default_value = "bench/results/intake.md")]
    out: PathBuf,
}

/// A phase with the CPU the server and this process used during it.
struct Measured {
    phase: Phase,
    server_cpu: CpuTime,
    bench_cpu: CpuTime,
    /// CPU seconds of the server's threads, by thread name (threads that lived through the phase).
    server_threads: BTreeMap<String, f64>,
    /// CPU seconds the whole machine was busy, every process included.
    machine_busy: f64,
}

/// Everything measured against one target.
struct TargetRun {
    saturation: Measured,
    fixed: Measured,
}

/// What the durability check found.
struct Durability {
    accepted: usize,
    /// Requests answered with an error (or not at all) before the crash phase.
    failed_before_crash: usize,
    builds_after_restart: f64,
    /// Found by id in the SQLite file; `None` without sqlite3.
    by_id: Option<FoundById>,
    crash_phase: Phase,
    /// Lines in Wharf's log (WHARF_LOG=warn) before the crash, and the most frequent ones.
    wharf_log: (usize, Vec<(usize, String)>),
}

/// Deliveries looked up by `X-GitHub-Delivery` id in the `deliveries` table.
struct FoundById {
    accepted_found: usize,
    rows: usize,
    /// Answered non-2xx or not at all before the crash phase, yet stored.
    failed_found: usize,
    /// In flight when the server was killed, yet stored.
    in_flight_found: usize,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.connections > 0 && args.rate > 0.0 && args.seconds > 0,
        "--connections, --rate and --seconds must be positive"
    );
    let wharf_bin = std::fs::canonicalize(&args.wharf)
        .with_context(|| format!("no wharf binary at {}", args.wharf.display()))?;
    let webhook_bin = find_program(&args.webhook).with_context(|| {
        format!(
            "adnanh/webhook ({}) is not installed: apt-get install webhook",
            args.webhook.display()
        )
    })?;
    let dir = tempfile::Builder::new().prefix("wharf-bench-").tempdir()?;
    let secret = procs::random_hex(32)?;
    let generator = Generator::new(&secret, &procs::random_hex(4)?)?;

    let pool_size = args.pool.unwrap_or(
        POOL_RATE_BUDGET * (args.warmup + args.seconds + 2) as usize
            + (args.rate * args.seconds as f64) as usize
            + 1,
    );
    eprintln!(
        "==> signing {pool_size} distinct push deliveries of {} bytes",
        generator.body_len()
    );
    let pool = generator.pool(pool_size)?;
    let http = procs::http_client(args.connections)?;

    let launch = WharfLaunch::fresh(&wharf_bin, dir.path(), &secret)?;
    let mut wharf = start_tracking_server(&launch, &http, "run", &[]).await?;

    eprintln!("==> starting adnanh/webhook");
    let (mut webhook, webhook_url) = start_webhook(&webhook_bin, dir.path(), &secret).await?;

    let wharf_target = Target::new(&http, wharf.webhook_url(), pool, false);
    let webhook_target = Target::new(&http, webhook_url, pool, true);
    let wrong = HeaderValue::from_str(&wharf_domain::signature::sign(
        b"not-the-secret",
        &pool[0].body,
    ))?;
    // adnanh/webhook 2.8 answers a signature that does not match with 500 ("Error occurred while
    // evaluating hook rules"), before its rule-mismatch status applies.
    check_target("adnanh/webhook", &webhook_target, &wrong, 200, 500).await?;
    // Wharf's check stores request 0; the phases continue from request 1.
    check_target("Wharf", &wharf_target, &wrong, 202, 401).await?;
    wharf_target.cursor.store(1, Ordering::Relaxed);
    let mut accepted = vec![0usize];

    let seconds = Duration::from_secs(args.seconds);
    eprintln!("==> Wharf: warm-up {}s", args.warmup);
    let warm = load::closed_loop(
        &wharf_target,
        args.connections,
        Duration::from_secs(args.warmup),
        false,
    )
    .await;
    accepted.extend(&warm.accepted);
    let mut failed = warm.failed.clone();
    eprintln!("==> Wharf: saturation, {} connections", args.connections);
    let saturation = measured(&wharf.child, async {
        load::closed_loop(&wharf_target, args.connections, seconds, false).await
    })
    .await;
    accepted.extend(&saturation.phase.accepted);
    failed.extend(&saturation.phase.failed);
    eprintln!("==> Wharf: fixed rate {} requests/s", args.rate);
    let fixed = measured(&wharf.child, async {
        load::open_loop(&wharf_target, args.rate, seconds).await
    })
    .await;
    accepted.extend(&fixed.phase.accepted);
    failed.extend(&fixed.phase.failed);
    let wharf_run = TargetRun { saturation, fixed };
    wharf.child.check_running()?;

    eprintln!(
        "==> Wharf: SIGKILL under load after {:?}, restart, count",
        CRASH_AFTER
    );
    let crash_target = wharf_target.clone();
    let connections = args.connections;
    let crash_load = tokio::spawn(async move {
        load::closed_loop(&crash_target, connections, Duration::from_secs(10), true).await
    });
    // This sleep only decides when to crash the server; nothing waits on it for correctness.
    tokio::time::sleep(CRASH_AFTER).await;
    wharf.child.kill()?;
    let crash_phase = crash_load
        .await
        .context("the load under which Wharf is killed")?;
    accepted.extend(&crash_phase.accepted);
    let wharf_log = wharf.child.log_summary(5);
    drop(wharf);
    let mut durability =
        check_durability(&launch, &http, pool, &accepted, &failed, crash_phase).await?;
    durability.wharf_log = wharf_log;

    eprintln!("==> adnanh/webhook: warm-up {}s", args.warmup);
    load::closed_loop(
        &webhook_target,
        args.connections,
        Duration::from_secs(args.warmup),
        false,
    )
    .await;
    eprintln!(
        "==> adnanh/webhook: saturation, {} connections",
        args.connections
    );
    let saturation = measured(&webhook, async {
        load::closed_loop(&webhook_target, args.connections, seconds, false).await
    })
    .await;
    eprintln!("==> adnanh/webhook: fixed rate {} requests/s", args.rate);
    let fixed = measured(&webhook, async {
        load::open_loop(&webhook_target, args.rate, seconds).await
    })
    .await;
    let webhook_run = TargetRun { saturation, fixed };
    webhook.check_running()?;
    webhook.kill()?;

    let text = render(
        &args,
        &wharf_bin,
        &webhook_bin,
        generator.body_len(),
        pool.len(),
        &wharf_run,
        &webhook_run,
        &durability,
    );
    report::publish(&args.out, &text)
}

/// Runs `work` and notes the CPU time of `server` and of this process meanwhile.
async fn measured(server: &Child, work: impl Future<Output = Phase>) -> Measured {
    let server_before = server.cpu();
    let threads_before = server.thread_cpu();
    let bench_before = CpuTime::of_self();
    let machine_before = procs::machine_busy();
    let phase = work.await;
    let machine_busy = procs::machine_busy() - machine_before;
    let mut server_threads = server.thread_cpu();
    for (name, seconds) in &mut server_threads {
        *seconds -= threads_before.get(name).copied().unwrap_or(0.0);
    }
    Measured {
        server_cpu: server.cpu().since(server_before),
        bench_cpu: CpuTime::of_self().since(bench_before),
        server_threads,
        machine_busy,
        phase,
    }
}

/// Checks once that a correctly signed request gets `good` and a wrongly signed one does not.
async fn check_target(
    name: &str,
    target: &Target,
    wrong: &HeaderValue,
    good: u16,
    bad: u16,
) -> anyhow::Result<()> {
    let request = &target.pool[0];
    let (status, _) = target
        .send_reading(request, wrong)
        .await
        .map_err(|error| anyhow::anyhow!("{name}: {error}"))?;
    ensure!(
        status != good && !(200..300).contains(&status),
        "{name} answered a wrongly signed request with {status}: its signature check is not in force"
    );
    if status != bad {
        eprintln!("    {name} answers a wrong signature with {status}");
    }
    let (status, body) = target
        .send_reading(request, &request.signature)
        .await
        .map_err(|error| anyhow::anyhow!("{name}: {error}"))?;
    ensure!(
        status == good,
        "{name} answered a correctly signed request with {status} (expected {good}): {}",
        String::from_utf8_lossy(&body)
    );
    if good == 202 {
        let answer: Value = serde_json::from_slice(&body)?;
        ensure!(
            answer["builds"]
                .as_array()
                .is_some_and(|ids| ids.len() == 1),
            "{name} accepted the push but queued no build: {answer}"
        );
    }
    Ok(())
}

/// Starts adnanh/webhook with one hook, `github`, that runs `/bin/true` when the payload's
/// HMAC-SHA256 matches `X-Hub-Signature-256`. Returns the child and the hook's URL.
async fn start_webhook(bin: &Path, dir: &Path, secret: &str) -> anyhow::Result<(Child, String)> {
    let hooks = json!([{
        "id": "github",
        "execute-command": "/bin/true",
        "command-working-directory": dir,
        "response-message": "triggered",
        "trigger-rule-mismatch-http-response-code": 403,
        "trigger-rule": {"match": {
            "type": "payload-hmac-sha256",
            "secret": secret,
            "parameter": {"source": "header", "name": "X-Hub-Signature-256"}
        }}
    }]);
    let hooks_path = dir.join("hooks.json");
    procs::write_private(
        &hooks_path,
        serde_json::to_string_pretty(&hooks)?.as_bytes(),
    )?;
    let port = procs::free_port()?;
    let mut command = Command::new(bin);
    command.arg("-hooks").arg(&hooks_path).args([
        "-ip",
        "127.0.0.1",
        "-port",
        &port.to_string(),
        "-nopanic",
    ]);
    let mut child = Child::spawn("adnanh/webhook", command, &dir.join("webhook.log"))?;
    procs::wait_listening(&mut child, port, Duration::from_secs(10)).await?;
    Ok((child, format!("http://127.0.0.1:{port}/hooks/github")))
}

/// Restarts Wharf on the data it was killed on and looks for every accepted delivery.
async fn check_durability(
    launch: &WharfLaunch,
    http: &reqwest::Client,
    pool: &'static [crate::payload::SignedRequest],
    accepted: &[usize],
    failed: &[usize],
    crash_phase: Phase,
) -> anyhow::Result<Durability> {
    let wharf = launch.start(http, "restart", &[]).await?;
    let metrics = wharf.metrics(http).await?;
    let builds_after_restart = procs::metric_sum(&metrics, "wharf_builds").unwrap_or(0.0);
    let database = launch.data_dir.join("wharf.db");
    let by_id = match find_program(Path::new("sqlite3")) {
        Ok(sqlite3) => {
            let out = Command::new(sqlite3)
                .arg(&database)
                .arg("SELECT id FROM deliveries")
                .output()
                .context("sqlite3")?;
            if !out.status.success() {
                bail!(
                    "sqlite3 could not read {}: {}",
                    database.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let stored: HashSet<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            let count = |indices: &[usize]| {
                indices
                    .iter()
                    .filter(|index| stored.contains(&pool[**index].delivery_id))
                    .count()
            };
            Some(FoundById {
                accepted_found: count(accepted),
                rows: stored.len(),
                failed_found: count(failed),
                in_flight_found: count(&crash_phase.failed),
            })
        }
        Err(_) => None,
    };
    drop(wharf);
    Ok(Durability {
        accepted: accepted.len(),
        failed_before_crash: failed.len(),
        builds_after_restart,
        by_id,
        crash_phase,
        wharf_log: (0, Vec::new()),
    })
}

/// `program` itself when it holds a slash, else the first match on `PATH`.
fn find_program(program: &Path) -> anyhow::Result<PathBuf> {
    if program.components().count() > 1 {
        return std::fs::canonicalize(program).context("not found");
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .context("not found on PATH")
}

fn cpu_cell(measured: &Measured) -> String {
    let seconds = measured.phase.elapsed.as_secs_f64().max(1e-9);
    let mut cell = format!("{:.2} cores", measured.server_cpu.own / seconds);
    if measured.server_cpu.children > 0.0 {
        let _ = write!(
            cell,
            " + {:.2} in children",
            measured.server_cpu.children / seconds
        );
    }
    let others = (measured.machine_busy
        - measured.server_cpu.own
        - measured.server_cpu.children
        - measured.bench_cpu.own)
        .max(0.0);
    let _ = write!(
        cell,
        " (load generator: {:.2}; other processes: {:.2})",
        measured.bench_cpu.own / seconds,
        others / seconds
    );
    cell
}

fn threads_cell(measured: &Measured) -> String {
    let seconds = measured.phase.elapsed.as_secs_f64().max(1e-9);
    let mut threads: Vec<(&String, &f64)> = measured
        .server_threads
        .iter()
        .filter(|(_, cpu)| **cpu / seconds >= 0.005)
        .collect();
    threads.sort_by(|a, b| b.1.total_cmp(a.1));
    threads
        .iter()
        .map(|(name, cpu)| format!("{name} {:.2}", **cpu / seconds))
        .collect::<Vec<_>>()
        .join(", ")
}

fn errors_cell(phase: &Phase) -> String {
    let errors = phase.errors();
    let mut cell = format!("{errors} of {}", phase.outcomes.values().sum::<u64>());
    if errors > 0 {
        let _ = write!(cell, " ({})", phase.outcome_summary());
    }
    if phase.exhausted {
        cell.push_str(" — request pool used up, phase ended early");
    }
    cell
}

#[allow(clippy::too_many_arguments)]
fn render(
    args: &Args,
    wharf_bin: &Path,
    webhook_bin: &Path,
    body_len: usize,
    pool_len: usize,
    wharf: &TargetRun,
    webhook: &TargetRun,
    durability: &Durability,
) -> String {
    let (ws, hs) = (&wharf.saturation.phase, &webhook.saturation.phase);
    let (wf, hf) = (&wharf.fixed.phase, &webhook.fixed.phase);
    let mut out = String::new();
    report::header(
        &mut out,
        "Webhook intake: Wharf and adnanh/webhook",
        wharf_bin,
        &format!(
            "`wharf server` on SQLite (WAL, synchronous=NORMAL) in a temporary directory, one service tracking `{REPO}` `{BRANCH}`"
        ),
    );
    let _ = writeln!(
        out,
        "- adnanh/webhook: `{}` ({}), hook `github` running `/bin/true` under a `payload-hmac-sha256` trigger rule on `X-Hub-Signature-256`",
        webhook_bin.display(),
        report::version_of(webhook_bin, &["-version"])
    );
    let _ = writeln!(
        out,
        "- Payload: GitHub `push` event, {body_len} bytes, each request a distinct `after` commit and `X-GitHub-Delivery`, signed `sha256=HMAC-SHA256`; {pool_len} requests signed before timing"
    );
    let _ = writeln!(
        out,
        "- Load: this process on the same machine over loopback (it shares the {} CPUs with the server under test), HTTP/1.1 keep-alive; warm-up {} s, then saturation with {} connections for {} s, then a fixed rate of {} requests/s for {} s; targets run one after the other, never at once",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        args.warmup,
        args.connections,
        args.seconds,
        args.rate,
        args.seconds
    );
    let _ = writeln!(
        out,
        "\n| Measure | Wharf | adnanh/webhook | Ratio |\n|---|---:|---:|---:|"
    );
    let row = |out: &mut String, name: &str, w: String, h: String, r: String| {
        let _ = writeln!(out, "| {name} | {w} | {h} | {r} |");
    };
    let rate = |phase: &Phase| format!("{:.0} req/s", phase.throughput());
    row(
        &mut out,
        &format!(
            "Saturation throughput (2xx/s, {} connections)",
            args.connections
        ),
        rate(ws),
        rate(hs),
        report::ratio(Some(ws.throughput()), Some(hs.throughput())),
    );
    for (name, p) in [("p50", 50.0), ("p99", 99.0), ("max", 100.0)] {
        row(
            &mut out,
            &format!("Saturation latency {name}"),
            report::ms(ws.percentile_ms(p)),
            report::ms(hs.percentile_ms(p)),
            report::ratio(hs.percentile_ms(p), ws.percentile_ms(p)),
        );
    }
    row(
        &mut out,
        &format!("Fixed rate: achieved (2xx/s, target {})", args.rate),
        rate(wf),
        rate(hf),
        report::ratio(Some(wf.throughput()), Some(hf.throughput())),
    );
    for (name, p) in [("p50", 50.0), ("p99", 99.0), ("max", 100.0)] {
        row(
            &mut out,
            &format!("Fixed rate latency {name} (from due time)"),
            report::ms(wf.percentile_ms(p)),
            report::ms(hf.percentile_ms(p)),
            report::ratio(hf.percentile_ms(p), wf.percentile_ms(p)),
        );
    }
    for (name, p) in [("p50", 50.0), ("p99", 99.0)] {
        let service =
            |phase: &Phase| load::percentile(&phase.service_us, p).map(|us| us as f64 / 1000.0);
        row(
            &mut out,
            &format!("Fixed rate latency {name} (from actual send, for reference)"),
            report::ms(service(wf)),
            report::ms(service(hf)),
            report::ratio(service(hf), service(wf)),
        );
    }
    row(
        &mut out,
        "Errors, saturation (non-2xx + transport)",
        errors_cell(ws),
        errors_cell(hs),
        "—".to_owned(),
    );
    row(
        &mut out,
        "Errors, fixed rate (non-2xx + transport)",
        errors_cell(wf),
        errors_cell(hf),
        "—".to_owned(),
    );
    row(
        &mut out,
        "CPU during saturation",
        cpu_cell(&wharf.saturation),
        cpu_cell(&webhook.saturation),
        "—".to_owned(),
    );
    row(
        &mut out,
        "CPU during fixed rate",
        cpu_cell(&wharf.fixed),
        cpu_cell(&webhook.fixed),
        "—".to_owned(),
    );

    let series = |phase: &Phase| {
        phase
            .per_second()
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    row(
        &mut out,
        "Saturation 2xx in each second",
        series(ws),
        series(hs),
        "—".to_owned(),
    );
    row(
        &mut out,
        "Server CPU by thread, saturation (cores)",
        threads_cell(&wharf.saturation),
        threads_cell(&webhook.saturation),
        "—".to_owned(),
    );

    let throughput_ratio = ws.throughput() / hs.throughput().max(1e-9);
    let fixed_p99 = wf.percentile_ms(99.0);
    let _ = writeln!(
        out,
        "\nRatios: throughput is Wharf ÷ webhook, latency is webhook ÷ Wharf, so above 1× Wharf is better in both.\n"
    );
    let _ = writeln!(out, "## Goals\n");
    let _ = writeln!(
        out,
        "- Saturation throughput at least 5× adnanh/webhook: measured {throughput_ratio:.2}× — {}",
        report::met(throughput_ratio >= 5.0)
    );
    let _ = writeln!(
        out,
        "- p99 under 10 ms at {} requests/s: measured {} — {}",
        args.rate,
        report::ms(fixed_p99),
        report::met(fixed_p99.is_some_and(|p99| p99 < 10.0) && wf.errors() == 0)
    );
    let durable_found = durability
        .by_id
        .as_ref()
        .map(|found| found.accepted_found as f64)
        .unwrap_or(
            durability
                .builds_after_restart
                .min(durability.accepted as f64),
        );
    let _ = writeln!(
        out,
        "- Every accepted delivery durable: durable: {} of {} accepted deliveries found after SIGKILL — {}",
        durable_found as u64,
        durability.accepted,
        report::met(
            durable_found as usize == durability.accepted
                && durability.builds_after_restart >= durability.accepted as f64
        )
    );
    let _ = writeln!(out, "\n## Durability\n");
    let crash = &durability.crash_phase;
    let _ = writeln!(
        out,
        "Wharf was loaded with {} connections and killed with SIGKILL after {:?} of that load, while requests were in flight ({} of them got no answer, {} had been answered 202). It was then started again on the same data directory.\n",
        args.connections,
        CRASH_AFTER,
        crash.failed.len(),
        crash.accepted.len()
    );
    let _ = writeln!(
        out,
        "- Deliveries answered 202 over the whole run (check, warm-up, saturation, fixed rate, crash phase): {}",
        durability.accepted
    );
    let _ = writeln!(
        out,
        "- Builds in the store after the restart (`wharf_builds` summed over states in `GET /metrics`; each stored push makes exactly one): {}",
        durability.builds_after_restart
    );
    match &durability.by_id {
        Some(found) => {
            let _ = writeln!(
                out,
                "- Accepted delivery ids found in the `deliveries` table (read with sqlite3 after the restart): {} of {}; rows in the table: {}",
                found.accepted_found, durability.accepted, found.rows
            );
            let _ = writeln!(
                out,
                "- Answered with an error before the crash phase ({} requests: see the errors above), yet stored: {}",
                durability.failed_before_crash, found.failed_found
            );
            let _ = writeln!(
                out,
                "- In flight at the kill ({} requests), stored before the kill: {}",
                crash.failed.len(),
                found.in_flight_found
            );
        }
        None => {
            let _ = writeln!(
                out,
                "- sqlite3 is not installed, so deliveries were counted (via builds), not matched by id"
            );
        }
    }
    let (log_lines, frequent) = &durability.wharf_log;
    let _ = writeln!(
        out,
        "\n## Wharf's log during the run (WHARF_LOG=warn)\n\n{log_lines} lines{}",
        if frequent.is_empty() {
            "."
        } else {
            "; the most frequent, without timestamps, numbers shown as #:\n"
        }
    );
    for (count, line) in frequent {
        let _ = writeln!(out, "- {count}× `{}`", line.replace('`', "'"));
    }
    let lag_p99 = load::percentile(&wf.send_lag_us, 99.0).unwrap_or(0) as f64 / 1000.0;
    let hook_lag_p99 = load::percentile(&hf.send_lag_us, 99.0).unwrap_or(0) as f64 / 1000.0;
    let _ = writeln!(out, "\n## Notes\n");
    let _ = writeln!(
        out,
        "- Latency is from sending a request (saturation) or from its due time (fixed rate) to the end of its answer, for every answered request; throughput counts 2xx answers over the phase, from its start to its last answer."
    );
    let _ = writeln!(
        out,
        "- adnanh/webhook answers as soon as the rule matches and runs `/bin/true` in the background (its default); its 2xx means the signature matched, not that anything was stored. Wharf answers 202 only after the delivery and its build are committed to SQLite."
    );
    let _ = writeln!(
        out,
        "- Fixed-rate requests started after their due time by p99 {lag_p99:.2} ms for Wharf and {hook_lag_p99:.2} ms for webhook (the load generator waiting for a CPU); that lateness is part of the latencies from due time, not of those from actual send."
    );
    let _ = writeln!(
        out,
        "- Durability is against a crash of the process (SIGKILL): a commit is in SQLite's WAL file before the 202. With synchronous=NORMAL, a power loss could still take the last commits."
    );
    out
}

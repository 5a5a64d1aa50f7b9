//! `wharf-bench settings`: what a setting (or another build of Wharf) costs webhook intake.
//!
//! Each variant is a `wharf` binary with extra environment, e.g. `full:WHARF_SQLITE_SYNCHRONOUS=full`
//! or `before@/tmp/old/wharf`; the first is the baseline. Every round runs every variant once,
//! in turn (interleaved, so a machine that slows down over the run slows every variant alike),
//! each on a fresh data directory with the same signed pushes: a warm-up, saturation with C
//! connections, then a fixed rate. The report gives, per variant, the median and the worst
//! round of saturation throughput and of p99 latencies, and each against the baseline's.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};

use crate::load::{self, Phase, Target};
use crate::payload::{Generator, start_tracking_server};
use crate::procs::{self, WharfLaunch};
use crate::report;

/// Requests per second of closed-loop time the pool is sized for.
const POOL_RATE_BUDGET: usize = 12_000;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The `wharf` binary of variants that name none.
    #[arg(long)]
    wharf: PathBuf,
    /// A variant: `LABEL[@BIN][:NAME=VALUE[,NAME=VALUE]…]`. The first is the baseline; without
    /// any, `default` and `synchronous-full:WHARF_SQLITE_SYNCHRONOUS=full`.
    #[arg(long = "variant")]
    variants: Vec<String>,
    /// Rounds; each runs every variant once, in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Length of the saturation and of the fixed-rate phase, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent connections of the saturation phase.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Requests per second of the fixed-rate phase.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Warm-up before the measured phases, in seconds.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Where to write the Markdown report.
    #[arg(long, default_value = "bench/results/intake-settings.md")]
    out: PathBuf,
}

/// One way of running Wharf.
#[derive(Debug, Clone, PartialEq)]
struct Variant {
    label: String,
    bin: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl Variant {
    /// Reads `LABEL[@BIN][:NAME=VALUE[,NAME=VALUE]…]`.
    fn parse(text: &str) -> anyhow::Result<Variant> {
        let (head, env) = text.split_once(':').unwrap_or((text, ""));
        let (label, bin) = match head.split_once('@') {
            Some((label, bin)) => (label, Some(PathBuf::from(bin))),
            None => (head, None),
        };
        ensure!(!label.is_empty(), "variant {text:?} has no label");
        let env = env
            .split(',')
            .filter(|pair| !pair.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
                _ => bail!("variant {text:?}: {pair:?} is not NAME=VALUE"),
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Variant {
            label: label.to_owned(),
            bin,
            env,
        })
    }

    fn describe(&self, default_bin: &Path) -> String {
        let bin = self.bin.as_deref().unwrap_or(default_bin);
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(name, value)| format!("`{name}={value}`"))
            .collect();
        format!(
            "`{}` ({}){}",
            bin.display(),
            report::version_of(bin, &["--version"]),
            if env.is_empty() {
                String::new()
            } else {
                format!(" with {}", env.join(", "))
            }
        )
    }
}

/// What one round measured of one variant.
#[derive(Debug, Clone, Copy)]
struct Round {
    throughput: f64,
    saturation_p99_ms: f64,
    fixed_p99_ms: f64,
    errors: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.rounds > 0 && args.connections > 0 && args.rate > 0.0 && args.seconds > 0,
        "--rounds, --connections, --rate and --seconds must be positive"
    );
    let default_bin = std::fs::canonicalize(&args.wharf)
        .with_context(|| format!("no wharf binary at {}", args.wharf.display()))?;
    let texts = if args.variants.is_empty() {
        vec![
            "default".to_owned(),
            "synchronous-full:WHARF_SQLITE_SYNCHRONOUS=full".to_owned(),
        ]
    } else {
        args.variants.clone()
    };
    let variants: Vec<Variant> = texts
        .iter()
        .map(|text| Variant::parse(text))
        .collect::<anyhow::Result<_>>()?;

    let secret = procs::random_hex(32)?;
    let generator = Generator::new(&secret, &procs::random_hex(4)?)?;
    let pool_size = POOL_RATE_BUDGET * (args.warmup + args.seconds + 2) as usize
        + (args.rate * args.seconds as f64) as usize
        + 1;
    eprintln!("==> signing {pool_size} distinct push deliveries");
    let pool = generator.pool(pool_size)?;
    let http = procs::http_client(args.connections)?;

    let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); variants.len()];
    for round in 0..args.rounds {
        for (index, variant) in variants.iter().enumerate() {
            eprintln!(
                "==> round {} of {}: {}",
                round + 1,
                args.rounds,
                variant.label
            );
            let measured = measure(&args, &default_bin, variant, pool, &http, &secret).await?;
            rounds[index].push(measured);
        }
    }
    let text = render(&args, &default_bin, &variants, &rounds);
    report::publish(&args.out, &text)
}

/// Runs `variant` once on a fresh data directory.
async fn measure(
    args: &Args,
    default_bin: &Path,
    variant: &Variant,
    pool: &'static [crate::payload::SignedRequest],
    http: &reqwest::Client,
    secret: &str,
) -> anyhow::Result<Round> {
    let dir = tempfile::Builder::new()
        .prefix("wharf-bench-settings-")
        .tempdir()?;
    let bin = variant.bin.as_deref().unwrap_or(default_bin);
    let launch = WharfLaunch::fresh(bin, dir.path(), secret)?;
    let env: Vec<(&str, &str)> = variant
        .env
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let mut wharf = start_tracking_server(&launch, http, &variant.label, &env).await?;
    let target = Target::new(http, wharf.webhook_url(), pool, false);
    load::closed_loop(
        &target,
        args.connections,
        Duration::from_secs(args.warmup),
        false,
    )
    .await;
    let seconds = Duration::from_secs(args.seconds);
    let saturation = load::closed_loop(&target, args.connections, seconds, false).await;
    let fixed = load::open_loop(&target, args.rate, seconds).await;
    wharf.child.check_running()?;
    wharf.child.terminate(Duration::from_secs(10))?;
    Ok(Round {
        throughput: saturation.throughput(),
        saturation_p99_ms: p99(&saturation),
        fixed_p99_ms: p99(&fixed),
        errors: saturation.errors() + fixed.errors(),
    })
}

fn p99(phase: &Phase) -> f64 {
    phase.percentile_ms(99.0).unwrap_or(f64::NAN)
}

fn render(args: &Args, default_bin: &Path, variants: &[Variant], rounds: &[Vec<Round>]) -> String {
    let mut out = String::new();
    report::header(
        &mut out,
        "Webhook intake by setting: what each costs",
        default_bin,
        "`wharf server` on SQLite in a fresh temporary directory per run, one service tracking the pushed branch",
    );
    let _ = writeln!(
        out,
        "- Load: this process on the same machine over loopback; per run a warm-up of {} s, saturation with {} connections for {} s, then {} requests/s for {} s; {} rounds, each running every variant once in the order below",
        args.warmup, args.connections, args.seconds, args.rate, args.seconds, args.rounds
    );
    for (index, variant) in variants.iter().enumerate() {
        let role = if index == 0 { " (baseline)" } else { "" };
        let _ = writeln!(
            out,
            "- `{}`{role}: {}",
            variant.label,
            variant.describe(default_bin)
        );
    }
    let _ = writeln!(
        out,
        "\n| Variant | Saturation throughput, median (worst) | ÷ baseline, median (worst) | Saturation p99, median (worst) | Fixed-rate p99, median (worst) | ÷ baseline, median (worst) | Errors |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    let column = |rounds: &[Round], pick: fn(&Round) -> f64, higher: bool| {
        report::median_and_worst(&rounds.iter().map(pick).collect::<Vec<_>>(), higher)
    };
    let base = &rounds[0];
    let (base_tp, base_tp_worst) = column(base, |r| r.throughput, true);
    let (base_fixed, base_fixed_worst) = column(base, |r| r.fixed_p99_ms, false);
    for (variant, measured) in variants.iter().zip(rounds) {
        let (tp, tp_worst) = column(measured, |r| r.throughput, true);
        let (sat, sat_worst) = column(measured, |r| r.saturation_p99_ms, false);
        let (fixed, fixed_worst) = column(measured, |r| r.fixed_p99_ms, false);
        let errors: u64 = measured.iter().map(|r| r.errors).sum();
        let _ = writeln!(
            out,
            "| {} | {tp:.0} ({tp_worst:.0}) req/s | {:.2}× ({:.2}×) | {sat:.2} ({sat_worst:.2}) ms | {fixed:.2} ({fixed_worst:.2}) ms | {:.2}× ({:.2}×) | {errors} |",
            variant.label,
            tp / base_tp,
            tp_worst / base_tp_worst,
            fixed / base_fixed,
            fixed_worst / base_fixed_worst,
        );
    }
    let _ = writeln!(out, "\n## Every round\n");
    let _ = writeln!(
        out,
        "| Round | Variant | Throughput | Saturation p99 | Fixed-rate p99 | Errors |\n|---:|---|---:|---:|---:|---:|"
    );
    for round in 0..args.rounds {
        for (variant, measured) in variants.iter().zip(rounds) {
            let r = measured[round];
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} req/s | {:.2} ms | {:.2} ms | {} |",
                round + 1,
                variant.label,
                r.throughput,
                r.saturation_p99_ms,
                r.fixed_p99_ms,
                r.errors
            );
        }
    }
    let _ = writeln!(
        out,
        "\nRatios are the variant's figure over the baseline's: above 1× is more throughput, or a longer p99. The worst round is the lowest throughput and the longest p99."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_name_a_label_a_binary_and_settings() {
        assert_eq!(
            Variant::parse("default").unwrap(),
            Variant {
                label: "default".into(),
                bin: None,
                env: vec![]
            }
        );
        let variant = Variant::parse("before@/tmp/w:WHARF_A=1,WHARF_B=x=y").unwrap();
        assert_eq!(variant.label, "before");
        assert_eq!(variant.bin, Some(PathBuf::from("/tmp/w")));
        assert_eq!(
            variant.env,
            vec![
                ("WHARF_A".to_owned(), "1".to_owned()),
                ("WHARF_B".to_owned(), "x=y".to_owned())
            ]
        );
        assert!(Variant::parse(":A=1").is_err());
        assert!(Variant::parse("x:A").is_err());
    }

    #[test]
    fn the_worst_round_is_the_lowest_throughput_and_the_longest_latency() {
        assert_eq!(report::median_and_worst(&[3.0, 1.0, 2.0], true), (2.0, 1.0));
        assert_eq!(
            report::median_and_worst(&[3.0, 1.0, 2.0], false),
            (2.0, 3.0)
        );
    }
}

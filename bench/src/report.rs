//! What the reports say about the run: the date, the machine, and number formatting.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

/// The current UTC time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_now() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs() as i64)
        .unwrap_or(0);
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// `nproc`, the CPU model, memory and kernel, in one line.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))
        .map(|name| name.trim_matches('"').to_owned())
        .unwrap_or_else(|| "Linux".to_owned());
    format!(
        "nproc {cpus}, {model}, {memory_gib:.1} GiB RAM, {os}, kernel {}",
        kernel.trim()
    )
}

/// `/proc/loadavg`'s 1, 5 and 15 minute load averages, to show whether other work shared the machine.
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    if fields.len() == 3 {
        format!(
            "{} / {} / {} (1 / 5 / 15 min)",
            fields[0], fields[1], fields[2]
        )
    } else {
        "unknown".to_owned()
    }
}

/// The commit of the source tree in the current directory, and whether it has local changes.
pub fn source_revision() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) => {
            let changed = git(&["status", "--porcelain", "--untracked-files=no"])
                .map(|text| text.lines().count())
                .unwrap_or(0);
            if changed == 0 {
                format!("commit {commit}")
            } else {
                format!("commit {commit} with {changed} files changed in the working tree")
            }
        }
        None => "not a git checkout".to_owned(),
    }
}

/// The first line a program prints for `args` (its version), or why not.
pub fn version_of(program: &Path, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) => {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        }
        Err(error) => format!("unknown ({error})"),
    }
}

/// A number of milliseconds with a sensible precision, or a dash.
pub fn ms(value: Option<f64>) -> String {
    match value {
        None => "—".to_owned(),
        Some(v) if v.abs() < 10.0 => format!("{v:.2} ms"),
        Some(v) if v.abs() < 100.0 => format!("{v:.1} ms"),
        Some(v) => format!("{v:.0} ms"),
    }
}

/// A ratio as `12.3×`, or a dash when it cannot be computed.
pub fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> String {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d > 0.0 && n.is_finite() => format!("{:.2}×", n / d),
        _ => "—".to_owned(),
    }
}

/// Writes `text` to `path`, creating its directory.
pub fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes the report `text` to `path` and prints it.
pub fn publish(path: &Path, text: &str) -> anyhow::Result<()> {
    write(path, text)?;
    println!("{text}");
    eprintln!("==> written to {}", path.display());
    Ok(())
}

/// The median of `values` (the upper one of an even count); sorts them.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median and the worst of `values`; the worst is the lowest when `higher_is_better`.
pub fn median_and_worst(values: &[f64], higher_is_better: bool) -> (f64, f64) {
    let mut sorted = values.to_vec();
    let median = median(&mut sorted);
    let worst = if higher_is_better {
        sorted.first().copied().unwrap_or(f64::NAN)
    } else {
        sorted.last().copied().unwrap_or(f64::NAN)
    };
    (median, worst)
}

/// `yes`/`no` for a goal.
pub fn met(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**not met**" }
}

/// The lines every report opens with: its title, when, on what machine, under what load, and
/// which Wharf (`how` says how it ran).
pub fn header(out: &mut String, title: &str, wharf_bin: &Path, how: &str) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "# {title}\n");
    let _ = writeln!(out, "- Date: {}", utc_now());
    let _ = writeln!(out, "- Machine: {}", machine());
    let _ = writeln!(
        out,
        "- Load average when the report was written: {}",
        load_average()
    );
    let _ = writeln!(
        out,
        "- Wharf: `{}` ({}, built from {}), {how}",
        wharf_bin.display(),
        version_of(wharf_bin, &["--version"]),
        source_revision()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(ms(Some(1.234)), "1.23 ms");
        assert_eq!(ms(Some(150.4)), "150 ms");
        assert_eq!(ms(None), "—");
        assert_eq!(ratio(Some(10.0), Some(4.0)), "2.50×");
        assert_eq!(ratio(Some(10.0), Some(0.0)), "—");
        assert!(utc_now().ends_with(" UTC"));
    }
}

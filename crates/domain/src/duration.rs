//! Durations written as text: one or more decimal numbers, each with its unit, such as `1m30s`,
//! `500ms` or `1.5h` (Go's syntax, which compose files use), and for Wharf's own settings also
//! days, such as `30d`; `0` alone is zero.

use std::time::Duration;

/// Reads a duration setting, such as `30d`, `12h` or `1h30m`: Go's units and days.
pub fn parse_duration(text: &str) -> Option<Duration> {
    parse(text, Days::Allowed)
}

/// Writes a duration as its settings are written, in its largest whole unit (`7d`, `12h`,
/// `30m`, `45s`), else in milliseconds; [`parse_duration`] reads it back.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    for (unit, length) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if millis > 0 && millis.is_multiple_of(length) {
            return format!("{}{unit}", millis / length);
        }
    }
    format!("{millis}ms")
}

/// Reads a duration in Go's syntax, as compose files write them: no days.
pub(crate) fn parse_go_duration(text: &str) -> Option<Duration> {
    parse(text, Days::Refused)
}

/// Whether `d` (24 hours) is a unit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Days {
    Allowed,
    Refused,
}

/// A unit's length in nanoseconds: Go's units (`ns`, `us` or `µs`, `ms`, `s`, `m`, `h`), and
/// `d` when days are allowed.
fn unit_nanos(unit: &str, days: Days) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        "d" if days == Days::Allowed => 86_400 * 1_000_000_000,
        _ => return None,
    })
}

fn parse(text: &str, days: Days) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() || text.len() > 64 {
        return None;
    }
    let mut rest = text;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return None;
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let unit_nanos = unit_nanos(unit, days)?;
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        // Digits past nanoseconds of a day change nothing; 18 keep the arithmetic in range.
        let fraction = &fraction[..fraction.len().min(18)];
        let fraction_nanos = if fraction.is_empty() {
            0
        } else {
            fraction.parse::<u128>().ok()? * unit_nanos / 10u128.pow(fraction.len() as u32)
        };
        total_nanos = total_nanos
            .checked_add(whole.checked_mul(unit_nanos)?)?
            .checked_add(fraction_nanos)?;
        rest = next;
    }
    let nanos = u64::try_from(total_nanos).ok()?;
    Some(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_may_count_in_days() {
        for (text, expected) in [
            ("30d", Duration::from_secs(30 * 86_400)),
            ("1d12h", Duration::from_secs(36 * 3_600)),
            ("0.5d", Duration::from_secs(43_200)),
            ("90m", Duration::from_secs(5_400)),
            ("250ms", Duration::from_millis(250)),
            ("0", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(text), Some(expected), "{text}");
        }
        for bad in ["", "30", "d", "30 d", "-1d", "30days", "1w"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        // Compose files keep Go's units: no days.
        assert_eq!(parse_go_duration("1d"), None);
        assert_eq!(parse_go_duration("1h"), parse_duration("1h"));
        for text in ["7d", "12h", "90m", "45s", "1500ms", "0ms"] {
            let duration = parse_duration(text).unwrap();
            assert_eq!(format_duration(duration), text);
        }
    }
}

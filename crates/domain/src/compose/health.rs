//! A compose service's `healthcheck:`, and compose durations (Go's syntax) its times are
//! written in.

use std::time::Duration;

use serde_yaml_ng::Value;

use super::refusal::set_entries;
use super::service::ServiceReader;
use super::{ComposeHealthcheck, ComposeRefusal, HealthTest};
use crate::names::quote;

impl ServiceReader<'_> {
    pub(super) fn healthcheck(&self, value: &Value) -> Result<ComposeHealthcheck, ComposeRefusal> {
        let Some(fields) = value.as_mapping() else {
            return Err(self.invalid("healthcheck", "expected a mapping with test:"));
        };
        let mut check = ComposeHealthcheck {
            test: HealthTest::Disabled,
            interval: None,
            timeout: None,
            retries: None,
            start_period: None,
        };
        let mut test = None;
        let mut disabled = false;
        for entry in set_entries(&self.subject, "healthcheck", fields) {
            let (key, value) = entry?;
            match key {
                "test" => test = Some(self.health_test(value)?),
                "disable" => disabled = self.flag("healthcheck disable", value)?,
                "interval" => check.interval = Some(self.duration("healthcheck interval", value)?),
                "timeout" => check.timeout = Some(self.duration("healthcheck timeout", value)?),
                "start_period" => {
                    check.start_period = Some(self.duration("healthcheck start_period", value)?)
                }
                "start_interval" => {
                    self.duration("healthcheck start_interval", value)?;
                }
                "retries" => {
                    check.retries = Some(
                        value
                            .as_u64()
                            .and_then(|retries| u32::try_from(retries).ok())
                            .ok_or_else(|| {
                                self.invalid("healthcheck retries", "expected a whole number")
                            })?,
                    )
                }
                key => {
                    return Err(self.unsupported(
                        format!("healthcheck {}", quote(key)),
                        "a health check takes test, interval, timeout, retries, start_period and disable",
                    ));
                }
            }
        }
        check.test = match (disabled, test) {
            (true, _) => HealthTest::Disabled,
            (false, Some(test)) => test,
            (false, None) => {
                return Err(self.unsupported(
                    "a healthcheck without test".into(),
                    "give test:, or disable: true; Wharf does not retime the image's own HEALTHCHECK",
                ));
            }
        };
        Ok(check)
    }

    fn health_test(&self, value: &Value) -> Result<HealthTest, ComposeRefusal> {
        const FIELD: &str = "healthcheck test";
        let test = match value {
            Value::String(_) => HealthTest::Shell(self.text(FIELD, value)?),
            Value::Sequence(items) => {
                let words = items
                    .iter()
                    .map(|item| self.scalar(FIELD, item))
                    .collect::<Result<Vec<_>, _>>()?;
                match words.split_first() {
                    Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => {
                        HealthTest::Exec(rest.to_vec())
                    }
                    Some((kind, [line])) if kind == "CMD-SHELL" => HealthTest::Shell(line.clone()),
                    Some((kind, [])) if kind == "NONE" => HealthTest::Disabled,
                    _ => {
                        return Err(self.invalid(
                            FIELD,
                            "expected [\"CMD\", program, args…], [\"CMD-SHELL\", line] or [\"NONE\"]",
                        ));
                    }
                }
            }
            _ => return Err(self.invalid(FIELD, "expected a string or a list")),
        };
        match &test {
            HealthTest::Shell(line) if line.trim().is_empty() => {
                Err(self.invalid(FIELD, "the command is empty"))
            }
            _ => Ok(test),
        }
    }

    fn duration(&self, field: &str, value: &Value) -> Result<Duration, ComposeRefusal> {
        let text = match value {
            Value::String(text) => text,
            _ => return Err(self.invalid(field, "expected a duration with its unit, such as 30s")),
        };
        parse_compose_duration(text).ok_or_else(|| {
            self.invalid(
                field,
                format!(
                    "{} is not a duration such as 30s, 1m30s or 500ms",
                    quote(text)
                ),
            )
        })
    }
}

/// Reads a compose duration (Go's syntax): one or more decimal numbers, each with a unit among
/// `ns`, `us` (`µs`), `ms`, `s`, `m`, `h`, such as `1m30s`, `500ms` or `1.5h`; `0` alone is zero.
pub fn parse_compose_duration(text: &str) -> Option<Duration> {
    crate::duration::parse_go_duration(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::testing::*;
    use crate::compose::*;

    #[test]
    fn health_checks() {
        let check = |settings: &str| {
            web(
                &format!("    healthcheck:\n{settings}"),
                "",
                &ComposeAllowances::default(),
            )
            .map(|service| service.healthcheck.unwrap())
        };
        let exec = check("      test: [\"CMD\", \"curl\", \"-f\", \"http://localhost/\"]\n      timeout: 500ms\n      retries: 0\n").unwrap();
        assert_eq!(
            exec.test,
            HealthTest::Exec(vec!["curl".into(), "-f".into(), "http://localhost/".into()])
        );
        assert_eq!(
            exec.test.argv().unwrap(),
            ["curl", "-f", "http://localhost/"]
        );
        assert_eq!(exec.timeout, Some(Duration::from_millis(500)));
        assert_eq!(exec.retries, Some(0));

        let shell = check(
            "      test: [\"CMD-SHELL\", \"pg_isready -U $${USER}\"]\n      start_period: 1m30s\n",
        )
        .unwrap();
        assert_eq!(
            shell.test,
            HealthTest::Shell("pg_isready -U ${USER}".into())
        );
        assert_eq!(
            shell.test.argv().unwrap(),
            ["/bin/sh", "-c", "pg_isready -U ${USER}"]
        );
        assert_eq!(shell.start_period, Some(Duration::from_secs(90)));

        assert_eq!(
            check("      test: [\"NONE\"]\n").unwrap().test,
            HealthTest::Disabled
        );
        assert_eq!(
            check("      disable: true\n").unwrap().test,
            HealthTest::Disabled
        );
        assert_eq!(HealthTest::Disabled.argv(), None);
        assert_eq!(
            check("      test: wget -q -O- localhost\n      start_interval: 2s\n")
                .unwrap()
                .test,
            HealthTest::Shell("wget -q -O- localhost".into())
        );

        for bad in [
            "      test: [\"CMD\"]\n",
            "      test: [\"CMD-SHELL\", \"a\", \"b\"]\n",
            "      test: [\"NONE\", \"x\"]\n",
            "      test: [\"RUN\", \"x\"]\n",
            "      test: \"\"\n",
            "      interval: 10s\n",
            "      test: [\"CMD\", \"true\"]\n      interval: 10\n",
            "      test: [\"CMD\", \"true\"]\n      interval: ten\n",
            "      test: [\"CMD\", \"true\"]\n      retries: -1\n",
            "      test: [\"CMD\", \"true\"]\n      probe: http\n",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn compose_durations() {
        for (text, expected) in [
            ("0", Duration::ZERO),
            ("500ms", Duration::from_millis(500)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5s", Duration::from_millis(1500)),
            (".5s", Duration::from_millis(500)),
            ("2h", Duration::from_secs(7200)),
            ("1h0m0.25s", Duration::from_millis(3_600_250)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("1.000000000000000000001s", Duration::from_secs(1)),
        ] {
            assert_eq!(parse_compose_duration(text), Some(expected), "{text}");
        }
        for bad in [
            "",
            "5",
            "s",
            "1x",
            "-1s",
            "1.2.3s",
            "1s ",
            " 1s",
            "1ss",
            ".s",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_compose_duration(bad), None, "{bad}");
        }
    }
}

//! What a notification event becomes: no floods (one message per outcome, at most one "still
//! failing" per service and environment an hour while it keeps failing) and no gaps (a
//! recovery message when it works again).

use wharf_wire::NotificationEvent;

/// How long repeated failures of one service stay quiet after a failure message.
pub const REPEAT_WINDOW_MS: i64 = 3600 * 1000;

/// What became of an event: sent as it is, sent marked, or kept quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Sent as it is.
    Sent,
    /// A failure after failures, more than the window after the last failure message: sent,
    /// marked as still failing.
    StillFailing,
    /// A failure after failures inside the window: recorded, not sent.
    Suppressed,
    /// `release.live` after failures: sent, marked as recovered.
    Recovered,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Sent => "sent",
            Disposition::StillFailing => "still_failing",
            Disposition::Suppressed => "suppressed",
            Disposition::Recovered => "recovered",
        }
    }

    pub fn parse(name: &str) -> Option<Disposition> {
        [
            Disposition::Sent,
            Disposition::StillFailing,
            Disposition::Suppressed,
            Disposition::Recovered,
        ]
        .into_iter()
        .find(|disposition| disposition.as_str() == name)
    }

    /// Whether the event becomes messages.
    pub fn is_sent(self) -> bool {
        self != Disposition::Suppressed
    }
}

/// What came before an event of a service in one environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServiceHistory {
    /// Whether the service's last outcome (a build's failure, a release's end) was a failure.
    pub failing: bool,
    /// When the last failure message of the service was sent (milliseconds).
    pub last_failure_message_at: Option<i64>,
}

/// What becomes of `event`, which happened at `at` (milliseconds), after `history`.
pub fn disposition(event: NotificationEvent, history: ServiceHistory, at: i64) -> Disposition {
    if event.is_failure() {
        if !history.failing {
            return Disposition::Sent;
        }
        match history.last_failure_message_at {
            Some(sent_at) if at - sent_at < REPEAT_WINDOW_MS => Disposition::Suppressed,
            _ => Disposition::StillFailing,
        }
    } else if event == NotificationEvent::ReleaseLive && history.failing {
        Disposition::Recovered
    } else {
        Disposition::Sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NotificationEvent::*;

    const HOUR: i64 = REPEAT_WINDOW_MS;

    #[test]
    fn a_first_failure_is_sent_and_repeats_inside_the_hour_are_suppressed() {
        let healthy = ServiceHistory::default();
        assert_eq!(
            disposition(ReleaseRolledBack, healthy, 0),
            Disposition::Sent
        );
        let failing = ServiceHistory {
            failing: true,
            last_failure_message_at: Some(1000),
        };
        assert_eq!(
            disposition(BuildFailed, failing, 2000),
            Disposition::Suppressed
        );
        assert_eq!(
            disposition(ReleaseFailed, failing, 1000 + HOUR - 1),
            Disposition::Suppressed
        );
        assert_eq!(
            disposition(ReleaseFailed, failing, 1000 + HOUR),
            Disposition::StillFailing
        );
    }

    #[test]
    fn live_after_failures_is_a_recovery_and_other_events_always_go() {
        let failing = ServiceHistory {
            failing: true,
            last_failure_message_at: Some(0),
        };
        assert_eq!(
            disposition(ReleaseLive, failing, 10),
            Disposition::Recovered
        );
        assert_eq!(
            disposition(ReleaseLive, ServiceHistory::default(), 10),
            Disposition::Sent
        );
        for event in [RolloutStuck, AgentOffline, AgentOnline, Test] {
            assert_eq!(disposition(event, failing, 10), Disposition::Sent);
        }
    }

    #[test]
    fn dispositions_read_back_from_their_names() {
        for disposition in [
            Disposition::Sent,
            Disposition::StillFailing,
            Disposition::Suppressed,
            Disposition::Recovered,
        ] {
            assert_eq!(Disposition::parse(disposition.as_str()), Some(disposition));
        }
        assert!(!Disposition::Suppressed.is_sent());
    }
}

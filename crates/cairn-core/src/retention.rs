//! How much run history to keep: the retention rule of each workflow (its
//! own `hist_retention_days` / `hist_retention_runs`, else the server's
//! global one) and which finished runs a rule lets go at a given time.
//!
//! Only finished runs ever expire: a rule decides which of a workflow's
//! finished runs are old enough, never that running work goes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::Timestamp;
use crate::spec::Retention;

/// A day, as retention counts them: 24 hours, whatever the calendar says.
pub const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Which finished runs of one workflow have expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Those that finished before this instant.
    FinishedBefore(Timestamp),
    /// Those older than the newest this many runs of the workflow (active
    /// runs count among the newest, but only finished ones expire).
    BeyondNewest(u32),
}

/// The retention rules in force: the global rule, the rules workflows set
/// for themselves, and the workflows whose rule cannot be known now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// For every workflow without a rule of its own, including workflows no
    /// longer defined; `None` keeps their runs forever.
    pub global: Option<Retention>,
    /// Rules set by the workflows themselves, by workflow name.
    pub own: BTreeMap<String, Retention>,
    /// Workflows whose definition is present but does not load: their own
    /// rule is unknown, so none of their runs expire until it loads again
    /// (guessing the global rule could delete runs the file means to keep).
    pub unknown: BTreeSet<String>,
}

impl Policy {
    /// A policy with only a global rule.
    pub fn global(rule: Option<Retention>) -> Policy {
        Policy { global: rule, ..Policy::default() }
    }

    /// The rule that applies to `workflow`: its own, else the global one.
    pub fn rule(&self, workflow: &str) -> Option<Retention> {
        if self.unknown.contains(workflow) {
            return None;
        }
        self.own.get(workflow).copied().or(self.global)
    }

    /// Which finished runs of `workflow` have expired at `now`; `None` when
    /// they are all kept.
    pub fn expiry(&self, workflow: &str, now: Timestamp) -> Option<Expiry> {
        self.rule(workflow).map(|rule| expiry(rule, now))
    }

    /// Whether any workflow's runs may expire at all (else a pass has
    /// nothing to look for).
    pub fn keeps_everything(&self) -> bool {
        self.global.is_none() && self.own.is_empty()
    }
}

/// What `rule` expires at `now`: `Days(n)` the runs finished more than `n`
/// days (of 24 hours) before `now`, `Runs(n)` those beyond the newest `n`.
pub fn expiry(rule: Retention, now: Timestamp) -> Expiry {
    match rule {
        Retention::Days(days) => {
            let age = i64::try_from(DAY.as_micros()).unwrap_or(i64::MAX).saturating_mul(i64::from(days));
            Expiry::FinishedBefore(Timestamp::from_micros(now.as_micros().saturating_sub(age)))
        }
        Retention::Runs(runs) => Expiry::BeyondNewest(runs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::from_jiff(text.parse().unwrap())
    }

    #[test]
    fn days_count_back_from_now_in_whole_days() {
        let now = at("2026-03-29T12:00:00Z");
        assert_eq!(
            expiry(Retention::Days(30), now),
            Expiry::FinishedBefore(at("2026-02-27T12:00:00Z")),
            "30 × 24 h, across a daylight-saving change in any zone"
        );
        assert_eq!(expiry(Retention::Days(0), now), Expiry::FinishedBefore(now), "0 days: all finished runs");
        assert_eq!(
            expiry(Retention::Days(100_000), now),
            Expiry::FinishedBefore(Timestamp::from_micros(now.as_micros() - 100_000 * 86_400_000_000)),
        );
        assert!(
            matches!(expiry(Retention::Days(u32::MAX), now), Expiry::FinishedBefore(at) if at.as_micros() < 0),
            "saturates before the epoch, keeping everything, never wraps into the future"
        );
        assert_eq!(expiry(Retention::Runs(7), now), Expiry::BeyondNewest(7));
    }

    #[test]
    fn a_workflows_own_rule_wins_over_the_global_one() {
        let now = at("2026-01-10T00:00:00Z");
        let policy = Policy {
            global: Some(Retention::Days(7)),
            own: BTreeMap::from([
                ("etl".to_owned(), Retention::Runs(100)),
                ("audit".to_owned(), Retention::Days(365)),
            ]),
            unknown: BTreeSet::from(["broken".to_owned()]),
        };
        assert_eq!(policy.rule("etl"), Some(Retention::Runs(100)));
        assert_eq!(policy.expiry("etl", now), Some(Expiry::BeyondNewest(100)));
        assert_eq!(policy.rule("audit"), Some(Retention::Days(365)));
        assert_eq!(
            policy.expiry("gone-from-the-catalog", now),
            Some(Expiry::FinishedBefore(at("2026-01-03T00:00:00Z"))),
            "a workflow without a rule of its own, or no longer defined, takes the global rule"
        );
        assert_eq!(policy.expiry("broken", now), None, "a definition that does not load keeps its runs");
        assert!(!policy.keeps_everything());
    }

    #[test]
    fn no_rule_anywhere_keeps_everything() {
        let policy = Policy::default();
        assert!(policy.keeps_everything());
        assert_eq!(policy.expiry("etl", at("2026-01-01T00:00:00Z")), None);
        let own_only =
            Policy { own: BTreeMap::from([("etl".to_owned(), Retention::Runs(3))]), ..Policy::default() };
        assert!(!own_only.keeps_everything());
        assert_eq!(own_only.rule("etl"), Some(Retention::Runs(3)));
        assert_eq!(own_only.rule("other"), None, "no global rule: other workflows keep everything");
        assert_eq!(Policy::global(Some(Retention::Runs(1))).rule("any"), Some(Retention::Runs(1)));
    }
}

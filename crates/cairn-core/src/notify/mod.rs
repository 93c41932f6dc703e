//! Notifications: the server config's alert rules (which events go to which
//! webhooks or to the log), the webhooks themselves, the schedule of the
//! status report, and the notifications made of live events, each with the
//! stable key that lets it be delivered once however often it is announced.
//!
//! The config is YAML read with serde-saphyr, unknown keys refused, and
//! validated completely: every problem is reported with file:line:column and
//! the field at fault. No I/O here: the caller reads the file and hands over
//! the environment (for `secret_env`) as a function.
//!
//! A notification's JSON body:
//!
//! ```json
//! {"kind":"run_failed","key":"run_failed:01J…","workflow":"etl","at":"2026-11-20T22:16:28.123456Z",
//!  "data":{"run_id":"01J…","workflow":"etl","from":"RUNNING","to":"FAILED","at":"…",
//!          "reason":"step load failed","actor":"scheduler"}}
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::Timestamp;
use crate::auth::WorkflowScope;
use crate::event::{Event, RunEvent};
use crate::record::Actor;
use crate::status::{RunStatus, TaskStatus};

/// What a notification is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyKind {
    /// A run ended FAILED.
    RunFailed,
    /// The reaper ended an attempt whose heartbeats stopped ("heartbeat lost").
    TaskReaped,
    /// A running attempt's progress predicts it will pass its timeout.
    OverrunPredicted,
    /// An anomaly alert was raised or resolved.
    Anomaly,
    /// A run COMPLETED after the previous finished run of its workflow FAILED.
    RunRecovered,
    /// The scheduled status report (see [`ReportSchedule`]); not for `on`.
    Report,
}

impl NotifyKind {
    /// The kinds an alert rule may name in `on`.
    pub const RULED: [NotifyKind; 5] = [
        NotifyKind::RunFailed,
        NotifyKind::TaskReaped,
        NotifyKind::OverrunPredicted,
        NotifyKind::Anomaly,
        NotifyKind::RunRecovered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::RunFailed => "run_failed",
            NotifyKind::TaskReaped => "task_reaped",
            NotifyKind::OverrunPredicted => "overrun_predicted",
            NotifyKind::Anomaly => "anomaly",
            NotifyKind::RunRecovered => "run_recovered",
            NotifyKind::Report => "report",
        }
    }
}

impl fmt::Display for NotifyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// An event kind an alert rule cannot name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an event kind: expected run_failed, task_reaped, overrun_predicted, anomaly or run_recovered"
)]
pub struct BadKind(pub String);

impl FromStr for NotifyKind {
    type Err = BadKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NotifyKind::RULED.into_iter().find(|k| k.as_str() == s.trim()).ok_or_else(|| BadKind(s.to_owned()))
    }
}

/// Where a notification goes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// One structured line in the server's log.
    Log,
    /// The webhook of this name.
    Webhook(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Log => f.write_str("log"),
            Target::Webhook(name) => f.write_str(name),
        }
    }
}

/// A webhook's signing secret; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Attempts at one delivery when the config does not say.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// The most attempts a webhook may ask for.
pub const MAX_MAX_ATTEMPTS: u32 = 100;

/// A receiver of notifications.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub name: String,
    /// `http://` or `https://`.
    pub url: String,
    pub secret: Secret,
    /// Attempts before giving up, at least 1.
    pub max_attempts: u32,
}

/// Which events go where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRule {
    pub name: String,
    pub on: Vec<NotifyKind>,
    /// Only the workflows this pattern matches; all when `None`.
    pub workflows: Option<WorkflowScope>,
    pub to: Vec<Target>,
}

impl AlertRule {
    pub fn matches(&self, kind: NotifyKind, workflow: Option<&str>) -> bool {
        self.on.contains(&kind)
            && match (&self.workflows, workflow) {
                (None, _) => true,
                (Some(scope), Some(w)) => scope.matches(w),
                (Some(_), None) => false,
            }
    }
}

/// How often the status report goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportEvery {
    /// Every day at `at`, for the day that ends then.
    Daily,
    /// Every Monday at `at`, for the week that ends then.
    Weekly,
}

/// When the status report goes out, and to whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportSchedule {
    pub every: ReportEvery,
    /// UTC hour and minute.
    pub at: (u8, u8),
    pub to: Vec<Target>,
}

impl ReportSchedule {
    /// The first time the report is due strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Timestamp {
        let zoned = after.to_jiff().to_zoned(jiff::tz::TimeZone::UTC);
        let date = zoned.date();
        let (h, m) = (i8::try_from(self.at.0).unwrap_or(0), i8::try_from(self.at.1).unwrap_or(0));
        for days in 0..=7 {
            let Ok(day) = date.checked_add(jiff::Span::new().days(days)) else { break };
            if self.every == ReportEvery::Weekly && day.weekday() != jiff::civil::Weekday::Monday {
                continue;
            }
            let Ok(due) = day.at(h, m, 0, 0).to_zoned(jiff::tz::TimeZone::UTC) else { continue };
            let due = Timestamp::from_jiff(due.timestamp());
            if due > after {
                return due;
            }
        }
        // Unreachable for any date jiff represents; a far time stops the schedule.
        Timestamp::from_micros(i64::MAX)
    }
}

/// The notification part of the server config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyConfig {
    pub webhooks: Vec<Webhook>,
    pub alerts: Vec<AlertRule>,
    pub report: Option<ReportSchedule>,
}

impl NotifyConfig {
    pub fn webhook(&self, name: &str) -> Option<&Webhook> {
        self.webhooks.iter().find(|w| w.name == name)
    }

    /// Every target of the rules that match, each once.
    pub fn targets(&self, kind: NotifyKind, workflow: Option<&str>) -> BTreeSet<&Target> {
        self.alerts.iter().filter(|r| r.matches(kind, workflow)).flat_map(|r| r.to.iter()).collect()
    }

    /// Whether any rule listens for `kind`.
    pub fn wants(&self, kind: NotifyKind) -> bool {
        self.alerts.iter().any(|r| r.on.contains(&kind))
    }

    /// Parses and validates the config text of `file`; `env` answers the
    /// environment variables that `secret_env` names.
    pub fn parse(
        source: &str,
        file: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigErrors> {
        // Comments only, or nothing: no notifications.
        if source.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
            return Ok(NotifyConfig::default());
        }
        // The path of a field serde refuses (unknown, wrong shape), which
        // serde-saphyr's error does not carry.
        let mut path = None;
        let parsed = serde_saphyr::with_deserializer_from_str_with_options(
            source,
            serde_saphyr::options! { strict_booleans: true },
            |de| {
                serde_path_to_error::deserialize::<_, RawConfig>(de).map_err(|e| {
                    path = Some(e.path().to_string());
                    e.into_inner()
                })
            },
        );
        let raw = parsed.map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            let rendered = e.render_with_options(serde_saphyr::render_options! {
                formatter: &serde_saphyr::UserMessageFormatter,
                snippets: serde_saphyr::SnippetMode::Off,
            });
            let message = match rendered.rfind(" at line ") {
                Some(i) => rendered[..i].to_owned(),
                None => rendered,
            };
            // `value` is the field of the `Spanned` wrappers, not of the file.
            let field = path
                .map(|p| {
                    p.split('.')
                        .filter(|part| !part.is_empty() && *part != "value")
                        .collect::<Vec<_>>()
                        .join(".")
                })
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "(document)".to_owned());
            ConfigErrors(vec![ConfigError { file: file.to_owned(), line, column, field, message }])
        })?;
        let mut v = Validator { file, errors: Vec::new() };
        let config = v.config(raw, &env);
        if v.errors.is_empty() { Ok(config) } else { Err(ConfigErrors(v.errors)) }
    }
}

/// One problem in the config.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {field}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// The field at fault, as a path: `webhooks[0].url`.
    pub field: String,
    pub message: String,
}

/// Every problem in the config, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    webhooks: Vec<Spanned<RawWebhook>>,
    #[serde(default)]
    alerts: Vec<Spanned<RawRule>>,
    report: Option<Spanned<RawReport>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    name: Spanned<String>,
    url: Spanned<String>,
    secret_env: Option<Spanned<String>>,
    secret: Option<Spanned<String>>,
    max_attempts: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    on: Vec<Spanned<String>>,
    workflows: Option<Spanned<String>>,
    to: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReport {
    every: Spanned<String>,
    at: Spanned<String>,
    to: Vec<Spanned<String>>,
}

struct Validator<'f> {
    file: &'f str,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn error<T>(&mut self, at: &Spanned<T>, field: String, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line: at.referenced.line(),
            column: at.referenced.column(),
            field,
            message: message.into(),
        });
    }

    fn config(&mut self, raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> NotifyConfig {
        let mut webhooks: Vec<Webhook> = Vec::new();
        // Every name declared, valid webhook or not: a rule naming a broken
        // webhook is not reported a second time.
        let mut names: BTreeSet<String> = BTreeSet::new();
        for (i, w) in raw.webhooks.into_iter().enumerate() {
            let name = w.value.name.clone();
            if !names.insert(name.value.trim().to_owned()) {
                let message = format!("the webhook name {:?} is used twice", name.value.trim());
                self.error(&name, format!("webhooks[{i}].name"), message);
                continue;
            }
            if let Some(w) = self.webhook(i, w.value, env) {
                webhooks.push(w);
            }
        }
        let mut alerts: Vec<AlertRule> = Vec::new();
        let mut rule_names = BTreeSet::new();
        for (i, r) in raw.alerts.into_iter().enumerate() {
            let r = r.value;
            let field = format!("alerts[{i}]");
            let name = self.name(&r.name, &format!("{field}.name"));
            if !name.is_empty() && !rule_names.insert(name.clone()) {
                self.error(
                    &r.name,
                    format!("{field}.name"),
                    format!("the alert rule name {name:?} is used twice"),
                );
            }
            let mut on = Vec::new();
            if r.on.is_empty() {
                self.error(&r.name, format!("{field}.on"), "list at least one event kind");
            }
            for (j, k) in r.on.iter().enumerate() {
                match k.value.parse::<NotifyKind>() {
                    Ok(kind) if !on.contains(&kind) => on.push(kind),
                    Ok(_) => {}
                    Err(e) => self.error(k, format!("{field}.on[{j}]"), e.to_string()),
                }
            }
            let workflows = r.workflows.as_ref().and_then(|p| match WorkflowScope::parse(&p.value) {
                Ok(scope) => Some(scope),
                Err(e) => {
                    self.error(p, format!("{field}.workflows"), e.to_string());
                    None
                }
            });
            let to = self.targets(&r.to, &r.name, &field, &names);
            alerts.push(AlertRule { name, on, workflows, to });
        }
        let report = raw.report.map(|r| {
            let r = r.value;
            let every = match r.every.value.trim() {
                "daily" => ReportEvery::Daily,
                "weekly" => ReportEvery::Weekly,
                other => {
                    self.error(
                        &r.every,
                        "report.every".into(),
                        format!("{other:?} is not a period: expected daily or weekly"),
                    );
                    ReportEvery::Daily
                }
            };
            let at = parse_hhmm(&r.at.value).unwrap_or_else(|| {
                self.error(
                    &r.at,
                    "report.at".into(),
                    format!("{:?} is not a time: expected HH:MM in UTC, like \"07:00\"", r.at.value),
                );
                (0, 0)
            });
            let to = self.targets(&r.to, &r.every, "report", &names);
            ReportSchedule { every, at, to }
        });
        NotifyConfig { webhooks, alerts, report }
    }

    fn name(&mut self, name: &Spanned<String>, field: &str) -> String {
        let n = name.value.trim();
        if n.is_empty() || n.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.error(
                name,
                field.to_owned(),
                format!("{:?} is not a name: use letters, digits, - or _", name.value),
            );
            return String::new();
        }
        n.to_owned()
    }

    fn targets(
        &mut self,
        to: &[Spanned<String>],
        owner: &Spanned<String>,
        field: &str,
        webhooks: &BTreeSet<String>,
    ) -> Vec<Target> {
        if to.is_empty() {
            self.error(owner, format!("{field}.to"), "list at least one target: a webhook's name, or log");
        }
        let mut targets = Vec::new();
        for (j, t) in to.iter().enumerate() {
            let target = match t.value.trim() {
                "log" => Target::Log,
                name if webhooks.contains(name) => Target::Webhook(name.to_owned()),
                name => {
                    let known: Vec<&str> = webhooks.iter().map(String::as_str).chain(["log"]).collect();
                    self.error(
                        t,
                        format!("{field}.to[{j}]"),
                        format!(
                            "{name:?} is not a webhook of this config: expected one of {}",
                            known.join(", ")
                        ),
                    );
                    continue;
                }
            };
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
        targets
    }

    fn webhook(&mut self, i: usize, w: RawWebhook, env: &dyn Fn(&str) -> Option<String>) -> Option<Webhook> {
        let field = format!("webhooks[{i}]");
        let name = self.name(&w.name, &format!("{field}.name"));
        let before = self.errors.len();
        if name == "log" {
            self.error(
                &w.name,
                format!("{field}.name"),
                "\"log\" names the server's log: choose another name",
            );
        }
        if !check_url(&w.url.value) {
            self.error(
                &w.url,
                format!("{field}.url"),
                format!("{:?} is not a URL: expected http://host/path or https://host/path", w.url.value),
            );
        }
        let secret = match (&w.secret_env, &w.secret) {
            (Some(_), Some(s)) => {
                self.error(s, format!("{field}.secret"), "give secret_env or secret, not both");
                None
            }
            (None, None) => {
                self.error(&w.name, format!("{field}.secret_env"), "every delivery is signed: give secret_env (the name of an environment variable holding the secret) or secret");
                None
            }
            (Some(var), None) => match env(var.value.trim()) {
                Some(s) if !s.is_empty() => Some(Secret(s)),
                _ => {
                    self.error(
                        var,
                        format!("{field}.secret_env"),
                        format!(
                            "the environment variable {} is not set: set it to the webhook's secret",
                            var.value.trim()
                        ),
                    );
                    None
                }
            },
            (None, Some(s)) if s.value.is_empty() => {
                self.error(s, format!("{field}.secret"), "the secret is empty");
                None
            }
            (None, Some(s)) => Some(Secret(s.value.clone())),
        };
        let max_attempts = match &w.max_attempts {
            None => DEFAULT_MAX_ATTEMPTS,
            Some(m) if (1..=MAX_MAX_ATTEMPTS).contains(&m.value) => m.value,
            Some(m) => {
                self.error(
                    m,
                    format!("{field}.max_attempts"),
                    format!("{} is out of range: expected 1 to {MAX_MAX_ATTEMPTS}", m.value),
                );
                DEFAULT_MAX_ATTEMPTS
            }
        };
        // Names are checked against the webhooks accepted so far by the caller.
        if self.errors.len() > before || name.is_empty() {
            return None;
        }
        Some(Webhook { name, url: w.url.value.trim().to_owned(), secret: secret?, max_attempts })
    }
}

fn check_url(url: &str) -> bool {
    let url = url.trim();
    let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty() && !host.starts_with(':') && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn parse_hhmm(s: &str) -> Option<(u8, u8)> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m) = (h.parse::<u8>().ok()?, m.parse::<u8>().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

/// A notification to route: what, about which workflow, when, and the data
/// of its JSON body.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notification {
    pub kind: NotifyKind,
    /// Stable across servers and restarts: the outbox delivers each key once
    /// per webhook.
    pub key: String,
    pub workflow: Option<String>,
    pub at: Timestamp,
    pub data: serde_json::Value,
}

impl Notification {
    /// The JSON text posted to webhooks.
    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The notification a live event makes by itself, if any: a failed run,
    /// a reaped attempt, a predicted overrun, an alert raised or resolved.
    /// ([`Notification::recovered`] needs the run's history; a predicted
    /// overrun repeats with each progress report, the key keeps it once.)
    pub fn from_event(event: &Event) -> Option<Notification> {
        match event {
            Event::Run(e) if e.to == RunStatus::Failed => Some(Notification {
                kind: NotifyKind::RunFailed,
                key: format!("run_failed:{}", e.run_id),
                workflow: Some(e.workflow.clone()),
                at: e.at,
                data: json(e),
            }),
            Event::Transition(e) if e.actor == Actor::Reaper && e.from == Some(TaskStatus::Running) => {
                Some(Notification {
                    kind: NotifyKind::TaskReaped,
                    key: format!("task_reaped:{}:{}", e.task_id, e.attempt),
                    workflow: Some(e.workflow.clone()),
                    at: e.at,
                    data: json(e),
                })
            }
            Event::Progress(e) if e.overrun_predicted => Some(Notification {
                kind: NotifyKind::OverrunPredicted,
                key: format!("overrun_predicted:{}:{}", e.task_id, e.attempt),
                workflow: Some(e.workflow.clone()),
                at: e.at,
                data: json(e),
            }),
            Event::Alert { alert } => {
                let (state, at) = match alert.resolved_at {
                    Some(at) => ("resolved", at),
                    None => ("raised", alert.raised_at),
                };
                Some(Notification {
                    kind: NotifyKind::Anomaly,
                    key: format!("anomaly:{}:{state}", alert.id),
                    workflow: Some(alert.workflow.clone()),
                    at,
                    data: serde_json::json!({ "state": state, "alert": alert }),
                })
            }
            _ => None,
        }
    }

    /// A run that COMPLETED after `previous`, its workflow's previous
    /// finished run, FAILED.
    pub fn recovered(run: &RunEvent, previous: crate::RunId) -> Notification {
        Notification {
            kind: NotifyKind::RunRecovered,
            key: format!("run_recovered:{}", run.run_id),
            workflow: Some(run.workflow.clone()),
            at: run.at,
            data: serde_json::json!({ "run": run, "previous_failed_run_id": previous }),
        }
    }
}

fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests;

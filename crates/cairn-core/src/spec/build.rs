//! From the YAML tree to a [`Workflow`]: the workflow's own keys, the
//! `steps` list with Dagu's chain rule and parallel groups, generated step
//! names, handlers, and the checks that need the whole file.

use std::collections::HashSet;
use std::path::Path;
use std::sync::LazyLock;

use croner::parser::{CronParser, Seconds, Year};
use regex::Regex;

use super::condition;
use super::error::{SpecError, did_you_mean};
use super::graph;
use super::keys;
use super::model::{
    Action, HandlerKind, Handlers, Label, OverlapPolicy, Retention, Schedule, Schedules, Shell, StepIndex,
    Workflow, WorkflowKind,
};
use super::params;
use super::step::{self, Defaults, Draft, StepContext, parse_env, parse_retry, parse_shell, seconds};
use super::yaml::{Diags, Node, Value, index, join};

static WORKFLOW_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_.-]+$").expect("valid regex"));

/// Builds and validates a workflow from its YAML tree.
pub(crate) fn build(root: &Node, file: Option<&Path>, d: &mut Diags) -> Option<Workflow> {
    if root.is_null() {
        d.error_hint(root.pos, "", "the workflow file is empty", "a workflow needs `steps:`".to_owned());
        return None;
    }
    let f = d.fields(root, "", &keys::WORKFLOW)?;
    let text = |k: &str, d: &mut Diags| {
        f.get(k).and_then(|n| d.string(n, k)).map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
    };

    let name = match text("name", d) {
        Some(n) => {
            if !WORKFLOW_NAME.is_match(&n) || n.len() > 40 || n == "." || n == ".." {
                d.error_hint(
                    f.key_pos("name"),
                    "name",
                    format!("invalid workflow name \"{n}\""),
                    "use up to 40 letters, digits, `_`, `.` and `-`".to_owned(),
                );
            }
            n
        }
        None => file
            .and_then(|p| p.file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "workflow".to_owned()),
    };

    let kind = match text("type", d).as_deref() {
        None | Some("chain") => WorkflowKind::Chain,
        Some("graph") => WorkflowKind::Graph,
        Some(other) => {
            d.error_hint(
                f.key_pos("type"),
                "type",
                format!("unknown workflow type \"{other}\""),
                did_you_mean(other, ["chain", "graph"]).or_else(|| Some("use `chain` or `graph`".to_owned())),
            );
            WorkflowKind::Chain
        }
    };

    let params = f.get("params").map(|n| params::parse(n, "params", d)).unwrap_or_default();
    let env = f.get("env").map(|n| parse_env(n, "env", d)).unwrap_or_default();
    let dotenv = match f.get("dotenv") {
        Some(n) => d.string_list(n, "dotenv").unwrap_or_default(),
        None => vec![".env".to_owned()],
    };
    let schedule = f.get("schedule").map(|n| parse_schedules(n, "schedule", d)).unwrap_or_default();
    let duration = |k: &str, d: &mut Diags| f.get(k).and_then(|n| seconds(n, k, d)).filter(|t| !t.is_zero());
    let timeout = duration("timeout_sec", d);
    let delay = duration("delay_sec", d);
    let restart_wait = duration("restart_wait_sec", d);
    let max_clean_up_time = duration("max_clean_up_time_sec", d);
    let max_active_steps = f
        .get("max_active_steps")
        .and_then(|n| d.int(n, "max_active_steps"))
        .filter(|&n| n > 0)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    // Dagu: absent or 0 means 1, a negative number means no limit.
    let max_active_runs = match f.get("max_active_runs").and_then(|n| d.int(n, "max_active_runs")) {
        None | Some(0) => Some(1),
        Some(n) if n < 0 => None,
        Some(n) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
    };
    let max_output_size =
        f.get("max_output_size").and_then(|n| d.uint(n, "max_output_size")).filter(|&n| n > 0);
    let skip_if_successful =
        f.get("skip_if_successful").and_then(|n| d.bool(n, "skip_if_successful")).unwrap_or(false);
    let keep_details = f.get("keep_details").and_then(|n| d.bool(n, "keep_details")).unwrap_or(false);
    let overlap = f.get("overlap_policy").map(|n| parse_overlap(n, "overlap_policy", d)).unwrap_or_default();
    let catchup_window = f.get("catchup_window").and_then(|n| parse_window(n, "catchup_window", d));
    let preconditions =
        f.get("preconditions").map(|n| condition::parse_list(n, "preconditions", d)).unwrap_or_default();
    let shell = f.get("shell").and_then(|n| parse_shell(n, "shell", d));
    let working_dir = text("working_dir", d);
    let labels = match (f.get("labels"), f.get("tags")) {
        (Some(n), _) => parse_labels(n, "labels", d),
        (None, Some(n)) => parse_labels(n, "tags", d),
        (None, None) => Vec::new(),
    };
    let history = match (f.get("hist_retention_days"), f.get("hist_retention_runs")) {
        (Some(_), Some(_)) => {
            d.error_hint(
                f.key_pos("hist_retention_runs"),
                "hist_retention_runs",
                "hist_retention_days and hist_retention_runs cannot both be set",
                "keep one of them".to_owned(),
            );
            None
        }
        (Some(n), None) => d.uint(n, "hist_retention_days").map(|v| Retention::Days(clamp_u32(v))),
        (None, Some(n)) => d.uint(n, "hist_retention_runs").map(|v| Retention::Runs(clamp_u32(v))),
        (None, None) => None,
    };
    let log_dir = text("log_dir", d);
    let queue = text("queue", d);
    let run_retry = f.get("retry_policy").and_then(|n| parse_retry(n, "retry_policy", true, d));
    let defaults = f.get("defaults").map(|n| step::parse_defaults(n, "defaults", d)).unwrap_or_default();
    let direct = matches!(shell, Some(Shell::Direct));

    let mut drafts = match f.get("steps") {
        Some(n) => read_steps(n, kind, &defaults, direct, d),
        None => Vec::new(),
    };
    if drafts.is_empty() && d.errors.is_empty() {
        d.error_hint(
            f.key_pos("steps").or(root.pos),
            "steps",
            "the workflow has no steps",
            "add `steps:` with at least one command".to_owned(),
        );
    }
    let order = graph::link(&mut drafts, d);

    let handlers = match f.get("handler_on") {
        Some(n) => read_handlers(n, &defaults, direct, d),
        None => Handlers::default(),
    };

    if !d.errors.is_empty() {
        return None;
    }
    Some(Workflow {
        name,
        description: text("description", d),
        group: text("group", d),
        file: file.map(Path::to_path_buf),
        kind,
        params,
        env,
        dotenv,
        schedule,
        timeout,
        delay,
        restart_wait,
        max_clean_up_time,
        max_active_steps,
        max_active_runs,
        max_output_size,
        skip_if_successful,
        keep_details,
        overlap,
        catchup_window,
        preconditions,
        shell,
        working_dir,
        labels,
        history,
        log_dir,
        queue,
        run_retry,
        steps: drafts.into_iter().map(|dr| dr.step).collect(),
        handlers,
        order,
        warnings: std::mem::take(&mut d.warnings),
    })
}

/// Reads `overlap_policy`: `skip`, `all` or `latest`.
fn parse_overlap(node: &Node, path: &str, d: &mut Diags) -> OverlapPolicy {
    let Some(text) = d.string(node, path) else { return OverlapPolicy::default() };
    let text = text.trim();
    OverlapPolicy::parse(text).unwrap_or_else(|| {
        d.error_hint(
            node.pos,
            path,
            format!("unknown overlap policy \"{text}\""),
            did_you_mean(text, OverlapPolicy::NAMES)
                .or_else(|| Some("use `skip`, `all` or `latest`".to_owned())),
        );
        OverlapPolicy::default()
    })
}

/// Reads a duration written as Dagu writes `catchup_window`: numbers with
/// units `d`, `h`, `m`, `s`, e.g. `"6h"`, `"2d12h"`, `"1h30m"`. Zero means none.
fn parse_window(node: &Node, path: &str, d: &mut Diags) -> Option<std::time::Duration> {
    let text = d.string(node, path)?;
    match parse_duration(text.trim()) {
        Some(t) if t.is_zero() => None,
        Some(t) => Some(t),
        None => {
            d.error_hint(
                node.pos,
                path,
                format!("invalid duration \"{}\"", text.trim()),
                "use a number with a unit `d`, `h`, `m` or `s`, e.g. \"6h\" or \"2d12h\"".to_owned(),
            );
            None
        }
    }
}

fn parse_duration(text: &str) -> Option<std::time::Duration> {
    if text.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let n: u64 = number.parse().ok()?;
        let unit = tail.chars().next()?;
        let seconds = match unit {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(seconds)?)?;
        rest = &tail[unit.len_utf8()..];
    }
    Some(std::time::Duration::from_secs(total))
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Reads `steps`: a list (members of a nested list form a parallel group) or
/// a map of name to step. In a chain each step depends on the step (or all
/// members of the group) before it.
fn read_steps(
    node: &Node,
    kind: WorkflowKind,
    defaults: &Defaults,
    direct: bool,
    d: &mut Diags,
) -> Vec<Draft> {
    let ctx = StepContext { defaults, handler: None, direct };
    let mut drafts: Vec<Draft> = Vec::new();
    let mut taken: HashSet<String> = HashSet::new();
    match &node.value {
        Value::Seq(items) => {
            let mut previous: Vec<usize> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let members: Vec<(&Node, String)> = match &item.value {
                    Value::Seq(group) => {
                        if group.is_empty() {
                            d.error(item.pos, &index("steps", i), "the parallel group is empty");
                        }
                        group.iter().enumerate().map(|(j, n)| (n, index(&index("steps", i), j))).collect()
                    }
                    _ => vec![(item, index("steps", i))],
                };
                let mut group_indices = Vec::new();
                for (member, path) in members {
                    let Some(mut draft) = step::read_step(member, &path, &ctx, d) else { continue };
                    // Dagu numbers generated names by the position in `steps`, moving
                    // past names already taken (so group members count too).
                    name_step(&mut draft, i + 1, &mut taken);
                    if kind == WorkflowKind::Chain {
                        if let Some(pos) = draft.depends_pos {
                            d.error_hint(
                                pos,
                                &join(&draft.path, "depends"),
                                "depends is not allowed when the workflow type is chain (the default)",
                                "in a chain each step runs after the previous one; set `type: graph` to declare dependencies".to_owned(),
                            );
                            draft.depends.clear();
                        }
                        draft.step.depends = previous.iter().map(|&p| StepIndex(p)).collect();
                    }
                    group_indices.push(drafts.len());
                    drafts.push(draft);
                }
                if !group_indices.is_empty() {
                    previous = group_indices;
                }
            }
        }
        Value::Map(entries) => {
            // Dagu sorts steps given as a map by name.
            let mut entries: Vec<&(Node, Node)> = entries.iter().collect();
            entries.sort_by_key(|(k, _)| k.scalar_text().unwrap_or_default());
            for (k, v) in entries {
                let Some(name) = k.scalar_text() else {
                    d.expected(k, "steps", "a step name");
                    continue;
                };
                let path = join("steps", &name);
                let Some(mut draft) = step::read_step(v, &path, &ctx, d) else { continue };
                draft.step.name = name.clone();
                taken.insert(name);
                if kind == WorkflowKind::Chain
                    && let Some(pos) = draft.depends_pos
                {
                    d.error_hint(
                        pos,
                        &join(&draft.path, "depends"),
                        "depends is not allowed when the workflow type is chain (the default)",
                        "set `type: graph` to declare dependencies".to_owned(),
                    );
                    draft.depends.clear();
                }
                drafts.push(draft);
            }
        }
        _ => d.expected(node, "steps", "a list of steps"),
    }
    drafts
}

/// Gives a step without `name` its id, else Dagu's `cmd_N` / `script_N`.
fn name_step(draft: &mut Draft, position: usize, taken: &mut HashSet<String>) {
    if draft.step.name.is_empty() {
        draft.step.name = match &draft.step.id {
            Some(id) => id.clone(),
            None => {
                let prefix = match draft.step.action {
                    Action::Script { .. } => "script",
                    Action::Commands(_) | Action::Exec { .. } => "cmd",
                    Action::Task { .. } => "task",
                };
                let mut n = position;
                while taken.contains(&format!("{prefix}_{n}")) {
                    n += 1;
                }
                format!("{prefix}_{n}")
            }
        };
    }
    taken.insert(draft.step.name.clone());
}

fn read_handlers(node: &Node, defaults: &Defaults, direct: bool, d: &mut Diags) -> Handlers {
    let mut handlers = Handlers::default();
    let Some(f) = d.fields(node, "handler_on", &keys::HANDLER_ON) else {
        return handlers;
    };
    let kinds = [
        ("init", HandlerKind::Init),
        ("success", HandlerKind::Success),
        ("failure", HandlerKind::Failure),
        ("abort", HandlerKind::Abort),
        ("exit", HandlerKind::Exit),
    ];
    for (key, kind) in kinds {
        let Some(n) = f.get(key) else { continue };
        let ctx = StepContext { defaults, handler: Some(kind), direct };
        let step = step::read_step(n, &join("handler_on", key), &ctx, d).map(|dr| dr.step);
        match kind {
            HandlerKind::Init => handlers.init = step,
            HandlerKind::Success => handlers.success = step,
            HandlerKind::Failure => handlers.failure = step,
            HandlerKind::Abort => handlers.abort = step,
            HandlerKind::Exit => handlers.exit = step,
        }
    }
    handlers
}

/// Reads `schedule`: a cron expression, a list of them, or a map of
/// `start`, `stop` and `restart` lists.
fn parse_schedules(node: &Node, path: &str, d: &mut Diags) -> Schedules {
    let mut out = Schedules::default();
    if let Value::Map(_) = node.value {
        let Some(f) = d.fields(node, path, &keys::SCHEDULE) else { return out };
        for (key, list) in [("start", &mut out.start), ("stop", &mut out.stop), ("restart", &mut out.restart)]
        {
            if let Some(n) = f.get(key) {
                *list = parse_cron_list(n, &join(path, key), d);
            }
        }
        return out;
    }
    out.start = parse_cron_list(node, path, d);
    out
}

fn parse_cron_list(node: &Node, path: &str, d: &mut Diags) -> Vec<Schedule> {
    let items: Vec<(&Node, String)> = match &node.value {
        Value::Seq(items) => items.iter().enumerate().map(|(i, n)| (n, index(path, i))).collect(),
        _ => vec![(node, path.to_owned())],
    };
    let mut out = Vec::new();
    for (n, p) in items {
        let Some(text) = n.as_str() else {
            d.expected(n, &p, "a cron expression such as \"0 6 * * *\"");
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        match parse_cron(text) {
            Ok(s) => out.push(s),
            Err(e) => {
                let hint = if e.starts_with("unknown time zone") {
                    "use an IANA time zone name, e.g. \"CRON_TZ=Europe/Paris 30 6 * * 1-5\""
                } else {
                    "use five fields: minute hour day-of-month month day-of-week, e.g. \"30 6 * * 1-5\""
                };
                d.error_hint(
                    n.pos,
                    &p,
                    format!("invalid cron expression \"{}\": {e}", text.trim()),
                    hint.to_owned(),
                )
            }
        }
    }
    out
}

/// A five-field cron expression, optionally after `CRON_TZ=<zone>` or `TZ=<zone>`.
pub(crate) fn parse_cron(text: &str) -> Result<Schedule, String> {
    let normalized = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let (timezone, expr) = match normalized.split_once(' ') {
        Some((first, rest)) if first.starts_with("CRON_TZ=") || first.starts_with("TZ=") => {
            let zone = first.split_once('=').map(|(_, z)| z.to_owned()).unwrap_or_default();
            if zone.is_empty() {
                return Err("the time zone is empty".to_owned());
            }
            if jiff::tz::TimeZone::get(&zone).is_err() {
                return Err(format!("unknown time zone \"{zone}\""));
            }
            (Some(zone), rest.to_owned())
        }
        _ => (None, normalized),
    };
    // Dagu's five fields; a sixth, first, gives seconds (Cairn's extension).
    let fields = expr.split(' ').count();
    if !expr.starts_with('@') && !(5..=6).contains(&fields) {
        return Err(format!("expected 5 fields (or 6, seconds first), found {fields}"));
    }
    let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
    let cron = parser.parse(&expr).map_err(|e| cron_message(&e))?;
    Ok(Schedule { expr, timezone, cron })
}

/// croner's message without its category prefix, e.g. "number out of bounds".
fn cron_message(e: &croner::errors::CronError) -> String {
    let text = e.to_string();
    let text = ["Component error: ", "Invalid pattern: ", "Pattern contains illegal characters: "]
        .iter()
        .fold(text.as_str(), |t, prefix| t.strip_prefix(prefix).unwrap_or(t))
        .trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => "invalid expression".to_owned(),
    }
}

/// Reads `labels` (or `tags`): `a,b`, `k=v k2=v2`, a list, or a map.
fn parse_labels(node: &Node, path: &str, d: &mut Diags) -> Vec<Label> {
    let mut out = Vec::new();
    let mut push = |entry: &str| {
        let (k, v) = match entry.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (entry, None),
        };
        let key = k.trim().to_lowercase();
        if !key.is_empty() {
            let value = v.map(|v| v.trim().to_lowercase()).filter(|v| !v.is_empty());
            out.push(Label { key, value });
        }
    };
    match &node.value {
        Value::Map(entries) => {
            for (k, v) in entries {
                match (k.scalar_text(), v.scalar_text().or_else(|| v.is_null().then(String::new))) {
                    (Some(k), Some(v)) => push(&format!("{k}={v}")),
                    _ => d.expected(v, path, "`key: value` labels"),
                }
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                match &item.value {
                    Value::Map(entries) => {
                        for (k, v) in entries {
                            match (k.scalar_text(), v.scalar_text()) {
                                (Some(k), Some(v)) => push(&format!("{k}={v}")),
                                _ => d.expected(v, &index(path, i), "a label"),
                            }
                        }
                    }
                    _ => match item.scalar_text() {
                        Some(s) => push(&s),
                        None => d.expected(item, &index(path, i), "a label"),
                    },
                }
            }
        }
        _ => match node.scalar_text() {
            Some(s) => {
                let s = s.trim();
                if s.contains('=') && s.contains(' ') && !s.contains(',') {
                    s.split_whitespace().for_each(&mut push);
                } else {
                    s.split(',').for_each(&mut push);
                }
            }
            None => d.expected(node, path, "labels"),
        },
    }
    out
}

/// Parses and validates `source`; `display` names the file in diagnostics.
pub(crate) fn parse_source(
    source: &str,
    file: Option<&Path>,
    display: Option<String>,
) -> Result<Workflow, SpecError> {
    let root = super::yaml::parse(source, display.as_deref()).map_err(SpecError::single)?;
    let mut d = Diags::new(display);
    match build(&root, file, &mut d) {
        Some(w) if d.errors.is_empty() => Ok(w),
        _ => {
            let mut diagnostics = d.errors;
            diagnostics.sort_by_key(|e| e.pos.map_or((u32::MAX, u32::MAX), |p| (p.line, p.column)));
            Err(SpecError { diagnostics })
        }
    }
}

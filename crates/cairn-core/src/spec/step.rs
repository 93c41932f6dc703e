//! Reading one step or handler, and the `defaults:` block that fills in what
//! a step leaves out; also the small typed fields steps share with the
//! workflow (env, shell, retry policy, continue_on, durations).

use std::time::Duration;

use super::cmdline::split_words;
use super::condition::{self, parse_expected};
use super::error::{Pos, did_you_mean};
use super::keys;
use super::model::{
    Action, ContinueOn, EnvVar, Expected, HandlerKind, OutputPattern, Precondition, Shell, Signal, Step,
};
use super::yaml::{Diags, Fields, Node, Value, index, join};
use crate::progress::ProgressLimits;
use crate::retry::RetryPolicy;

/// What `defaults:` gives every step (and handler) that does not set it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Defaults {
    continue_on: Option<ContinueOn>,
    retry: Option<RetryPolicy>,
    timeout: Option<Duration>,
    signal: Option<Signal>,
    /// Added before the step's own env.
    env: Vec<EnvVar>,
    /// Added before the step's own preconditions.
    preconditions: Vec<Precondition>,
    queue: Option<String>,
    heartbeat: Option<Duration>,
    progress: Option<ProgressLimits>,
}

pub(crate) fn parse_defaults(node: &Node, path: &str, d: &mut Diags) -> Defaults {
    let Some(f) = d.fields(node, path, &keys::DEFAULTS) else {
        return Defaults::default();
    };
    let p = |k: &str| join(path, k);
    Defaults {
        continue_on: f.get("continue_on").and_then(|n| parse_continue_on(n, &p("continue_on"), d)),
        retry: f.get("retry_policy").and_then(|n| parse_retry(n, &p("retry_policy"), false, d)),
        timeout: f.get("timeout_sec").and_then(|n| seconds(n, &p("timeout_sec"), d)).filter(|t| !t.is_zero()),
        signal: f.get("signal_on_stop").and_then(|n| parse_signal(n, &p("signal_on_stop"), d)),
        env: f.get("env").map(|n| parse_env(n, &p("env"), d)).unwrap_or_default(),
        preconditions: f
            .get("preconditions")
            .map(|n| condition::parse_list(n, &p("preconditions"), d))
            .unwrap_or_default(),
        queue: f.get("queue").and_then(|n| parse_queue(n, &p("queue"), d)),
        heartbeat: f
            .get("heartbeat_timeout_sec")
            .and_then(|n| parse_heartbeat(n, &p("heartbeat_timeout_sec"), d)),
        progress: f.get("progress").and_then(|n| parse_progress(n, &p("progress"), d)),
    }
}

/// A step as read, before names are generated and dependencies resolved.
#[derive(Debug)]
pub(crate) struct Draft {
    pub(crate) step: Step,
    /// `steps[2]`, `steps[1][0]`, `handler_on.exit`, for messages.
    pub(crate) path: String,
    /// `depends` as written.
    pub(crate) depends: Vec<String>,
    /// Where `depends` was written, when it was.
    pub(crate) depends_pos: Option<Option<Pos>>,
}

/// What a step needs to know of its workflow while being read.
pub(crate) struct StepContext<'a> {
    pub(crate) defaults: &'a Defaults,
    pub(crate) handler: Option<HandlerKind>,
    /// The workflow's shell is `direct`.
    pub(crate) direct: bool,
}

/// Reads a step: a command string, or a map of step keys.
pub(crate) fn read_step(node: &Node, path: &str, ctx: &StepContext<'_>, d: &mut Diags) -> Option<Draft> {
    let shorthand;
    let node = match &node.value {
        Value::Str(_) | Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
            let key = Node { value: Value::Str("command".to_owned()), pos: node.pos };
            shorthand = Node { value: Value::Map(vec![(key, node.clone())]), pos: node.pos };
            &shorthand
        }
        Value::Map(_) => node,
        Value::Null => {
            d.error_hint(
                node.pos,
                path,
                "the step is empty",
                "give it a `command:` or a `script:`".to_owned(),
            );
            return None;
        }
        Value::Seq(_) => {
            d.error(node.pos, path, "a parallel group cannot contain another list");
            return None;
        }
    };
    let schema = if ctx.handler.is_some() { &keys::HANDLER } else { &keys::STEP };
    let errors_before = d.errors.len();
    let f = d.fields(node, path, schema)?;
    // A misspelt or refused key already explains why the step may seem empty.
    let key_errors = d.errors.len() > errors_before;
    let p = |k: &str| join(path, k);
    let text = |k: &str, d: &mut Diags| {
        f.get(k)
            .and_then(|n| d.string(n, &join(path, k)))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };

    let name = text("name", d);
    if let Some(n) = &name
        && n.chars().count() > 255
    {
        d.error(f.key_pos("name"), &p("name"), "the step name is longer than 255 characters");
    }
    let id = text("id", d);
    if let Some(id) = &id {
        check_id(id, f.key_pos("id"), &p("id"), d);
    }
    if let Some(t) = text("type", d)
        && !matches!(t.as_str(), "shell" | "command")
    {
        d.error_hint(
            f.key_pos("type"),
            &p("type"),
            format!("step type \"{t}\" is not supported by Cairn"),
            "Cairn runs shell commands and scripts; remove `type`".to_owned(),
        );
    }

    let shell = f.get("shell").and_then(|n| parse_shell(n, &p("shell"), d));
    let direct = match &shell {
        Some(Shell::Direct) => true,
        Some(Shell::Program { .. }) => false,
        None => ctx.direct,
    };
    let task_type = read_task_type(&f, path, d);
    let action = read_action(node, &f, path, direct, task_type, key_errors, d);

    let output = match f.get("output") {
        Some(n) if matches!(n.value, Value::Map(_)) => {
            d.error_hint(
                n.pos,
                &p("output"),
                "not supported by Cairn: structured output (a map)",
                "name one variable: `output: RESULT`".to_owned(),
            );
            None
        }
        Some(n) => d.string(n, &p("output")).and_then(|s| {
            let name = s.trim().trim_start_matches('$').to_owned();
            if name.is_empty() {
                None
            } else if valid_var_name(&name) {
                Some(name)
            } else {
                d.error_hint(
                    n.pos,
                    &p("output"),
                    format!("\"{name}\" is not a variable name"),
                    "use letters, digits and `_`, not starting with a digit".to_owned(),
                );
                None
            }
        }),
        None => None,
    };
    let stdout = text("stdout", d);
    let stderr = text("stderr", d);
    if stdout.is_some() && stdout == stderr {
        d.error_hint(
            f.key_pos("stderr"),
            &p("stderr"),
            "stdout and stderr point to the same file",
            "write them to different files".to_owned(),
        );
    }

    let defaults = ctx.defaults;
    let mut env = defaults.env.clone();
    if let Some(n) = f.get("env") {
        env.extend(parse_env(n, &p("env"), d));
    }
    let mut preconditions = defaults.preconditions.clone();
    if let Some(n) = f.get("preconditions") {
        preconditions.extend(condition::parse_list(n, &p("preconditions"), d));
    }
    // A key written in the step (even empty) replaces the default.
    let continue_on = if f.has("continue_on") {
        f.get("continue_on").and_then(|n| parse_continue_on(n, &p("continue_on"), d)).unwrap_or_default()
    } else {
        defaults.continue_on.clone().unwrap_or_default()
    };
    let retry = if f.has("retry_policy") {
        f.get("retry_policy").and_then(|n| parse_retry(n, &p("retry_policy"), false, d)).unwrap_or_default()
    } else {
        defaults.retry.clone().unwrap_or_default()
    };
    let timeout = if f.has("timeout_sec") {
        f.get("timeout_sec").and_then(|n| seconds(n, &p("timeout_sec"), d)).filter(|t| !t.is_zero())
    } else {
        defaults.timeout
    };
    let signal_on_stop = if f.has("signal_on_stop") {
        f.get("signal_on_stop").and_then(|n| parse_signal(n, &p("signal_on_stop"), d))
    } else {
        defaults.signal
    };
    let queue = if f.has("queue") {
        f.get("queue").and_then(|n| parse_queue(n, &p("queue"), d))
    } else {
        defaults.queue.clone()
    };
    let heartbeat_timeout = if f.has("heartbeat_timeout_sec") {
        f.get("heartbeat_timeout_sec").and_then(|n| parse_heartbeat(n, &p("heartbeat_timeout_sec"), d))
    } else {
        defaults.heartbeat
    };
    let progress = if f.has("progress") {
        f.get("progress").and_then(|n| parse_progress(n, &p("progress"), d))
    } else {
        defaults.progress
    };
    if f.has("task_type") && queue.is_none() {
        d.error_hint(
            f.key_pos("task_type"),
            &p("task_type"),
            "a task_type step runs on workers: give it a queue",
            "add `queue:` naming the queue its SDK worker polls".to_owned(),
        );
    }

    let depends_pos = f.has("depends").then(|| f.key_pos("depends"));
    let depends = f.get("depends").and_then(|n| d.string_list(n, &p("depends"))).unwrap_or_default();
    let depends = depends.into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();

    let step = Step {
        name: match ctx.handler {
            Some(kind) => kind.node_name().to_owned(),
            None => name.unwrap_or_default(),
        },
        id,
        description: text("description", d),
        action: action?,
        shell,
        working_dir: text("working_dir", d),
        env,
        depends: Vec::new(),
        output,
        stdout,
        stderr,
        preconditions,
        continue_on,
        retry,
        timeout,
        signal_on_stop,
        queue,
        heartbeat_timeout,
        progress,
        handler: ctx.handler,
        pos: node.pos,
    };
    Some(Draft { step, path: path.to_owned(), depends, depends_pos })
}

/// Dagu's rule for ids: they appear in `${id.output}`, so they must read as one word.
fn check_id(id: &str, pos: Option<Pos>, path: &str, d: &mut Diags) {
    const RESERVED: [&str; 7] = ["env", "params", "args", "stdout", "stderr", "output", "outputs"];
    let mut chars = id.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !well_formed {
        d.error_hint(
            pos,
            path,
            format!("invalid step id \"{id}\""),
            "start with a letter and use only letters, digits and `_`".to_owned(),
        );
    } else if id.len() > 40 {
        d.error(pos, path, format!("step id \"{id}\" is longer than 40 characters"));
    } else if RESERVED.contains(&id.to_ascii_lowercase().as_str()) {
        d.error(pos, path, format!("step id \"{id}\" is a reserved word"));
    }
}

fn valid_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The `command:` value, before it meets `script:`.
enum CommandText {
    /// One line.
    Line(String),
    /// Several lines: Dagu runs it as a script.
    Lines(String),
    List(Vec<String>),
}

fn read_command(node: &Node, path: &str, d: &mut Diags) -> Option<CommandText> {
    if let Some(text) = node.scalar_text() {
        let text = text.trim();
        if text.is_empty() {
            d.error(node.pos, path, "the command is empty");
            return None;
        }
        return Some(if text.contains('\n') {
            CommandText::Lines(text.to_owned())
        } else {
            CommandText::Line(text.to_owned())
        });
    }
    let Value::Seq(items) = &node.value else {
        d.expected(node, path, "a command line or a list of command lines");
        return None;
    };
    let mut lines = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let line = match &item.value {
            // YAML reads `- echo SATID: 123` as a one-key map; Dagu puts it back together.
            Value::Map(entries) if entries.len() == 1 => {
                match (entries[0].0.scalar_text(), entries[0].1.scalar_text()) {
                    (Some(k), Some(v)) => Some(format!("{k}: {v}")),
                    _ => None,
                }
            }
            _ => item.scalar_text(),
        };
        match line {
            Some(l) if l.trim().is_empty() => {}
            Some(l) => lines.push(l.trim().to_owned()),
            None => d.error_hint(
                item.pos,
                &index(path, i),
                format!("expected a command line, found {}", item.kind()),
                "quote a command that contains `: `".to_owned(),
            ),
        }
    }
    if lines.is_empty() {
        d.error(node.pos, path, "the command list is empty");
        return None;
    }
    Some(CommandText::List(lines))
}

/// Cairn's `task_type:`, trimmed; an empty one is an error.
fn read_task_type(f: &Fields<'_>, path: &str, d: &mut Diags) -> Option<String> {
    if !f.has("task_type") {
        return None;
    }
    let path = join(path, "task_type");
    let text = match f.get("task_type") {
        // A value of the wrong kind is reported by `string`.
        Some(n) => d.string(n, &path)?,
        None => String::new(),
    };
    let text = text.trim();
    if text.is_empty() {
        d.error_hint(
            f.key_pos("task_type"),
            &path,
            "the task type is empty",
            "name the handler an SDK worker runs this step with, e.g. `task_type: resize`".to_owned(),
        );
        return None;
    }
    Some(text.to_owned())
}

fn read_action(
    node: &Node,
    f: &Fields<'_>,
    path: &str,
    direct: bool,
    task_type: Option<String>,
    key_errors: bool,
    d: &mut Diags,
) -> Option<Action> {
    let p = |k: &str| join(path, k);
    if f.has("task_type") {
        for key in ["command", "script", "exec"] {
            if f.has(key) {
                d.error_hint(
                    f.key_pos("task_type"),
                    &p("task_type"),
                    format!("`task_type` cannot be used together with `{key}`"),
                    "a `task_type` step has no command: an SDK worker's handler runs it; remove one of them"
                        .to_owned(),
                );
            }
        }
    }
    let command = f.get("command").and_then(|n| read_command(n, &p("command"), d));
    let script = f
        .get("script")
        .and_then(|n| d.string(n, &p("script")))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());

    if let Some(exec) = f.get("exec") {
        let clash = [("command", f.has("command")), ("script", f.has("script")), ("shell", f.has("shell"))];
        for (key, present) in clash {
            if present {
                d.error_hint(
                    f.key_pos(key),
                    &p(key),
                    format!("`exec` cannot be used together with `{key}`"),
                    "`exec` runs a program directly, without a shell".to_owned(),
                );
            }
        }
        return read_exec(exec, &p("exec"), d);
    }

    if command.is_none()
        && script.is_none()
        && let Some(task_type) = task_type
    {
        return Some(Action::Task { task_type });
    }
    let action = match (command, script) {
        (None, None) => {
            if !f.has("command") && !f.has("script") && !f.has("task_type") && !key_errors {
                let hint = if f.has("queue") {
                    "add `command:`, `script:` or `exec:`, or `task_type:` for an SDK worker"
                } else {
                    "add `command:`, `script:` or `exec:`"
                };
                d.error_hint(node.pos, path, "the step has nothing to run", hint.to_owned());
            }
            return None;
        }
        (Some(CommandText::Line(c)), None) => Action::Commands(vec![c]),
        (Some(CommandText::List(v)), None) => Action::Commands(v),
        (Some(CommandText::Lines(t)), None) => Action::Script { body: t, interpreter: None },
        (None, Some(s)) => Action::Script { body: s, interpreter: None },
        (Some(CommandText::Line(c)), Some(s)) => Action::Script { body: s, interpreter: Some(c) },
        (Some(_), Some(_)) => {
            d.error_hint(
                f.key_pos("command"),
                &p("command"),
                "with `script:`, `command:` must be one line",
                "`command:` names the program that runs the script, e.g. `command: python3`".to_owned(),
            );
            return None;
        }
    };

    match &action {
        Action::Commands(lines) if direct => {
            for (i, line) in lines.iter().enumerate() {
                if let Err(e) = split_words(line) {
                    let at = if lines.len() > 1 { index(&p("command"), i) } else { p("command") };
                    d.error(f.key_pos("command"), &at, format!("cannot split the command into words: {e}"));
                }
            }
        }
        Action::Script { interpreter: Some(i), .. } => {
            if let Err(e) = split_words(i) {
                d.error(
                    f.key_pos("command"),
                    &p("command"),
                    format!("cannot split the interpreter into words: {e}"),
                );
            }
        }
        Action::Script { body, interpreter: None } if direct && !body.starts_with("#!") => {
            let key = if f.has("script") { "script" } else { "command" };
            d.error_hint(
                f.key_pos(key),
                &p(key),
                "`shell: direct` cannot run a script",
                "start the script with a `#!` line, name the interpreter in `command:`, or set a shell"
                    .to_owned(),
            );
        }
        _ => {}
    }
    Some(action)
}

fn read_exec(node: &Node, path: &str, d: &mut Diags) -> Option<Action> {
    let f = d.fields(node, path, &keys::EXEC)?;
    let program =
        f.get("command").and_then(|n| d.string(n, &join(path, "command"))).map(|s| s.trim().to_owned());
    let Some(program) = program.filter(|s| !s.is_empty()) else {
        d.error_hint(node.pos, path, "`exec` needs a `command`", "name the program to run".to_owned());
        return None;
    };
    let mut args = Vec::new();
    if let Some(n) = f.get("args") {
        match &n.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item.scalar_text() {
                        Some(a) => args.push(a),
                        None => d.expected(
                            item,
                            &index(&join(path, "args"), i),
                            "an argument (a string or a number)",
                        ),
                    }
                }
            }
            _ => d.expected(n, &join(path, "args"), "a list of arguments"),
        }
    }
    Some(Action::Exec { program, args })
}

/// Reads `env`: a map, or a list of one-key maps and `KEY=value` strings, in order.
pub(crate) fn parse_env(node: &Node, path: &str, d: &mut Diags) -> Vec<EnvVar> {
    let mut out = Vec::new();
    let pair = |k: &Node, v: &Node, path: &str, d: &mut Diags, out: &mut Vec<EnvVar>| {
        let Some(name) = k.scalar_text().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()) else {
            d.expected(k, path, "a variable name");
            return;
        };
        let value = match v.scalar_text() {
            Some(s) => s,
            None if v.is_null() => String::new(),
            None => {
                d.expected(v, &join(path, &name), "a value (a string or a number)");
                return;
            }
        };
        out.push(EnvVar { name, value });
    };
    match &node.value {
        Value::Null => {}
        Value::Map(entries) => {
            for (k, v) in entries {
                pair(k, v, path, d, &mut out);
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let ip = index(path, i);
                match &item.value {
                    Value::Map(entries) => {
                        for (k, v) in entries {
                            pair(k, v, &ip, d, &mut out);
                        }
                    }
                    Value::Str(s) => match s.split_once('=') {
                        Some((k, v)) if !k.trim().is_empty() => {
                            out.push(EnvVar { name: k.trim().to_owned(), value: v.to_owned() })
                        }
                        _ => d.error_hint(
                            item.pos,
                            &ip,
                            format!("expected KEY=value, found {s:?}"),
                            "or write `- KEY: value`".to_owned(),
                        ),
                    },
                    _ => d.expected(item, &ip, "`KEY: value` or `KEY=value`"),
                }
            }
        }
        _ => d.expected(node, path, "a map of variables or a list of `KEY: value`"),
    }
    out
}

/// Reads `shell`: `bash -e`, `["bash", "-e"]` or `direct`.
pub(crate) fn parse_shell(node: &Node, path: &str, d: &mut Diags) -> Option<Shell> {
    let words = match &node.value {
        Value::Seq(items) => {
            let mut words = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.scalar_text() {
                    Some(w) => words.push(w),
                    None => d.expected(item, &index(path, i), "a word"),
                }
            }
            words
        }
        _ => {
            let text = d.string(node, path)?;
            if text.trim().is_empty() {
                return None;
            }
            match split_words(text.trim()) {
                Ok(w) => w,
                Err(e) => {
                    d.error(node.pos, path, format!("cannot split the shell into words: {e}"));
                    return None;
                }
            }
        }
    };
    let (program, args) = words.split_first()?;
    if program == "direct" {
        if !args.is_empty() {
            d.error(node.pos, path, "`direct` takes no arguments");
        }
        return Some(Shell::Direct);
    }
    Some(Shell::Program { program: program.clone(), args: args.to_vec() })
}

/// Reads a retry policy; `run` for the workflow's own (Dagu's defaults differ).
pub(crate) fn parse_retry(node: &Node, path: &str, run: bool, d: &mut Diags) -> Option<RetryPolicy> {
    let schema = if run { &keys::RUN_RETRY } else { &keys::RETRY };
    let errors_before = d.errors.len();
    let f = d.fields(node, path, schema)?;
    let p = |k: &str| join(path, k);
    let Some(limit) = f.get("limit") else {
        if d.errors.len() > errors_before {
            return None;
        }
        d.error_hint(
            node.pos,
            path,
            "`limit` is required in a retry policy",
            "it is the number of retries after the first attempt".to_owned(),
        );
        return None;
    };
    let limit = u32::try_from(d.uint(limit, &p("limit"))?).unwrap_or(u32::MAX);
    let default_interval = if run { Duration::from_secs(60) } else { Duration::ZERO };
    let interval = match f.get("interval_sec") {
        Some(n) => seconds(n, &p("interval_sec"), d)?,
        None => default_interval,
    };
    let backoff = match f.get("backoff") {
        None => 1.0,
        Some(n) => match &n.value {
            Value::Bool(true) => 2.0,
            Value::Bool(false) => 1.0,
            _ => {
                let b = d.float(n, &p("backoff"))?;
                if b == 0.0 {
                    1.0
                } else if b <= 1.0 {
                    d.error_hint(
                        n.pos,
                        &p("backoff"),
                        format!("backoff must be more than 1.0, found {b}"),
                        "use `true` for 2.0, or leave it out for a constant interval".to_owned(),
                    );
                    return None;
                } else {
                    b
                }
            }
        },
    };
    let max_interval = match f.get("max_interval_sec") {
        Some(n) => {
            let m = seconds(n, &p("max_interval_sec"), d)?;
            if m.is_zero() {
                d.error(n.pos, &p("max_interval_sec"), "max_interval_sec must be more than 0");
                return None;
            }
            Some(m)
        }
        None if run => Some(Duration::from_secs(3600)),
        None => None,
    };
    let exit_codes = match f.get("exit_code") {
        Some(n) => int_list(n, &p("exit_code"), d)?,
        None => Vec::new(),
    };
    Some(RetryPolicy { limit, interval, backoff, max_interval, exit_codes })
}

fn int_list(node: &Node, path: &str, d: &mut Diags) -> Option<Vec<i32>> {
    let one = |n: &Node, path: &str, d: &mut Diags| {
        let i = d.int(n, path)?;
        match i32::try_from(i) {
            Ok(v) => Some(v),
            Err(_) => {
                d.error(n.pos, path, format!("{i} is not an exit code"));
                None
            }
        }
    };
    match &node.value {
        Value::Seq(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                out.push(one(item, &index(path, i), d)?);
            }
            Some(out)
        }
        _ => Some(vec![one(node, path, d)?]),
    }
}

/// Reads `continue_on`: `skipped`, `failed`, or a map.
pub(crate) fn parse_continue_on(node: &Node, path: &str, d: &mut Diags) -> Option<ContinueOn> {
    if let Some(s) = node.as_str() {
        return match s.trim().to_ascii_lowercase().as_str() {
            "skipped" => Some(ContinueOn { skipped: true, ..ContinueOn::default() }),
            "failed" | "failure" => Some(ContinueOn { failure: true, ..ContinueOn::default() }),
            other => {
                d.error_hint(
                    node.pos,
                    path,
                    format!("unknown continue_on value \"{other}\""),
                    did_you_mean(other, ["skipped", "failed"])
                        .or_else(|| Some("use `skipped`, `failed`, or a map".to_owned())),
                );
                None
            }
        };
    }
    let f = d.fields(node, path, &keys::CONTINUE_ON)?;
    let p = |k: &str| join(path, k);
    let flag = |k: &str, d: &mut Diags| f.get(k).and_then(|n| d.bool(n, &join(path, k))).unwrap_or(false);
    let mut c = ContinueOn {
        skipped: flag("skipped", d),
        failure: flag("failure", d),
        mark_success: flag("mark_success", d),
        ..ContinueOn::default()
    };
    if let Some(n) = f.get("exit_code") {
        c.exit_codes = int_list(n, &p("exit_code"), d).unwrap_or_default();
    }
    if let Some(n) = f.get("output") {
        for (i, text) in d.string_list(n, &p("output")).unwrap_or_default().into_iter().enumerate() {
            let ip = if matches!(n.value, Value::Seq(_)) { index(&p("output"), i) } else { p("output") };
            match parse_expected(&text, Some(n), &ip, d) {
                Some(Expected::Regex(r)) => c.output.push(OutputPattern::Regex(r)),
                Some(Expected::Exact(s)) => c.output.push(OutputPattern::Contains(s)),
                None => {}
            }
        }
    }
    Some(c)
}

/// Whole seconds, 0 or more.
pub(crate) fn seconds(node: &Node, path: &str, d: &mut Diags) -> Option<Duration> {
    d.uint(node, path).map(Duration::from_secs)
}

fn parse_signal(node: &Node, path: &str, d: &mut Diags) -> Option<Signal> {
    let s = d.string(node, path)?;
    let sig = Signal::parse(&s);
    if sig.is_none() {
        let upper = s.trim().to_ascii_uppercase();
        let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
        d.error_hint(
            node.pos,
            path,
            format!("unknown signal \"{s}\""),
            did_you_mean(&full, Signal::names()).or_else(|| Some("e.g. SIGTERM, SIGINT, SIGKILL".to_owned())),
        );
    }
    sig
}

fn parse_queue(node: &Node, path: &str, d: &mut Diags) -> Option<String> {
    let q = d.string(node, path)?.trim().to_owned();
    if q.is_empty() {
        d.error(node.pos, path, "the queue name is empty");
        return None;
    }
    Some(q)
}

fn parse_heartbeat(node: &Node, path: &str, d: &mut Diags) -> Option<Duration> {
    let t = seconds(node, path, d)?;
    if t.is_zero() {
        d.error_hint(
            node.pos,
            path,
            "heartbeat_timeout_sec must be more than 0",
            "leave it out for the default".to_owned(),
        );
        return None;
    }
    Some(t)
}

fn parse_progress(node: &Node, path: &str, d: &mut Diags) -> Option<ProgressLimits> {
    let f = d.fields(node, path, &keys::PROGRESS)?;
    let mut limits = ProgressLimits::default();
    if let Some(n) = f.get("min_interval_ms") {
        limits.min_interval = Duration::from_millis(d.uint(n, &join(path, "min_interval_ms"))?);
    }
    if let Some(n) = f.get("min_change") {
        let c = d.float(n, &join(path, "min_change"))?;
        if !(0.0..=100.0).contains(&c) {
            d.error(n.pos, &join(path, "min_change"), format!("min_change must be from 0 to 100, found {c}"));
            return None;
        }
        limits.min_change = c as f32;
    }
    Some(limits)
}

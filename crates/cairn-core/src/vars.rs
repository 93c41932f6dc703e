//! Variable expansion, as Dagu does it for commands, scripts, env values,
//! working directories and preconditions.
//!
//! What is expanded: `$VAR` and `${VAR}`; positional params `$1`, `${2}`; JSON
//! paths into a JSON-valued variable (`${CONFIG.host}`, `${LIST.items[0]}`);
//! step references (`${build.output}`, `${build.output.version}`,
//! `${build.exitCode}`, `${build.stdout}` — the path of its stdout log —, each
//! with an optional `:offset:length` slice); POSIX operators in plain values
//! (`${VAR:-default}`, `${VAR:0:3}`, `${VAR#prefix}`, ...); the `\$` escape;
//! and backtick command substitution, through a [`CommandRunner`] the engine
//! supplies (this module never starts a process).
//!
//! Who expands what depends on where the text goes, hence [`Syntax`]:
//! Cairn expands what only it can know (params, outputs, step references) and
//! leaves the rest to the shell, so a value is never expanded twice.
//!
//! Architecture invariant: expansion is one left-to-right pass; a substituted
//! value is never scanned again, so a value containing `$X` or backticks stays
//! as it is.

use std::collections::HashMap;

/// The variables visible to one expansion, filled by the engine: params, the
/// workflow's env, outputs of finished steps, the step's own env, Cairn's
/// special variables (`DAG_NAME`, ...), the process environment, and what is
/// known of other steps for `${id.output}`-style references.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    vars: HashMap<String, String>,
    order: Vec<String>,
    os: HashMap<String, String>,
    steps: HashMap<String, StepInfo>,
}

/// What `${id.output}`, `${id.exitCode}`, `${id.stdout}` and `${id.stderr}`
/// resolve to for one step; `None` leaves the reference as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepInfo {
    /// Path of the step's stdout log.
    pub stdout: Option<String>,
    /// Path of the step's stderr log.
    pub stderr: Option<String>,
    /// Its exit code.
    pub exit_code: Option<i32>,
    /// The captured output value, when the step has `output:`.
    pub output: Option<String>,
}

impl Scope {
    /// An empty scope.
    pub fn new() -> Self {
        Scope::default()
    }

    /// A scope whose process environment is `env` (usually `std::env::vars()`).
    pub fn with_os_env<I, K, V>(env: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut scope = Scope::new();
        for (k, v) in env {
            scope.os.insert(k.into(), v.into());
        }
        scope
    }

    /// Sets a workflow variable (param, env, output, special variable); a later
    /// `set` of the same name wins, which is how layers override each other.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        if self.vars.insert(name.clone(), value.into()).is_none() {
            self.order.push(name);
        }
    }

    /// Sets a variable of the process environment.
    pub fn set_os(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.os.insert(name.into(), value.into());
    }

    /// Makes a step referable as `${key.output}` etc. Dagu keys steps by `id`.
    pub fn set_step(&mut self, key: impl Into<String>, info: StepInfo) {
        self.steps.insert(key.into(), info);
    }

    /// A workflow variable, else a process environment variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.var(name).or_else(|| self.os_var(name))
    }

    /// A workflow variable only.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// A process environment variable only.
    pub fn os_var(&self, name: &str) -> Option<&str> {
        self.os.get(name).map(String::as_str)
    }

    /// What is known of the step with this key.
    pub fn step(&self, key: &str) -> Option<&StepInfo> {
        self.steps.get(key)
    }

    /// Workflow variables in the order they were first set.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.order.iter().map(|k| (k.as_str(), self.vars[k].as_str()))
    }

    /// Workflow variables a process can receive in its environment: all but
    /// positional params (`1`, `2`, ...), which no shell can read from there.
    pub fn exports(&self) -> Vec<(String, String)> {
        self.vars().filter(|(k, _)| is_env_name(k)).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    /// Dagu's default shell: `$SHELL` of the process environment, else `sh`.
    pub fn default_shell(&self) -> String {
        match self.os_var("SHELL").map(str::trim) {
            Some(s) if !s.is_empty() => s.to_owned(),
            _ => "sh".to_owned(),
        }
    }

    /// `$HOME`, for `~` in paths.
    pub fn home(&self) -> Option<&str> {
        self.get("HOME").filter(|h| !h.is_empty())
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Where the expanded text goes, which decides what Cairn expands itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// A value used as is: env values, preconditions, working dirs, stdout
    /// paths, arguments of a program run without a shell. Everything is
    /// expanded (workflow variables, then the process environment), POSIX
    /// operators included; an undefined `$X` becomes empty; `\$` is a literal `$`.
    Value,
    /// A command line for a shell (`sh -c`). Workflow variables and references
    /// are expanded; process environment variables, POSIX operators, `$(...)`
    /// and `\$` are left for the shell, and so is an undefined variable.
    ShellCommand,
    /// A script body for a shell. Only references (`${id.output}`,
    /// `${VAR.key}`) and positional params (`$1`) are expanded: the script
    /// reads its other variables from its environment, so shell-special
    /// characters in a value are never interpreted.
    ShellScript,
}

/// Runs the command of a backtick substitution and returns its stdout.
pub trait CommandRunner {
    /// Runs `command` (already expanded) in a shell with `scope`'s variables in
    /// its environment; Dagu trims the output it substitutes.
    fn run(&mut self, command: &str, scope: &Scope) -> Result<String, String>;
}

impl<F> CommandRunner for F
where
    F: FnMut(&str, &Scope) -> Result<String, String>,
{
    fn run(&mut self, command: &str, scope: &Scope) -> Result<String, String> {
        self(command, scope)
    }
}

/// A [`CommandRunner`] for places where commands must not run: every
/// substitution fails.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCommands;

impl CommandRunner for NoCommands {
    fn run(&mut self, _command: &str, _scope: &Scope) -> Result<String, String> {
        Err("command substitution is not available here".to_owned())
    }
}

/// A backtick command substitution that failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("command substitution `{command}` failed: {message}")]
pub struct ExpandError {
    /// The command, after expansion.
    pub command: String,
    pub message: String,
}

/// Expands a plain value ([`Syntax::Value`]); backticks stay as written.
pub fn expand(input: &str, scope: &Scope) -> String {
    expand_as(input, scope, Syntax::Value)
}

/// Expands `input` for the place described by `syntax`; backticks stay as written.
pub fn expand_as(input: &str, scope: &Scope, syntax: Syntax) -> String {
    let mut ex = Expander { scope, syntax, runner: None };
    match ex.run(input) {
        Ok(s) => s,
        // Without a runner no substitution is attempted, so nothing can fail.
        Err(_) => input.to_owned(),
    }
}

/// Expands a plain value ([`Syntax::Value`]) and replaces each `` `command` ``
/// with the trimmed output of `runner` — as Dagu does for env values and
/// `condition:` of preconditions.
pub fn expand_with_commands(
    input: &str,
    scope: &Scope,
    runner: &mut dyn CommandRunner,
) -> Result<String, ExpandError> {
    Expander { scope, syntax: Syntax::Value, runner: Some(runner) }.run(input)
}

struct Expander<'a, 'r> {
    scope: &'a Scope,
    syntax: Syntax,
    runner: Option<&'r mut dyn CommandRunner>,
}

impl Expander<'_, '_> {
    fn run(&mut self, input: &str) -> Result<String, ExpandError> {
        let b = input.as_bytes();
        let mut out = String::with_capacity(input.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'\\' => {
                    let start = i;
                    while i < b.len() && b[i] == b'\\' {
                        i += 1;
                    }
                    let n = i - start;
                    let escapes = n % 2 == 1;
                    match b.get(i) {
                        Some(b'$') if escapes => {
                            // Dagu: an odd run of backslashes escapes the `$`. In a
                            // value it becomes a literal `$`; a shell gets `\$` as written.
                            let keep = if self.syntax == Syntax::Value { n - 1 } else { n };
                            out.extend(std::iter::repeat_n('\\', keep));
                            out.push('$');
                            i += 1;
                        }
                        Some(b'`') if escapes => {
                            out.extend(std::iter::repeat_n('\\', n));
                            out.push('`');
                            i += 1;
                        }
                        _ => out.extend(std::iter::repeat_n('\\', n)),
                    }
                }
                b'`' if self.runner.is_some() => i = self.backtick(input, i, &mut out)?,
                b'$' => i = self.dollar(input, i, &mut out),
                _ => {
                    let next = b[i..]
                        .iter()
                        .position(|c| matches!(c, b'\\' | b'$' | b'`'))
                        .map_or(b.len(), |p| i + p);
                    let next = if next == i { i + 1 } else { next };
                    out.push_str(&input[i..next]);
                    i = next;
                }
            }
        }
        Ok(out)
    }

    fn backtick(&mut self, input: &str, i: usize, out: &mut String) -> Result<usize, ExpandError> {
        let b = input.as_bytes();
        let mut j = i + 1;
        while j < b.len() && b[j] != b'`' {
            j += if b[j] == b'\\' { 2 } else { 1 };
        }
        if j >= b.len() {
            out.push_str(&input[i..]);
            return Ok(b.len());
        }
        let inner = &input[i + 1..j];
        if inner.is_empty() {
            out.push_str("``");
            return Ok(j + 1);
        }
        // The command goes to a shell: expand what only Cairn knows, leave the rest.
        let command = expand_as(inner, self.scope, Syntax::ShellCommand);
        let runner = self.runner.as_mut().expect("checked by the caller");
        match runner.run(&command, self.scope) {
            Ok(output) => out.push_str(output.trim()),
            Err(message) => return Err(ExpandError { command, message }),
        }
        Ok(j + 1)
    }

    /// Expands the `$...` at `i`; returns where scanning resumes.
    fn dollar(&mut self, input: &str, i: usize, out: &mut String) -> usize {
        let b = input.as_bytes();
        let before = if i > 0 { Some(b[i - 1]) } else { None };
        if b.get(i + 1) == Some(&b'{') {
            let Some(close) = matching_brace(b, i + 2) else {
                out.push('$');
                return i + 1;
            };
            let end = close + 1;
            let original = &input[i..end];
            let inner = &input[i + 2..close];
            let after = b.get(end).copied();
            let quoted = before == Some(b'"') && after == Some(b'"');
            let single = before == Some(b'\'') && after == Some(b'\'');
            match classify(inner) {
                Braced::Reference(name, path) => match self.reference(name, path) {
                    Some(v) => self.push_value(out, &v, quoted),
                    None => out.push_str(original),
                },
                Braced::Name(name) => {
                    if single {
                        out.push_str(original);
                    } else {
                        match self.lookup(name) {
                            Some(v) => {
                                let v = v.to_owned();
                                self.push_value(out, &v, quoted);
                            }
                            None if self.syntax == Syntax::Value => {}
                            None => out.push_str(original),
                        }
                    }
                }
                Braced::Other if self.syntax == Syntax::Value && !single => match self.posix(inner) {
                    Some(v) => out.push_str(&v),
                    None => out.push_str(original),
                },
                Braced::Other => out.push_str(original),
            }
            return end;
        }

        let name_len = match b.get(i + 1) {
            Some(c) if c.is_ascii_digit() => 1,
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                b[i + 1..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count()
            }
            _ => {
                out.push('$');
                return i + 1;
            }
        };
        let name = &input[i + 1..i + 1 + name_len];
        let end = i + 1 + name_len;

        let path_len = unbraced_path_len(&b[end..]);
        if path_len > 0 {
            let path = &input[end..end + path_len];
            if let Some(v) = self.reference(name, path) {
                out.push_str(&v);
                return end + path_len;
            }
        }

        let after = b.get(end).copied();
        if before == Some(b'\'') && after == Some(b'\'') {
            out.push_str(&input[i..end]);
            return end;
        }
        let quoted = before == Some(b'"') && after == Some(b'"');
        match self.lookup(name) {
            Some(v) => {
                let v = v.to_owned();
                self.push_value(out, &v, quoted);
            }
            None if self.syntax == Syntax::Value => {}
            None => out.push_str(&input[i..end]),
        }
        end
    }

    fn lookup(&self, name: &str) -> Option<&str> {
        match self.syntax {
            Syntax::Value => self.scope.get(name),
            Syntax::ShellCommand => self.scope.var(name),
            // Shells cannot see positional params; everything else they read
            // from their environment.
            Syntax::ShellScript if name.bytes().all(|c| c.is_ascii_digit()) => self.scope.var(name),
            Syntax::ShellScript => None,
        }
    }

    /// A value between double quotes: escaped so it stays one word and reads
    /// back verbatim (Dagu re-quotes `"${VAR}"` for the same reason).
    fn push_value(&self, out: &mut String, value: &str, quoted: bool) {
        if !quoted {
            out.push_str(value);
            return;
        }
        for c in value.chars() {
            match c {
                '\\' | '"' => {
                    out.push('\\');
                    out.push(c);
                }
                '$' | '`' if self.syntax != Syntax::Value => {
                    out.push('\\');
                    out.push(c);
                }
                '\n' if self.syntax == Syntax::Value => out.push_str("\\n"),
                '\t' if self.syntax == Syntax::Value => out.push_str("\\t"),
                '\r' if self.syntax == Syntax::Value => out.push_str("\\r"),
                _ => out.push(c),
            }
        }
    }

    /// Resolves `name` + `path` (`.output`, `.key[0]`, ...) as a step
    /// reference, else as a JSON path into the variable `name`.
    fn reference(&self, name: &str, path: &str) -> Option<String> {
        if let Some(info) = self.scope.step(name)
            && let Some(v) = step_property(info, path)
        {
            return Some(v);
        }
        let source = match self.syntax {
            Syntax::Value => self.scope.get(name),
            _ => self.scope.var(name),
        }?;
        json_path(source, path)
    }

    /// `${VAR<op>...}` in a value, with Bash's meaning of each operator.
    fn posix(&self, inner: &str) -> Option<String> {
        let op = parse_posix(inner)?;
        let value = self.scope.get(op.name).map(str::to_owned);
        let word = |w: &str| expand_as(w, self.scope, Syntax::Value);
        Some(match op.kind {
            PosixOp::Length => value.unwrap_or_default().chars().count().to_string(),
            PosixOp::Default { colon, word: w } => match value {
                Some(v) if !(colon && v.is_empty()) => v,
                _ => word(w),
            },
            PosixOp::Alternative { colon, word: w } => match value {
                Some(v) if !(colon && v.is_empty()) => word(w),
                _ => String::new(),
            },
            PosixOp::Required { colon } => match value {
                Some(v) if !(colon && v.is_empty()) => v,
                _ => return None,
            },
            PosixOp::Substring { offset, length } => substring(&value.unwrap_or_default(), offset, length),
            PosixOp::RemovePrefix { pattern, longest } => {
                let v = value.unwrap_or_default();
                let pat: Vec<char> = word(pattern).chars().collect();
                remove_prefix(&v, &pat, longest)
            }
            PosixOp::RemoveSuffix { pattern, longest } => {
                let v = value.unwrap_or_default();
                let pat: Vec<char> = word(pattern).chars().collect();
                remove_suffix(&v, &pat, longest)
            }
            PosixOp::Replace { pattern, replacement, mode } => {
                let v = value.unwrap_or_default();
                let pat: Vec<char> = word(pattern).chars().collect();
                replace(&v, &pat, &word(replacement), mode)
            }
            PosixOp::Case { upper, all } => {
                let v = value.unwrap_or_default();
                change_case(&v, upper, all)
            }
        })
    }
}

/// Index of the `}` closing a `${` whose body starts at `from`.
fn matching_brace(b: &[u8], from: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut j = from;
    while j < b.len() {
        match b[j] {
            b'$' if b.get(j + 1) == Some(&b'{') => {
                depth += 1;
                j += 2;
                continue;
            }
            b'}' if depth == 0 => return Some(j),
            b'}' => depth -= 1,
            _ => {}
        }
        j += 1;
    }
    None
}

enum Braced<'a> {
    Name(&'a str),
    Reference(&'a str, &'a str),
    Other,
}

fn classify(inner: &str) -> Braced<'_> {
    let name_len = inner.bytes().take_while(|c| c.is_ascii_alphanumeric() || *c == b'_').count();
    if name_len == 0 {
        return Braced::Other;
    }
    let (name, rest) = inner.split_at(name_len);
    if rest.is_empty() {
        Braced::Name(name)
    } else if rest.starts_with('.') && rest.len() > 1 {
        Braced::Reference(name, rest)
    } else {
        Braced::Other
    }
}

/// Length of a JSON path (`.key`, `[0]`) right after an unbraced `$NAME`;
/// only identifier keys, so `$FILE.txt` still reads as `$FILE` + `.txt` when
/// `FILE` holds no JSON.
fn unbraced_path_len(b: &[u8]) -> usize {
    let mut j = 0;
    loop {
        match b.get(j) {
            Some(b'.') if b.get(j + 1).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') => {
                j += 1;
                j += b[j..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count();
            }
            Some(b'[') => match b[j..].iter().position(|c| *c == b']') {
                Some(p) if p > 1 && b[j + 1..j + p].iter().all(|c| c.is_ascii_digit() || *c == b'-') => {
                    j += p + 1;
                }
                _ => return j,
            },
            _ => return j,
        }
    }
}

fn step_property(info: &StepInfo, path: &str) -> Option<String> {
    if let Some(rest) = path.strip_prefix(".output")
        && (rest.starts_with('.') || rest.starts_with('['))
    {
        return json_path(info.output.as_deref()?, rest);
    }
    let (property, slice) = match path.split_once(':') {
        Some((p, s)) => (p, Some(parse_slice(s)?)),
        None => (path, None),
    };
    let value = match property {
        ".stdout" => info.stdout.clone().filter(|s| !s.is_empty())?,
        ".stderr" => info.stderr.clone().filter(|s| !s.is_empty())?,
        ".exitCode" | ".exit_code" => info.exit_code?.to_string(),
        ".output" => info.output.clone()?,
        _ => return None,
    };
    Some(match slice {
        Some((start, len)) => {
            let chars: Vec<char> = value.chars().collect();
            let start = start.min(chars.len());
            let end = len.map_or(chars.len(), |l| (start + l).min(chars.len()));
            chars[start..end].iter().collect()
        }
        None => value,
    })
}

/// `start[:length]`, both non-negative, as Dagu accepts on step references.
fn parse_slice(s: &str) -> Option<(usize, Option<usize>)> {
    let (start, len) = match s.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let start = start.trim().parse::<usize>().ok()?;
    let len = match len {
        Some(l) if l.contains(':') => return None,
        Some("") | None => None,
        Some(l) => Some(l.trim().parse::<usize>().ok()?),
    };
    Some((start, len))
}

#[derive(Debug, PartialEq)]
enum PathSeg {
    Key(String),
    Index(i64),
}

fn parse_json_path(path: &str) -> Option<Vec<PathSeg>> {
    let b = path.as_bytes();
    let mut segs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' if b.get(i + 1) == Some(&b'"') => {
                let close = path[i + 2..].find('"')? + i + 2;
                segs.push(PathSeg::Key(path[i + 2..close].to_owned()));
                i = close + 1;
            }
            b'.' if b.get(i + 1) == Some(&b'[') => i += 1,
            b'.' => {
                let len = b[i + 1..].iter().take_while(|c| !matches!(c, b'.' | b'[')).count();
                if len == 0 {
                    return None;
                }
                segs.push(PathSeg::Key(path[i + 1..i + 1 + len].to_owned()));
                i += 1 + len;
            }
            b'[' => {
                let close = path[i..].find(']')? + i;
                let inner = path[i + 1..close].trim();
                if let Some(key) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    segs.push(PathSeg::Key(key.to_owned()));
                } else {
                    segs.push(PathSeg::Index(inner.parse().ok()?));
                }
                i = close + 1;
            }
            _ => return None,
        }
    }
    Some(segs)
}

/// Walks `path` into the JSON text `source`. A missing key or index reads as
/// empty (jq's `null`); indexing into a scalar, or text that is no JSON, does
/// not resolve at all.
fn json_path(source: &str, path: &str) -> Option<String> {
    let segs = parse_json_path(path)?;
    let root: serde_json::Value = serde_json::from_str(source.trim()).ok()?;
    let mut cur = &root;
    for seg in &segs {
        cur = match (seg, cur) {
            (_, serde_json::Value::Null) => return Some(String::new()),
            (PathSeg::Key(k), serde_json::Value::Object(m)) => match m.get(k) {
                Some(v) => v,
                None => return Some(String::new()),
            },
            (PathSeg::Index(n), serde_json::Value::Array(a)) => {
                let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                match usize::try_from(idx).ok().and_then(|i| a.get(i)) {
                    Some(v) => v,
                    None => return Some(String::new()),
                }
            }
            _ => return None,
        };
    }
    Some(match cur {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplaceMode {
    First,
    All,
    Prefix,
    Suffix,
}

#[derive(Debug)]
enum PosixOp<'a> {
    Length,
    Default { colon: bool, word: &'a str },
    Alternative { colon: bool, word: &'a str },
    Required { colon: bool },
    Substring { offset: i64, length: Option<i64> },
    RemovePrefix { pattern: &'a str, longest: bool },
    RemoveSuffix { pattern: &'a str, longest: bool },
    Replace { pattern: &'a str, replacement: &'a str, mode: ReplaceMode },
    Case { upper: bool, all: bool },
}

struct Posix<'a> {
    name: &'a str,
    kind: PosixOp<'a>,
}

fn parse_posix(inner: &str) -> Option<Posix<'_>> {
    if let Some(name) = inner.strip_prefix('#')
        && !name.is_empty()
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
    {
        return Some(Posix { name, kind: PosixOp::Length });
    }
    let name_len = inner.bytes().take_while(|c| c.is_ascii_alphanumeric() || *c == b'_').count();
    if name_len == 0 {
        return None;
    }
    let (name, rest) = inner.split_at(name_len);
    let kind = if let Some(w) = rest.strip_prefix(":-").or_else(|| rest.strip_prefix(":=")) {
        PosixOp::Default { colon: true, word: w }
    } else if let Some(w) = rest.strip_prefix(":+") {
        PosixOp::Alternative { colon: true, word: w }
    } else if rest.starts_with(":?") {
        PosixOp::Required { colon: true }
    } else if let Some(spec) = rest.strip_prefix(':') {
        let (off, len) = match spec.split_once(':') {
            Some((o, l)) => (o, Some(l)),
            None => (spec, None),
        };
        let offset = parse_arith(off)?;
        let length = match len {
            Some(l) => Some(parse_arith(l)?),
            None => None,
        };
        PosixOp::Substring { offset, length }
    } else if let Some(w) = rest.strip_prefix('-').or_else(|| rest.strip_prefix('=')) {
        PosixOp::Default { colon: false, word: w }
    } else if let Some(w) = rest.strip_prefix('+') {
        PosixOp::Alternative { colon: false, word: w }
    } else if rest.starts_with('?') {
        PosixOp::Required { colon: false }
    } else if let Some(p) = rest.strip_prefix("##") {
        PosixOp::RemovePrefix { pattern: p, longest: true }
    } else if let Some(p) = rest.strip_prefix('#') {
        PosixOp::RemovePrefix { pattern: p, longest: false }
    } else if let Some(p) = rest.strip_prefix("%%") {
        PosixOp::RemoveSuffix { pattern: p, longest: true }
    } else if let Some(p) = rest.strip_prefix('%') {
        PosixOp::RemoveSuffix { pattern: p, longest: false }
    } else if let Some(spec) = rest.strip_prefix('/') {
        let (mode, spec) = match spec.as_bytes().first() {
            Some(b'/') => (ReplaceMode::All, &spec[1..]),
            Some(b'#') => (ReplaceMode::Prefix, &spec[1..]),
            Some(b'%') => (ReplaceMode::Suffix, &spec[1..]),
            _ => (ReplaceMode::First, spec),
        };
        let (pattern, replacement) = split_unescaped(spec, '/');
        PosixOp::Replace { pattern, replacement, mode }
    } else if rest == "^^" || rest == "^" || rest == ",," || rest == "," {
        PosixOp::Case { upper: rest.starts_with('^'), all: rest.len() == 2 }
    } else {
        return None;
    };
    Some(Posix { name, kind })
}

fn split_unescaped(s: &str, sep: char) -> (&str, &str) {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            return (&s[..i], &s[i + c.len_utf8()..]);
        }
    }
    (s, "")
}

/// The integers Bash accepts as substring bounds: `3`, ` -3`, `(-3)`.
fn parse_arith(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s.strip_prefix('(').and_then(|s| s.strip_suffix(')')).unwrap_or(s).trim();
    if s.is_empty() {
        return Some(0);
    }
    s.parse().ok()
}

fn substring(value: &str, offset: i64, length: Option<i64>) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len() as i64;
    let start = if offset < 0 { (n + offset).max(0) } else { offset.min(n) };
    let end = match length {
        None => n,
        Some(l) if l < 0 => (n + l).max(start),
        Some(l) => (start + l).min(n),
    };
    chars[start as usize..end as usize].iter().collect()
}

fn remove_prefix(value: &str, pat: &[char], longest: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let lens: Vec<usize> =
        if longest { (0..=chars.len()).rev().collect() } else { (0..=chars.len()).collect() };
    for len in lens {
        if glob_match(pat, &chars[..len]) {
            return chars[len..].iter().collect();
        }
    }
    value.to_owned()
}

fn remove_suffix(value: &str, pat: &[char], longest: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let starts: Vec<usize> =
        if longest { (0..=chars.len()).collect() } else { (0..=chars.len()).rev().collect() };
    for start in starts {
        if glob_match(pat, &chars[start..]) {
            return chars[..start].iter().collect();
        }
    }
    value.to_owned()
}

fn replace(value: &str, pat: &[char], replacement: &str, mode: ReplaceMode) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    match mode {
        ReplaceMode::Prefix => match (0..=n).rev().find(|&l| glob_match(pat, &chars[..l])) {
            Some(l) => format!("{replacement}{}", chars[l..].iter().collect::<String>()),
            None => value.to_owned(),
        },
        ReplaceMode::Suffix => match (0..=n).find(|&s| glob_match(pat, &chars[s..])) {
            Some(s) => format!("{}{replacement}", chars[..s].iter().collect::<String>()),
            None => value.to_owned(),
        },
        ReplaceMode::First | ReplaceMode::All => {
            if pat.is_empty() {
                return value.to_owned();
            }
            let mut out = String::new();
            let mut i = 0;
            let mut replaced = false;
            while i < n {
                if mode == ReplaceMode::First && replaced {
                    out.extend(&chars[i..]);
                    break;
                }
                // Bash replaces the longest match starting at the leftmost position.
                match (i + 1..=n).rev().find(|&e| glob_match(pat, &chars[i..e])) {
                    Some(e) => {
                        out.push_str(replacement);
                        i = e;
                        replaced = true;
                    }
                    None => {
                        out.push(chars[i]);
                        i += 1;
                    }
                }
            }
            out
        }
    }
}

fn change_case(value: &str, upper: bool, all: bool) -> String {
    let conv =
        |c: char| -> String { if upper { c.to_uppercase().collect() } else { c.to_lowercase().collect() } };
    if all {
        return value.chars().map(conv).collect();
    }
    let mut chars = value.chars();
    match chars.next() {
        Some(first) => conv(first) + chars.as_str(),
        None => String::new(),
    }
}

/// Shell glob match of the whole `text`: `*`, `?`, `[abc]`, `[!a-z]`, `\x`.
fn glob_match(pat: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() {
            match pat[p] {
                '*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class_match(pat, p, text[t]) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == '[' {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                '\\' if p + 1 < pat.len() => {
                    if pat[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if c == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|c| *c == '*')
}

/// Whether `c` is in the bracket class starting at `pat[p] == '['`, and the
/// index after the class; `None` when the class is not closed.
fn class_match(pat: &[char], p: usize, c: char) -> Option<(bool, usize)> {
    let mut i = p + 1;
    let negate = matches!(pat.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pat.len() {
        if pat[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < pat.len() && pat[i + 1] == '-' && pat[i + 2] != ']' {
            if pat[i] <= c && c <= pat[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if pat[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        let mut s = Scope::with_os_env([("HOME", "/synthetic-user"), ("SHELL", "/bin/bash")]);
        s.set("NAME", "Dagu");
        s.set("1", "foo");
        s.set("2", "bar");
        s.set("CONFIG", r#"{"port": 8080, "host": "localhost", "items": ["a", "b"], "nested": {"k": true}}"#);
        s.set("QUOTE", r#"say "hi" $5"#);
        s.set("EMPTY", "");
        s.set("TEST_ENV_1", "env_value_1");
        s.set_step(
            "build",
            StepInfo {
                stdout: Some("/logs/build.out".into()),
                stderr: None,
                exit_code: Some(42),
                output: Some(r#"{"version":"v1.2.3","artifact":{"url":"https://x/r.tgz"}}"#.into()),
            },
        );
        s.set_step(
            "plain",
            StepInfo { output: Some("hello world".into()), exit_code: Some(0), ..StepInfo::default() },
        );
        s.set_step("none", StepInfo { exit_code: Some(0), ..StepInfo::default() });
        s
    }

    fn value(input: &str) -> String {
        expand(input, &scope())
    }

    fn cmd(input: &str) -> String {
        expand_as(input, &scope(), Syntax::ShellCommand)
    }

    fn script(input: &str) -> String {
        expand_as(input, &scope(), Syntax::ShellScript)
    }

    #[test]
    fn plain_variables_and_positional_params() {
        assert_eq!(value("hi $NAME and ${NAME}!"), "hi Dagu and Dagu!");
        assert_eq!(cmd("echo '$1' is $1, '$2' is $2"), "echo '$1' is foo, '$2' is bar");
        assert_eq!(value("$12"), "foo2");
    }

    #[test]
    fn process_environment_is_left_to_the_shell_in_commands() {
        assert_eq!(value("$HOME/x"), "/synthetic-user/x");
        assert_eq!(cmd("cd $HOME && echo $NAME"), "cd $HOME && echo Dagu");
        assert_eq!(value("[$UNDEFINED]"), "[]");
        assert_eq!(cmd("[$UNDEFINED] [${UNDEFINED:-x}]"), "[$UNDEFINED] [${UNDEFINED:-x}]");
    }

    #[test]
    fn scripts_only_get_references_and_positional_params() {
        assert_eq!(
            script(r#"echo "$NAME" $1 ${build.output.version} "${plain.output}""#),
            r#"echo "$NAME" foo v1.2.3 "hello world""#
        );
    }

    #[test]
    fn dollar_escape() {
        assert_eq!(value(r"\$HOME"), "$HOME");
        assert_eq!(value(r"\\$NAME"), r"\\Dagu");
        assert_eq!(cmd(r#"echo "\$NAME""#), r#"echo "\$NAME""#);
        assert_eq!(value(r"a\b"), r"a\b");
    }

    #[test]
    fn json_paths() {
        assert_eq!(value("${CONFIG.host}:${CONFIG.port}"), "localhost:8080");
        assert_eq!(value("$CONFIG.host:$CONFIG.port"), "localhost:8080");
        assert_eq!(value("${CONFIG.items[1]} ${CONFIG.items[-1]} ${CONFIG.nested}"), r#"b b {"k":true}"#);
        assert_eq!(value("[${CONFIG.missing}]"), "[]");
        // Not JSON: the dotted text is ordinary text after the variable.
        assert_eq!(value("$NAME.txt"), "Dagu.txt");
        assert_eq!(value("${NAME.txt}"), "${NAME.txt}");
    }

    #[test]
    fn step_references() {
        assert_eq!(cmd("${build.exitCode} ${build.exit_code}"), "42 42");
        assert_eq!(cmd("${build.output.artifact.url}"), "https://x/r.tgz");
        assert_eq!(cmd("${build.stdout} ${build.stdout:0:5}"), "/logs/build.out /logs");
        assert_eq!(cmd("${plain.output:0:5}|${plain.output:6}"), "hello|world");
        assert_eq!(cmd("'ref=${none.output}'"), "'ref=${none.output}'");
        assert_eq!(cmd("${build.stderr}"), "${build.stderr}");
    }

    #[test]
    fn double_quoted_references_stay_one_word() {
        assert_eq!(cmd(r#"echo "${QUOTE}""#), r#"echo "say \"hi\" \$5""#);
        assert_eq!(value(r#""${QUOTE}""#), r#""say \"hi\" $5""#);
        assert_eq!(cmd(r#"echo "${NAME}-x""#), r#"echo "Dagu-x""#);
    }

    #[test]
    fn posix_operators_in_values() {
        assert_eq!(value("${TEST_ENV_1:0:3}_step2"), "env_step2");
        assert_eq!(value("${NOPE:-fallback} ${EMPTY:-e} ${EMPTY-e} ${NAME:+set}"), "fallback e  set");
        assert_eq!(value("${#NAME} ${NAME: -2} ${NAME:1:-1}"), "4 gu ag");
        assert_eq!(
            value("${TEST_ENV_1#env_} ${TEST_ENV_1##*_} ${TEST_ENV_1%_*} ${TEST_ENV_1%%_*}"),
            "value_1 1 env_value env"
        );
        assert_eq!(
            value("${TEST_ENV_1/_/-} ${TEST_ENV_1//_/-} ${NAME^^} ${NAME,,}"),
            "env-value_1 env-value-1 DAGU dagu"
        );
        assert_eq!(value("${NOPE:-$NAME}"), "Dagu");
        assert_eq!(value("${NOPE:?must be set}"), "${NOPE:?must be set}");
    }

    #[test]
    fn single_quoted_variables_are_literal() {
        assert_eq!(value("'$NAME' '${NAME}'"), "'$NAME' '${NAME}'");
    }

    #[test]
    fn backticks_run_through_the_runner() {
        let s = scope();
        let mut seen = Vec::new();
        let mut runner = |c: &str, _: &Scope| {
            seen.push(c.to_owned());
            Ok(" 20260101 \n".to_owned())
        };
        let out = expand_with_commands("d=`date +%Y $NAME $HOME`", &s, &mut runner).unwrap();
        assert_eq!(out, "d=20260101");
        assert_eq!(seen, vec!["date +%Y Dagu $HOME"]);
        assert_eq!(expand("`date`", &s), "`date`");
        let err = expand_with_commands("`false`", &s, &mut NoCommands).unwrap_err();
        assert!(err.to_string().contains("`false`"));
        assert_eq!(expand_with_commands("a `` b `open", &s, &mut NoCommands).unwrap(), "a `` b `open");
    }

    #[test]
    fn substituted_values_are_not_expanded_again() {
        let mut s = scope();
        s.set("A", "$NAME `rm -rf x`");
        assert_eq!(expand_with_commands("$A", &s, &mut NoCommands).unwrap(), "$NAME `rm -rf x`");
    }

    #[test]
    fn globs() {
        let g = |p: &str, t: &str| glob_match(&p.chars().collect::<Vec<_>>(), &t.chars().collect::<Vec<_>>());
        assert!(g("a*c", "abbc"));
        assert!(g("a?c", "abc"));
        assert!(g("[a-c]x", "bx"));
        assert!(!g("[!a-c]x", "bx"));
        assert!(g(r"\*", "*"));
        assert!(!g("a*d", "abc"));
    }

    #[test]
    fn exports_skip_positional_params() {
        let names: Vec<String> = scope().exports().into_iter().map(|(k, _)| k).collect();
        assert!(names.contains(&"NAME".to_owned()));
        assert!(!names.contains(&"1".to_owned()));
        assert_eq!(scope().default_shell(), "/bin/bash");
        assert_eq!(Scope::new().default_shell(), "sh");
    }
}

//! How a step becomes processes, as a pure function of the step, its
//! workflow and a [`Scope`]: which shell (Dagu's rules), which words, which
//! script body, which working directory and which env. The engine writes the
//! script files and starts the processes.

use std::path::{Component, Path, PathBuf};

use super::cmdline::split_words;
use super::condition::ConditionCheck;
use super::model::{Action, Shell, Step, Workflow};
use crate::vars::{self, CommandRunner, ExpandError, Scope, Syntax};

/// What to run for one attempt of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// Run in order; the step fails at the first process that fails (Dagu's
    /// multiple commands), and its exit code is that process's.
    pub processes: Vec<Process>,
    /// The directory to run in; Dagu creates it when missing.
    pub working_dir: PathBuf,
    /// Variables to set on top of the inherited process environment: the
    /// scope's workflow variables and `PWD`.
    pub env: Vec<(String, String)>,
    /// Also write stdout (stderr) to this file.
    pub stdout: Option<PathBuf>,
    /// Also write stderr to this file.
    pub stderr: Option<PathBuf>,
}

/// One process of an [`Invocation`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Process {
    /// Run `argv[0]` with the rest as its arguments.
    Exec {
        /// The program and its arguments.
        argv: Vec<String>,
    },
    /// Write `body` to a new file, make it executable (Dagu uses mode 0750),
    /// run `argv` followed by the file's path, and remove the file after.
    /// An empty `argv` means running the file itself.
    Script {
        /// The interpreter and its arguments, before the file's path.
        argv: Vec<String>,
        /// The script, expanded.
        body: String,
    },
}

/// The shell a step runs with, its words expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolvedShell {
    /// `shell: direct`: no shell at all.
    Direct,
    /// A shell program.
    Program {
        /// The program and its arguments, e.g. `["/bin/bash", "-e"]`.
        argv: Vec<String>,
        /// The step set `shell:` itself; then Dagu adds no `-e` and ignores a script's `#!` line.
        chosen_by_step: bool,
    },
}

impl ResolvedShell {
    /// The program and its arguments; empty for [`ResolvedShell::Direct`].
    pub fn argv(&self) -> &[String] {
        match self {
            ResolvedShell::Direct => &[],
            ResolvedShell::Program { argv, .. } => argv,
        }
    }
}

/// The flag that makes `program` run a command string.
pub(crate) fn command_flag(program: &str) -> &'static str {
    match shell_name(program).as_str() {
        "powershell" | "pwsh" => "-Command",
        "cmd" => "/c",
        "nix-shell" => "--run",
        _ => "-c",
    }
}

fn shell_name(program: &str) -> String {
    let base = program.rsplit(['/', '\\']).next().unwrap_or(program).to_ascii_lowercase();
    base.strip_suffix(".exe").map(str::to_owned).unwrap_or(base)
}

/// Shells that understand `-e` (stop at the first failing command).
fn is_unix_like(program: &str) -> bool {
    matches!(shell_name(program).as_str(), "sh" | "bash" | "zsh" | "ksh" | "ash" | "dash")
}

fn resolve(shell: &Shell, scope: &Scope, chosen_by_step: bool) -> ResolvedShell {
    match shell {
        Shell::Direct => ResolvedShell::Direct,
        Shell::Program { program, args } => {
            let argv = std::iter::once(program).chain(args).map(|w| vars::expand(w, scope)).collect();
            ResolvedShell::Program { argv, chosen_by_step }
        }
    }
}

impl Workflow {
    /// The shell of `step` (or, for `None`, of the workflow's preconditions):
    /// the step's `shell`, else the workflow's, else `$SHELL`, else `sh`.
    pub fn shell_for(&self, step: Option<&Step>, scope: &Scope) -> ResolvedShell {
        match (step.and_then(|s| s.shell.as_ref()), &self.shell) {
            (Some(own), _) => resolve(own, scope, true),
            (None, Some(shared)) => resolve(shared, scope, false),
            (None, None) => {
                ResolvedShell::Program { argv: vec![scope.default_shell()], chosen_by_step: false }
            }
        }
    }

    /// The steps' working directory: `working_dir` expanded (`~` is `$HOME`)
    /// and taken relative to the file's directory; that directory when unset.
    pub fn working_dir(&self, scope: &Scope) -> PathBuf {
        let file_dir = self
            .file
            .as_deref()
            .and_then(Path::parent)
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), clean);
        match &self.working_dir {
            Some(dir) => resolve_path(dir, &file_dir, scope),
            None => file_dir,
        }
    }

    /// Adds the workflow's env to `scope` in order, each value expanded with
    /// what is already there — so set the params first, as Dagu resolves
    /// params before env. Backticks run through `runner`.
    pub fn resolve_env(&self, scope: &mut Scope, runner: &mut dyn CommandRunner) -> Result<(), ExpandError> {
        for var in &self.env {
            let value = vars::expand_with_commands(&var.value, scope, runner)?;
            scope.set(var.name.clone(), value);
        }
        Ok(())
    }

    /// Checks the preconditions of `step`, or of the workflow for `None`,
    /// all of them (as Dagu does, to report each). Value conditions are
    /// decided here; command conditions come back as
    /// [`ConditionCheck::Run`] for the engine to run.
    pub fn check_preconditions(
        &self,
        step: Option<&Step>,
        scope: &Scope,
        runner: &mut dyn CommandRunner,
    ) -> Result<Vec<ConditionCheck>, ExpandError> {
        let shell = self.shell_for(step, scope);
        let conditions = match step {
            Some(s) => &s.preconditions,
            None => &self.preconditions,
        };
        conditions.iter().map(|c| c.check(shell.argv(), scope, runner)).collect()
    }
}

impl Step {
    /// Adds the step's env to `scope` in order, each value expanded with what
    /// is already there; backticks run through `runner`.
    pub fn resolve_env(&self, scope: &mut Scope, runner: &mut dyn CommandRunner) -> Result<(), ExpandError> {
        for var in &self.env {
            let value = vars::expand_with_commands(&var.value, scope, runner)?;
            scope.set(var.name.clone(), value);
        }
        Ok(())
    }

    /// The step's working directory: its `working_dir` expanded, relative to
    /// the workflow's; the workflow's when unset.
    pub fn working_dir(&self, workflow: &Workflow, scope: &Scope) -> PathBuf {
        let base = workflow.working_dir(scope);
        match &self.working_dir {
            Some(dir) => resolve_path(dir, &base, scope),
            None => base,
        }
    }

    /// What to run. `scope` must hold everything the step sees: params,
    /// workflow env, outputs of the steps it depends on, Cairn's special
    /// variables, then the step's env (see [`Step::resolve_env`]).
    ///
    /// Dagu's rules: commands run as `<shell> [-e] -c <command>`, where `-e`
    /// is added to sh-like shells unless the step chose its shell; a
    /// multi-line command or `script:` is written to a file run by the shell
    /// (or by its `#!` line, or by `command:` when both are given); under
    /// `shell: direct` and for `exec:`, words are run without a shell.
    ///
    /// A `task_type` step ([`Action::Task`]) has no processes: an SDK worker
    /// runs it from its task type and input.
    pub fn invocation(&self, workflow: &Workflow, scope: &Scope) -> Invocation {
        let shell = workflow.shell_for(Some(self), scope);
        let working_dir = self.working_dir(workflow, scope);
        let processes = match &self.action {
            Action::Commands(lines) => lines.iter().map(|l| command_process(l, &shell, scope)).collect(),
            Action::Script { body, interpreter } => {
                vec![script_process(body, interpreter.as_deref(), &shell, scope)]
            }
            Action::Exec { program, args } => {
                let argv = std::iter::once(program).chain(args).map(|w| vars::expand(w, scope)).collect();
                vec![Process::Exec { argv }]
            }
            // An SDK worker's handler runs it; there is no process.
            Action::Task { .. } => Vec::new(),
        };
        let mut env = scope.exports();
        env.retain(|(k, _)| k != "PWD");
        env.push(("PWD".to_owned(), working_dir.display().to_string()));
        let file = |f: &Option<String>| f.as_ref().map(|f| resolve_path(f, &working_dir, scope));
        Invocation { processes, stdout: file(&self.stdout), stderr: file(&self.stderr), working_dir, env }
    }
}

fn words(line: &str, scope: &Scope) -> Vec<String> {
    // Split before expanding, as Dagu does, so a value with spaces stays one word.
    let words = split_words(line).unwrap_or_else(|_| vec![line.to_owned()]);
    words.iter().map(|w| vars::expand(w, scope)).collect()
}

fn command_process(line: &str, shell: &ResolvedShell, scope: &Scope) -> Process {
    match shell {
        ResolvedShell::Direct => Process::Exec { argv: words(line, scope) },
        ResolvedShell::Program { argv, chosen_by_step } => {
            let mut argv = argv.clone();
            if !chosen_by_step && is_unix_like(&argv[0]) && !argv.iter().any(|a| a == "-e") {
                argv.push("-e".to_owned());
            }
            let flag = command_flag(&argv[0]);
            if !argv.iter().any(|a| a == flag) {
                argv.push(flag.to_owned());
            }
            argv.push(vars::expand_as(line, scope, Syntax::ShellCommand));
            Process::Exec { argv }
        }
    }
}

fn script_process(body: &str, interpreter: Option<&str>, shell: &ResolvedShell, scope: &Scope) -> Process {
    let body = vars::expand_as(body, scope, Syntax::ShellScript);
    if let Some(i) = interpreter {
        return Process::Script { argv: words(i, scope), body };
    }
    let shebang = body.strip_prefix("#!").map(|rest| rest.lines().next().unwrap_or("").trim().to_owned());
    match shell {
        ResolvedShell::Program { chosen_by_step: true, .. } => {}
        _ => {
            if let Some(line) = shebang.filter(|l| !l.is_empty()) {
                let argv = split_words(&line).unwrap_or_else(|_| vec![line.clone()]);
                return Process::Script { argv, body };
            }
        }
    }
    match shell {
        ResolvedShell::Direct => Process::Script { argv: Vec::new(), body },
        ResolvedShell::Program { argv, chosen_by_step } => {
            // The file is the script, not a command string: drop a `-c`.
            let mut argv: Vec<String> = argv.iter().filter(|a| a.as_str() != "-c").cloned().collect();
            if !chosen_by_step && is_unix_like(&argv[0]) && !argv.iter().any(|a| a == "-e") {
                argv.push("-e".to_owned());
            }
            Process::Script { argv, body }
        }
    }
}

/// `raw` expanded, `~` replaced by `$HOME`, relative to `base`, with `.`
/// and `..` resolved by name.
fn resolve_path(raw: &str, base: &Path, scope: &Scope) -> PathBuf {
    let expanded = vars::expand(raw, scope);
    let expanded = expanded.trim();
    let path = match (expanded.strip_prefix('~'), scope.home()) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            PathBuf::from(format!("{home}{rest}"))
        }
        _ => PathBuf::from(expanded),
    };
    clean(&if path.is_absolute() { path } else { base.join(path) })
}

fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() { PathBuf::from(".") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_by_name() {
        assert_eq!(clean(Path::new("/a/./b/../c/")), PathBuf::from("/a/c"));
        assert_eq!(clean(Path::new("a/../../b")), PathBuf::from("../b"));
        assert_eq!(clean(Path::new("./")), PathBuf::from("."));
        let scope = Scope::with_os_env([("HOME", "/synthetic-user")]);
        assert_eq!(resolve_path("~/", Path::new("/x"), &scope), PathBuf::from("/synthetic-user"));
        assert_eq!(resolve_path("sub/dir", Path::new("/x"), &scope), PathBuf::from("/x/sub/dir"));
        assert_eq!(resolve_path("$HOME/w", Path::new("/x"), &scope), PathBuf::from("/synthetic-user/w"));
    }

    #[test]
    fn shell_names() {
        assert_eq!(command_flag("/usr/bin/pwsh"), "-Command");
        assert_eq!(command_flag("bash"), "-c");
        assert!(is_unix_like("/bin/sh"));
        assert!(!is_unix_like("/usr/bin/fish"));
    }
}

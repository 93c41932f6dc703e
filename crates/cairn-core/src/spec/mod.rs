//! The workflow spec: Dagu's DAG YAML (and Cairn's own keys) read, validated
//! and turned into a [`Workflow`] the engine can run without looking at YAML.
//!
//! Entry points: [`load`] and [`parse`] build a [`Workflow`]; on it,
//! [`Workflow::resolve_params`], [`Workflow::resolve_env`],
//! [`Workflow::check_preconditions`] and [`Step::invocation`] answer what a
//! run needs, as pure functions of a [`Scope`](crate::vars::Scope) the engine fills.
//!
//! Architecture invariant: nothing here starts a process or touches the
//! file system, except [`load`] reading the file. What needs a process —
//! command preconditions, backtick substitution — comes back to the engine as
//! a value to run ([`ConditionCheck::Run`]) or goes through its
//! [`CommandRunner`](crate::vars::CommandRunner).
//!
//! Architecture invariant: a file is checked completely before it is
//! refused; [`SpecError`] lists every problem, each with its line, column and
//! field path.

mod build;
mod cmdline;
mod condition;
mod error;
mod graph;
mod invocation;
mod keys;
mod model;
mod params;
mod step;
mod yaml;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use condition::{CommandCheck, ConditionCheck};
pub use error::{Diagnostic, Pos, SpecError};
pub use invocation::{Invocation, Process, ResolvedShell};
pub use model::{
    Action, ContinueOn, EnvVar, Expected, HandlerKind, Handlers, Label, OutputPattern, OverlapPolicy, Param,
    ParamType, Precondition, Retention, Schedule, Schedules, Shell, Signal, Step, StepIndex, Workflow,
    WorkflowKind,
};
pub use params::params_json;

/// Parses and validates workflow YAML. `file` names the file in diagnostics
/// and is where relative working directories start (its directory).
pub fn parse(source: &str, file: Option<&Path>) -> Result<Workflow, SpecError> {
    build::parse_source(source, file, file.map(|p| p.display().to_string()))
}

/// Reads, parses and validates the workflow file at `path`. Diagnostics name
/// the path as given; [`Workflow::file`] holds it made absolute.
pub fn load(path: impl AsRef<Path>) -> Result<Workflow, SpecError> {
    let path = path.as_ref();
    let display = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| {
        SpecError::single(Diagnostic {
            file: Some(display.clone()),
            pos: None,
            path: String::new(),
            message: format!("cannot read the workflow file: {e}"),
            hint: None,
        })
    })?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    build::parse_source(&source, Some(&absolute), Some(display))
}

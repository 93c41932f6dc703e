//! Loading a workflow file for a run: parse and validate it, resolve the
//! params given on the command line, and build the engine's plan and runner.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use cairn_core::spec::{self, Workflow};
use cairn_engine::{RunPlan, ShellRunner, shell};

use crate::InvalidInput;

pub struct Loaded {
    pub workflow: Arc<Workflow>,
    source: String,
    params: Vec<(String, String)>,
    params_json: Option<String>,
}

/// Everything wrong with the file or the params is an [`InvalidInput`]
/// naming the file, line and field.
pub fn load(path: &Path, cli_params: &[String]) -> Result<Loaded> {
    let workflow = spec::load(path).map_err(|e| InvalidInput(e.to_string()))?;
    let source =
        std::fs::read_to_string(path).map_err(|e| InvalidInput(format!("{}: {e}", path.display())))?;
    if let Some(step) = workflow.steps.iter().find(|s| s.queue.is_some()) {
        return Err(InvalidInput(format!(
            "{}: step {:?} has `queue: {}`: steps for remote workers need `cairn serve`; `cairn run` runs every step here",
            path.display(),
            step.name,
            step.queue.as_deref().unwrap_or_default()
        ))
        .into());
    }
    let params = workflow.resolve_params(cli_params).map_err(|e| InvalidInput(e.to_string()))?;
    let params_json = spec::params_json(cli_params, &params);
    Ok(Loaded { workflow: Arc::new(workflow), source, params, params_json })
}

impl Loaded {
    pub fn plan(&self, trigger: &str) -> RunPlan {
        shell::plan(&self.workflow, &self.params, self.source.clone(), trigger)
    }

    pub fn runner(&self) -> Result<ShellRunner> {
        ShellRunner::new(self.workflow.clone(), &self.params, self.params_json.clone())
            .map_err(|e| InvalidInput(format!("{}: {e}", self.workflow.name)).into())
    }

    /// Whether any step has preconditions the runner must check before it starts.
    pub fn needs_prechecks(&self) -> bool {
        shell::needs_prechecks(&self.workflow)
    }
}

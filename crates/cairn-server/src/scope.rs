//! What a token scoped to workflows sees of the lists across workflows
//! (runs, tasks, status counts, trends, phase statistics, the status
//! report, alerts, reaped attempts, live events): only its workflows.
//! The route guard lets such a token through to these routes
//! ([`FILTERED`]), and each handler narrows its workflow filter with
//! [`visible_workflows`] before it asks the store, so the store's indexes
//! serve a scoped list as they serve any list of workflows. (The live
//! events route filters each event by the scope itself.)

use cairn_core::auth::WorkflowScope;
use cairn_store::Store;

use crate::app::AppState;
use crate::auth::Caller;
use crate::control::Control;
use crate::error::{ApiError, ErrorCode};

/// The routes across workflows that narrow their answer to a scoped
/// token's workflows themselves.
pub(crate) const FILTERED: [&str; 9] = [
    "/api/v1/runs",
    "/api/v1/tasks",
    "/api/v1/stats/status",
    "/api/v1/stats/trend",
    "/api/v1/stats/phases",
    "/api/v1/reports/status",
    "/api/v1/alerts",
    "/api/v1/reaped",
    "/api/v1/events",
];

/// How many workflow names one store read brings.
const PAGE: usize = 1000;

/// The workflows a list may show the caller, given those it `asked` for
/// (empty: every workflow). Unscoped callers get what they asked for. A
/// scoped caller that names a workflow outside its scope is refused (403);
/// one that names none gets every workflow of its scope that has runs or
/// a file. `None`: the scope holds no workflow at all, and the answer is
/// empty.
pub(crate) async fn visible_workflows<S: Store, C: Control>(
    state: &AppState<S, C>,
    caller: Option<&Caller>,
    asked: Vec<String>,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some((token, scope)) = caller.and_then(|c| Some((&c.name, c.workflows.as_ref()?))) else {
        return Ok(Some(asked));
    };
    if let Some(outside) = asked.iter().find(|w| !scope.matches(w)) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("token {token} is scoped to the workflows {scope}, not {outside}"),
        )
        .field("workflow"));
    }
    if !asked.is_empty() {
        return Ok(Some(asked));
    }
    let mut names = in_scope(scope, state.catalog.snapshot().entries().map(|e| e.name.clone()));
    let mut after = String::new();
    loop {
        let page = state.store.run_workflows(&after, PAGE).await?;
        let done = page.len() < PAGE;
        after = page.last().cloned().unwrap_or_default();
        names.extend(in_scope(scope, page));
        if done {
            break;
        }
    }
    names.sort_unstable();
    names.dedup();
    Ok((!names.is_empty()).then_some(names))
}

fn in_scope(scope: &WorkflowScope, names: impl IntoIterator<Item = String>) -> Vec<String> {
    names.into_iter().filter(|n| scope.matches(n)).collect()
}

//! The engine behind the API: [`Control`] implemented by the run manager,
//! with workflows taken from the catalog by name.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use cairn_core::event::Event;
use cairn_core::protocol::{
    CompleteRequest, CompleteResponse, HeartbeatRequest, HeartbeatResponse, LeaseRequest, LeaseResponse,
    LogStream,
};
use cairn_core::record::Actor;
use cairn_core::{LeaseToken, RunId, TaskId};
use cairn_engine::{EngineError, Manager};
use cairn_store::Store;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;

use crate::catalog::Catalog;
use crate::control::{Control, ControlError};

pub struct EngineControl<S: Store> {
    manager: Arc<Manager<S>>,
    catalog: Catalog,
}

impl<S: Store> EngineControl<S> {
    pub fn new(manager: Arc<Manager<S>>, catalog: Catalog) -> Self {
        EngineControl { manager, catalog }
    }

    pub fn manager(&self) -> &Arc<Manager<S>> {
        &self.manager
    }
}

fn engine_error(e: EngineError) -> ControlError {
    match e {
        EngineError::Invalid(message) => ControlError::Invalid { field: "params".into(), message },
        EngineError::NotFound(what) => ControlError::NotFound { what },
        EngineError::Conflict(message) | EngineError::TakenOver { reason: message, .. } => {
            ControlError::Conflict { message }
        }
        EngineError::Store(e) => e.into(),
        e => ControlError::Internal { message: e.to_string() },
    }
}

impl<S: Store> Control for EngineControl<S> {
    async fn trigger(
        &self,
        workflow: &str,
        params: Vec<String>,
        actor: Actor,
    ) -> Result<RunId, ControlError> {
        let entry = self
            .catalog
            .get(workflow)
            .ok_or_else(|| ControlError::NotFound { what: format!("workflow {workflow:?}") })?;
        let Some(spec) = entry.workflow() else {
            let problems: Vec<String> = entry.errors().iter().map(ToString::to_string).collect();
            return Err(ControlError::Invalid { field: "workflow".into(), message: problems.join("; ") });
        };
        self.manager
            .submit_by(spec.clone(), entry.source.clone(), &params, "api", actor)
            .await
            .map_err(engine_error)
    }

    async fn cancel(&self, run: RunId, actor: Actor) -> Result<(), ControlError> {
        self.manager.cancel(run, actor).await.map_err(engine_error)
    }

    async fn retry(
        &self,
        run: RunId,
        from_step: Option<String>,
        actor: Actor,
    ) -> Result<RunId, ControlError> {
        self.manager.retry_by(run, from_step.as_deref(), actor).await.map_err(engine_error)
    }

    async fn lease(&self, req: LeaseRequest) -> Result<LeaseResponse, ControlError> {
        self.manager.lease(&req).await.map_err(engine_error)
    }

    async fn heartbeat(&self, req: HeartbeatRequest) -> Result<HeartbeatResponse, ControlError> {
        Ok(self.manager.heartbeat(req).await)
    }

    async fn complete(&self, task: TaskId, req: CompleteRequest) -> Result<CompleteResponse, ControlError> {
        match self.manager.complete(task, req).await {
            Ok(status) => Ok(CompleteResponse { status }),
            Err(_) => Err(ControlError::LeaseStale { task }),
        }
    }

    async fn append_log(
        &self,
        task: TaskId,
        token: LeaseToken,
        stream: LogStream,
        bytes: Bytes,
    ) -> Result<(), ControlError> {
        let (stdout, stderr) =
            self.manager.log_paths(task, token).await.map_err(|_| ControlError::LeaseStale { task })?;
        let path: PathBuf = match stream {
            LogStream::Stdout => stdout,
            LogStream::Stderr => stderr,
        };
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(|e| internal(&path, e))?;
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(|e| internal(&path, e))?;
        file.write_all(&bytes).await.map_err(|e| internal(&path, e))?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.manager.subscribe()
    }
}

fn internal(path: &std::path::Path, e: std::io::Error) -> ControlError {
    ControlError::Internal { message: format!("cannot write the log {}: {e}", path.display()) }
}

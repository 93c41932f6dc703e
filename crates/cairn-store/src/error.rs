//! The store's one error type.

/// A storage failure. Every variant says whether the batch that hit it was
/// certainly not applied, which tells a caller whether retrying is safe.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error(
        "the store at {path} was written by a newer Cairn (schema version {found}, this build knows up to {known}); upgrade cairn"
    )]
    TooNew { path: String, found: i64, known: i64 },
    /// A search the store cannot serve as asked (a cursor from another
    /// search, a window or page size out of bounds); nothing was read.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("store migration failed: {0}")]
    Migration(String),
    #[error("invalid change: {0}")]
    InvalidChange(String),
    /// A run handed to [`Store::import_runs`](crate::Store::import_runs)
    /// that cannot be imported: `field` names the part of it at fault
    /// (`run.status`, `tasks[2].attempt`, `id`, …). Nothing of the call was
    /// written.
    #[error("cannot import run {run}: {field}: {reason}")]
    InvalidImport { run: cairn_core::RunId, field: String, reason: String },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("the store is shut down")]
    Closed,
    /// The connection to the database broke while a commit was under way:
    /// the batch may or may not have been applied. Read before repeating it.
    #[error(
        "the database connection was lost while committing; the batch may or may not have been applied: {0}"
    )]
    CommitUnknown(String),
}

impl StoreError {
    /// True when the failed call certainly changed nothing, so repeating it
    /// cannot apply it twice.
    pub fn is_certainly_not_applied(&self) -> bool {
        !matches!(self, StoreError::Closed | StoreError::CommitUnknown(_))
    }
}

//! Cairn's HTTP API (`/api/v1`), the worker protocol, live events over a
//! WebSocket, and `/metrics` — the face of `cairn serve`.
//!
//! Entry points: [`router`] builds the whole API from an [`AppState`]: a
//! [`Store`](cairn_store::Store) it reads, a [`Control`] it asks for every
//! change (the engine), and a [`Catalog`] of workflow files.
//!
//! Architecture invariant: the server never writes a status to the store.
//! Reads go to the store; every change — trigger, cancel, retry, lease,
//! heartbeat, completion, log append — goes through [`Control`], so the
//! engine stays the only writer of statuses. The server's own writes are
//! the bookkeeping of access ([`auth`]): API tokens (made and revoked by
//! admins, their last use), web sessions and the audit log.
//!
//! Architecture invariant: bad input is a 4xx with a stable `code` and the
//! field at fault, never a 500 (`error.rs` holds the one table of codes).

pub mod analytics;
pub mod app;
pub mod auth;
pub mod catalog;
pub mod control;
pub mod engine;
pub mod error;
pub mod expected;
mod extract;
pub mod limits;
pub mod metrics;
pub mod model;
mod openapi;
pub mod presence;
mod routes;
mod scope;
#[cfg(feature = "ui")]
mod ui;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use app::{AppState, RouteAccess, ServerConfig, access_table, router};
pub use auth::{Access, AuthMode, Caller};
pub use catalog::Catalog;
pub use control::{Control, ControlError};
pub use engine::EngineControl;
pub use error::{ApiError, ErrorBody, ErrorCode};

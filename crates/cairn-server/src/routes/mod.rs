//! The handlers, one module per resource. Each handler carries its
//! `#[utoipa::path]` annotation, from which `app.rs` registers its route and
//! the OpenAPI document describes it.

pub(crate) mod alerts;
pub(crate) mod analytics;
pub(crate) mod audit;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod history;
pub(crate) mod logs;
pub(crate) mod reports;
pub(crate) mod runs;
pub(crate) mod session;
pub(crate) mod tasks;
pub(crate) mod tokens;
pub(crate) mod webhooks;
pub(crate) mod workers;
pub(crate) mod workflows;

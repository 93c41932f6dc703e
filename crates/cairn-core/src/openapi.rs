//! OpenAPI schemas (feature `openapi`) for the domain's scalar types, which
//! serialize as strings of their own shape: ids, lease tokens, timestamps,
//! statuses and actors. The server's OpenAPI document is generated from the
//! code; these say what each of those strings looks like.
//!
//! Only the server turns this on; nothing in the domain depends on it.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::record::Actor;
use crate::{AlertId, AuditId, LeaseToken, RunId, RunStatus, TaskId, TaskStatus, Timestamp, TokenId};

fn string(description: &str, pattern: Option<&str>, example: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(pattern)
        .examples([example])
}

macro_rules! scalar_schema {
    ($ty:ty, $name:literal, $build:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                RefOr::T(Schema::Object($build.build()))
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

const ULID: &str = "^[0-9A-HJKMNP-TV-Z]{26}$";

scalar_schema!(RunId, "RunId", string("A run's id: a ULID.", Some(ULID), "01JD8X3Q6V8Z2M4N5P7R9S1T3V"));
scalar_schema!(TaskId, "TaskId", string("A task's id: a ULID.", Some(ULID), "01JD8X3Q6W0A1B2C3D4E5F6G7H"));
scalar_schema!(
    AlertId,
    "AlertId",
    string("An alert's id: a ULID.", Some(ULID), "01JD8X3Q6X2K4M6N8P0R2S4T6V")
);
scalar_schema!(
    TokenId,
    "TokenId",
    string("An API token's id: a ULID (not its secret).", Some(ULID), "01JD8X3Q6Y3M5N7P9R1S3T5V7W")
);
scalar_schema!(
    AuditId,
    "AuditId",
    string("An audit event's id: a ULID.", Some(ULID), "01JD8X3Q6Z4N6P8R0S2T4V6W8X")
);
scalar_schema!(
    LeaseToken,
    "LeaseToken",
    string(
        "The lease token of one attempt: 32 lowercase hex digits. A credential: never log it.",
        Some("^[0-9a-f]{32}$"),
        "0123456789abcdef0123456789abcdef",
    )
);
scalar_schema!(
    Timestamp,
    "Timestamp",
    string("A UTC instant (RFC 3339, microseconds).", None, "2026-11-20T22:16:28.123456Z")
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
);
scalar_schema!(
    TaskStatus,
    "TaskStatus",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("A task's status."))
        .enum_values(Some(TaskStatus::ALL.map(TaskStatus::as_str)))
);
scalar_schema!(
    RunStatus,
    "RunStatus",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("A run's status."))
        .enum_values(Some(RunStatus::ALL.map(RunStatus::as_str)))
);
scalar_schema!(
    Actor,
    "Actor",
    string(
        "Who made a change: scheduler, executor, reaper, worker:ID or user:NAME.",
        Some("^(scheduler|executor|reaper|worker:.*|user:.*)$"),
        "user:alice",
    )
);

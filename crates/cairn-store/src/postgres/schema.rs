//! Connecting for the first time: the schema version check and the
//! versioned migrations in `migrations/postgres/V<n>__<name>.sql`, run by
//! refinery under a session advisory lock.
//!
//! Several servers may start at once against one database. Each takes the
//! lock on a connection of its own before it reads the version, so one
//! migrates while the others wait, and they then find the schema current
//! and apply nothing. The lock belongs to that connection: if a server dies
//! mid-migration, its connection closes and the lock goes with it (each
//! migration is its own transaction, so nothing half-applied stays).

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use super::describe;
use crate::error::StoreError;

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// The advisory lock key of Cairn's migrations ("cairn_mg" in ASCII).
const MIGRATION_LOCK: i64 = 0x6361_6972_6e5f_6d67;

/// The newest schema version among the migrations built in.
pub(super) fn latest_version() -> i64 {
    embedded::migrations::runner().get_migrations().iter().map(|m| i64::from(m.version())).max().unwrap_or(0)
}

/// Brings the database `config` points at up to [`latest_version`] and
/// returns the version it has then.
pub(super) async fn migrate(config: &Config, target: &str) -> Result<i64, StoreError> {
    let open_err = |reason: String| StoreError::Open { path: target.to_owned(), reason };
    let (mut client, connection) =
        config.connect(NoTls).await.map_err(|e| open_err(explain_connect_failure(&e)))?;
    let connection = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "the migration connection ended with an error");
        }
    });
    let result = migrate_locked(&mut client, target).await;
    // Closing the connection releases the lock whatever happened above.
    drop(client);
    let _ = connection.await;
    result
}

async fn migrate_locked(client: &mut Client, target: &str) -> Result<i64, StoreError> {
    let open_err =
        |e: tokio_postgres::Error| StoreError::Open { path: target.to_owned(), reason: describe(&e) };
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(open_err)?;
    if !locked {
        tracing::info!(database = %target, "another server is migrating the schema; waiting for it");
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(open_err)?;
    }

    let known = latest_version();
    let found = stored_version(client).await.map_err(open_err)?;
    if found > known {
        return Err(StoreError::TooNew { path: target.to_owned(), found, known });
    }
    if found < known {
        tracing::info!(database = %target, from = found, to = known, "migrating the store's schema");
        embedded::migrations::runner().run_async(client).await.map_err(|e| {
            StoreError::Migration(format!(
                "upgrading {target} from schema version {found} to {known}: {e}; the database is unchanged \
                 past the last version that applied, restore a backup or report this"
            ))
        })?;
    }
    let version = stored_version(client).await.map_err(open_err)?;
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await.map_err(open_err)?;
    Ok(version)
}

/// The highest version in refinery's history table, 0 before the first migration.
async fn stored_version(client: &Client) -> Result<i64, tokio_postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('refinery_schema_history') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    client
        .query_one("SELECT COALESCE(MAX(version), 0)::bigint FROM refinery_schema_history", &[])
        .await?
        .try_get(0)
}

fn explain_connect_failure(e: &tokio_postgres::Error) -> String {
    let code = e.code();
    let what = describe(e);
    if code == Some(&SqlState::INVALID_CATALOG_NAME) {
        format!("{what}: create the database first (createdb), or point the URL at one that exists")
    } else if code == Some(&SqlState::INVALID_PASSWORD)
        || code == Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
    {
        format!("{what}: check the user and password in the URL")
    } else if code.is_none() {
        format!("cannot connect ({what}); is PostgreSQL running there and reachable?")
    } else {
        what
    }
}

/// Brings the database at `url` up to schema `version` only, as an older
/// Cairn left it: for tests of the migrations after it.
#[cfg(any(test, feature = "conformance"))]
pub(crate) async fn migrate_to(url: &str, version: u16) -> Result<(), StoreError> {
    let open_err = |e: tokio_postgres::Error| StoreError::Open { path: url.to_owned(), reason: describe(&e) };
    let (mut client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(open_err)?;
    let connection = tokio::spawn(connection);
    let result = embedded::migrations::runner()
        .set_target(refinery::Target::Version(version.into()))
        .run_async(&mut client)
        .await
        .map(|_| ())
        .map_err(|e| StoreError::Migration(format!("migrating to version {version}: {e}")));
    drop(client);
    let _ = connection.await;
    result
}

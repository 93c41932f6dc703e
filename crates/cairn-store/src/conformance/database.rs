//! A PostgreSQL database made for one test, on the server of
//! `CAIRN_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/postgres`):
//! what every crate's PostgreSQL tests run on. It never skips: a server
//! that cannot be reached fails the test, saying so.

use cairn_core::LeaseToken;

/// A PostgreSQL database made for one test, dropped (with any sessions
/// left on it) when this goes. A test that panics may leave it behind.
pub struct TestDatabase {
    server: String,
    name: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let server = std::env::var("CAIRN_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let name = format!("cairn_test_{}", LeaseToken::random());
        let (client, connection) = match tokio_postgres::connect(&server, tokio_postgres::NoTls).await {
            Ok(pair) => pair,
            Err(e) => panic!(
                "PostgreSQL is not reachable at {server} ({e}): start one or set CAIRN_TEST_POSTGRES to its URL"
            ),
        };
        tokio::spawn(connection);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create the test database");
        TestDatabase { server, name }
    }

    /// A store on the database, migrated.
    pub async fn store(&self) -> crate::PostgresStore {
        crate::PostgresStore::connect(&self.url(), crate::PostgresOptions::default())
            .await
            .expect("connect to the test database")
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's URL with this database in place of its own.
    pub fn url(&self) -> String {
        match self.server.split_once("://") {
            Some((scheme, rest)) => {
                let (rest, query) = rest.split_once('?').map_or((rest, ""), |(r, q)| (r, q));
                let authority = rest.split_once('/').map_or(rest, |(authority, _)| authority);
                let query = if query.is_empty() { String::new() } else { format!("?{query}") };
                format!("{scheme}://{authority}/{}{query}", self.name)
            }
            None => format!("{} dbname={}", self.server, self.name),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop cannot await: a thread with a runtime of its own, whatever
        // runtime (if any) the test is on.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("could not drop the test database {}: {dropped:?}", self.name);
        }
    }
}

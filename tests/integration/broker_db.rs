//! The repository suite of `gds-db` against PostgreSQL (its unit tests cover SQLite),
//! and the helpers other tests use to get a fresh PostgreSQL database.
//!
//! `GDS_TEST_DATABASE_URL` names a server where the tests may create databases; it is set
//! by `scripts/pg-test-server.sh`, which `make test` runs. Without it these tests fail
//! (they never skip): PostgreSQL is the production database.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use gds_db::{ConnectOptions, Db};
use sqlx::Connection;

/// The administrative URL of the test server, from `GDS_TEST_DATABASE_URL`.
pub fn pg_admin_url() -> String {
    std::env::var("GDS_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "GDS_TEST_DATABASE_URL is not set: run the tests through `make test` \
                 (scripts/pg-test-server.sh starts a throwaway PostgreSQL), e.g. \
                 `scripts/s3-test-server.sh scripts/pg-test-server.sh cargo test -p gds-tests --test integration`"
            )
        })
}

/// Creates a new, empty database on the test server and returns its URL. Every test gets
/// its own, so tests run in parallel.
pub async fn fresh_postgres_url() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let admin = pg_admin_url();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos();
    let name = format!(
        "gds_test_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = sqlx::postgres::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("connecting to GDS_TEST_DATABASE_URL ({admin}): {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
    let _ = conn.close().await;
    let (base, _) = admin
        .rsplit_once('/')
        .expect("GDS_TEST_DATABASE_URL ends with /DATABASE");
    format!("{base}/{name}")
}

/// A fresh, migrated PostgreSQL database.
pub async fn fresh_postgres_db() -> Db {
    Db::connect(&fresh_postgres_url().await, ConnectOptions::default())
        .await
        .expect("connecting to a fresh test database")
}

mod repository {
    use super::*;

    gds_db::repository_tests!(postgres: fresh_postgres_db().await);
}

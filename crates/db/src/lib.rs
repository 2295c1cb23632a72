//! The SQL state of the broker and the updater: service instances, bindings, and the
//! per-app lock that serialises every change to an app's bindings and target files.
//!
//! The bindings table is the source of truth for *which apps are monitored* (DESIGN.md
//! section 2); the object store is derived from it. One code path serves SQLite (the
//! embedded default) and PostgreSQL (several broker and updater processes sharing one
//! database): runtime `sqlx` queries on an [`sqlx::AnyPool`] with `$N` placeholders, and
//! only BIGINT and TEXT columns (timestamps are milliseconds since the Unix epoch, JSON is
//! normalised text). Migrations (`migrations/`) run on every [`Db::connect`].
//!
//! - Reads that need no consistency with a change go straight through [`Db`]
//!   (`instance`, `binding`, `bindings_of_app`, `all_bindings`, ...).
//! - Every change to an app's bindings goes through an [`AppTx`] from [`Db::lock_app`]:
//!   a transaction that holds the app's lock until it commits or is dropped (rolled
//!   back). Callers do their store write inside it, so "binding rows change" and "target
//!   file changes" happen together or not at all.
//! - A bind records itself as in progress ([`Db::start_binding_attempt`]) before its slow
//!   Cloud Controller look-up, so that an unbind arriving meanwhile can cancel it
//!   (see the `attempts` module).

mod attempts;
mod bindings;
mod error;
mod event_cursors;
mod instances;
mod leases;
mod model;
mod orphans;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

pub use attempts::BindingAttempt;
pub use bindings::AppTx;
pub use error::DbError;
pub use event_cursors::EventCursor;
pub use model::{
    Binding, DeleteInstance, Insert, InstanceUpdate, NewBinding, NewInstance, ServiceInstance,
};
pub use orphans::OrphanedBinding;

/// Which database a [`Db`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbKind {
    /// A SQLite file: one node (one or a few processes on one machine).
    Sqlite,
    /// PostgreSQL: any number of broker and updater processes.
    Postgres,
}

impl DbKind {
    /// The kind a `DATABASE_URL` names, or an error naming the setting.
    pub fn of_url(url: &str) -> Result<DbKind, DbError> {
        if url.starts_with("sqlite:") {
            Ok(DbKind::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DbKind::Postgres)
        } else {
            Err(DbError::InvalidUrl(
                "must start with sqlite: or postgres:// (e.g. sqlite:///var/lib/broker.db?mode=rwc)"
                    .into(),
            ))
        }
    }
}

/// Pool settings for [`Db::connect`].
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Most connections held open (PostgreSQL; SQLite uses at most this many too).
    pub max_connections: u32,
    /// How long a caller waits for a free connection before failing.
    pub acquire_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// The database: a connection pool plus what the per-app lock needs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    kind: DbKind,
    /// SQLite only: queues this process' app transactions in FIFO order. SQLite admits one
    /// writer at a time anyway; waiting here instead of in SQLite's busy handler (which
    /// polls with sleeps of up to 100 ms) keeps latency flat under load. Correctness does
    /// not depend on it: other processes on the same file are serialised by SQLite itself.
    sqlite_writer: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl Db {
    /// Connects to `url` (`sqlite:///abs/path.db?mode=rwc`, `sqlite://rel/path.db?mode=rwc`
    /// or `postgres://...`), creating a SQLite file's directory if needed, and runs the
    /// migrations. Errors never contain the URL's password.
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let kind = DbKind::of_url(url)?;
        if kind == DbKind::Sqlite
            && let Some(dir) = sqlite_parent_dir(url)
        {
            std::fs::create_dir_all(&dir).map_err(|source| DbError::DataDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        // Each connection to an in-memory SQLite database has a database of its own.
        let max_connections = if in_memory {
            1
        } else {
            options.max_connections.max(1)
        };
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(options.acquire_timeout);
        if kind == DbKind::Sqlite {
            // In WAL mode a commit only needs the WAL fsynced at checkpoints: durable
            // across process crashes, and after a power loss at worst the last
            // transactions are lost (the updater rebuilds the files from what remains).
            pool_options = pool_options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(conn)
                        .await
                        .map(drop)
                })
            });
        }
        let pool = pool_options
            .connect(url)
            .await
            .map_err(|source| DbError::Connect {
                url: redact(url),
                source,
            })?;
        if kind == DbKind::Sqlite && !in_memory {
            // Persistent in the file: readers never block the writer and vice versa.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(DbError::query("enabling SQLite's WAL mode"))?;
        }
        // A rolling deploy runs a newer broker beside an older updater (or the other way
        // round) on one database: a process must start on a database that a newer
        // version has migrated further. Migrations are therefore additive (new tables
        // and nullable columns only), and the ones this version does not know are
        // ignored rather than refused.
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await.map_err(DbError::Migrate)?;
        Ok(Db {
            pool,
            kind,
            sqlite_writer: (kind == DbKind::Sqlite).then(Default::default),
        })
    }

    /// Which database this is.
    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// A cheap round trip, for `GET /health`.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(DbError::query("pinging the database"))
    }

    /// Closes every connection (at shutdown, so PostgreSQL sees clean disconnects).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// SQLite only: waits for this process' turn to write (see `sqlite_writer`).
    pub(crate) async fn queue_for_write(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.sqlite_writer {
            Some(writer) => Some(writer.clone().lock_owned().await),
            None => None,
        }
    }
}

/// Milliseconds since the Unix epoch, the unit of every timestamp column.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The directory of a SQLite file URL, if it names a file in a directory.
fn sqlite_parent_dir(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    let parent = PathBuf::from(path).parent()?.to_path_buf();
    (!parent.as_os_str().is_empty()).then_some(parent)
}

/// The URL with any password replaced, for error messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{scheme}://{user}:[redacted]@{host}{tail}")
            } else {
                format!("{scheme}://{user}@{host}{tail}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::repository_tests!(crate::conformance::fresh_sqlite().await);

    #[tokio::test]
    async fn a_database_migrated_by_a_newer_version_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/b.db?mode=rwc", dir.path().display());
        let db = Db::connect(&url, ConnectOptions::default()).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations \
             (version, description, success, checksum, execution_time) \
             VALUES (99990101000001, 'from a newer version', TRUE, X'00', 1)",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        drop(db);
        Db::connect(&url, ConnectOptions::default())
            .await
            .expect("a newer version's migration made the database unusable");
    }

    #[test]
    fn urls_name_their_database() {
        assert_eq!(
            DbKind::of_url("sqlite://.data/broker.db?mode=rwc").unwrap(),
            DbKind::Sqlite
        );
        assert_eq!(
            DbKind::of_url("postgres://u:p@h/db").unwrap(),
            DbKind::Postgres
        );
        assert_eq!(
            DbKind::of_url("postgresql://h/db").unwrap(),
            DbKind::Postgres
        );
        let err = DbKind::of_url("mysql://h/db").unwrap_err();
        assert!(err.to_string().starts_with("DATABASE_URL"), "{err}");
    }

    #[test]
    fn a_sqlite_file_url_names_its_directory() {
        assert_eq!(
            sqlite_parent_dir("sqlite://.data/broker.db?mode=rwc"),
            Some(PathBuf::from(".data"))
        );
        assert_eq!(
            sqlite_parent_dir("sqlite:///var/lib/gds/broker.db"),
            Some(PathBuf::from("/var/lib/gds"))
        );
        assert_eq!(sqlite_parent_dir("sqlite://broker.db"), None);
        assert_eq!(sqlite_parent_dir("sqlite::memory:"), None);
    }

    #[test]
    fn passwords_never_show_in_redacted_urls() {
        assert_eq!(
            redact("postgres://broker:hunter2@db.example.org:5432/broker"),
            "postgres://broker:[redacted]@db.example.org:5432/broker"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }

    #[tokio::test]
    async fn connecting_creates_the_data_directory_and_migrating_twice_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}/nested/data/broker.db?mode=rwc",
            dir.path().display()
        );
        let db = Db::connect(&url, ConnectOptions::default()).await.unwrap();
        db.ping().await.unwrap();
        db.close().await;
        let again = Db::connect(&url, ConnectOptions::default()).await.unwrap();
        again.ping().await.unwrap();
        assert!(dir.path().join("nested/data/broker.db").exists());
    }
}

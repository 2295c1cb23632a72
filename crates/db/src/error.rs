//! The one error type of the repository.

/// Why a database call failed. `Display` never contains a password; the cause chain
/// (`source`) carries the driver's detail for the logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// `DATABASE_URL` cannot work.
    #[error("DATABASE_URL is invalid: {0}")]
    InvalidUrl(String),

    /// The directory of a SQLite file could not be created.
    #[error("cannot create the database directory {path}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// No connection could be opened.
    #[error("cannot connect to the database {url}")]
    Connect {
        /// The URL with its password redacted.
        url: String,
        #[source]
        source: sqlx::Error,
    },

    /// The migrations failed.
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),

    /// A statement failed.
    #[error("database error while {what}")]
    Query {
        /// What was being done, e.g. "inserting binding".
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },

    /// A stored value does not parse (e.g. an app GUID); someone edited the table by hand.
    #[error("invalid value in the database: {0}")]
    Corrupt(String),
}

impl DbError {
    /// `map_err` helper: `.map_err(DbError::query("reading bindings"))`.
    pub(crate) fn query(what: &'static str) -> impl FnOnce(sqlx::Error) -> DbError {
        move |source| DbError::Query { what, source }
    }
}

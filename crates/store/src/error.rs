//! The store's error type.

use aruntime_core::InvalidTransition;
use uuid::Uuid;

/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such thing in this tenant.
    #[error("no {kind} {id} in this tenant")]
    NotFound {
        /// `task`, `checkpoint`, `blob`, `tenant`.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// The lease is stale, expired or foreign; nothing was written.
    #[error("the lease is not held: it expired, was replaced, or belongs to another task")]
    LeaseLost,
    /// The state machine refuses the command.
    #[error(transparent)]
    InvalidTransition(#[from] InvalidTransition),
    /// An input refers to something that does not fit (unknown dependency…).
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The dependencies would form a cycle.
    #[error("dependency cycle: {}", .path.iter().map(|u| u.to_string()).collect::<Vec<_>>().join(" -> "))]
    DependencyCycle {
        /// The cycle, starting and ending at the task being changed.
        path: Vec<Uuid>,
    },
    /// The thing exists already.
    #[error("{kind} {id} already exists")]
    AlreadyExists {
        /// What.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// An Idempotency-Key reused with another request.
    #[error("the Idempotency-Key was already used with a different request")]
    IdempotencyConflict,
    /// A checkpoint names a blob this tenant never uploaded.
    #[error("no blob {0} was uploaded to this tenant")]
    UnknownBlob(String),
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// SQLite refused or failed a statement the writer ran directly.
    #[error("database: {message} (SQLite code {code})")]
    Sqlite {
        /// SQLite's extended result code.
        code: i32,
        /// What failed, and SQLite's message.
        message: String,
    },
    /// The batch this write was part of could not be committed.
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// The blob store failed.
    #[error("blob storage: {0}")]
    Io(#[from] std::io::Error),
    /// A stored value does not decode; a bug or a damaged database.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The store is shutting down.
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    /// Whether retrying later may succeed (the database is down or busy).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => {
                // Connection lost, server shutting down or overloaded,
                // deadlock or serialization failure: all worth a retry.
                let code = e.code().unwrap_or_default();
                code.starts_with("08")
                    || code.starts_with("57P")
                    || code.starts_with("53")
                    || code == "40001"
                    || code == "40P01"
                    || code == "55P03"
                    || code == "57014"
            }
            StoreError::Database(e) => !matches!(
                e,
                sqlx::Error::RowNotFound
                    | sqlx::Error::ColumnDecode { .. }
                    | sqlx::Error::ColumnNotFound(_)
                    | sqlx::Error::Decode(_)
                    | sqlx::Error::TypeNotFound { .. }
            ),
            // Busy, locked, I/O error, disk full, cannot open.
            StoreError::Sqlite { code, .. } => matches!(code & 0xff, 5 | 6 | 10 | 13 | 14),
            StoreError::CommitFailed(_) | StoreError::Closed | StoreError::Io(_) => true,
            _ => false,
        }
    }

    pub(crate) fn not_found(kind: &'static str, id: impl ToString) -> Self {
        StoreError::NotFound {
            kind,
            id: id.to_string(),
        }
    }
}

/// Store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

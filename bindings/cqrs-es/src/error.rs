//! The crate's error type, and how it maps onto cqrs-es's
//! [`PersistenceError`]. Every cqrs-es error variant carries a boxed error;
//! this crate boxes an [`Error`], so a caller can `downcast_ref::<Error>()`
//! to match on what happened.

use cqrs_es::persist::PersistenceError;

/// What can go wrong in the repository, as variants a caller can match on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The engine refused or failed (I/O, a closed or poisoned store, an
    /// event over the size limit, ...).
    #[error(transparent)]
    Engine(#[from] factlog::Error),
    /// An (`aggregate_type`, `aggregate_id`) pair that has no factlog aggregate id.
    #[error("aggregate {aggregate_type:?}/{aggregate_id:?} cannot be stored: {reason}")]
    InvalidKey {
        /// The cqrs-es aggregate type.
        aggregate_type: String,
        /// The cqrs-es aggregate id.
        aggregate_id: String,
        /// Why not.
        reason: String,
    },
    /// A `persist` call whose arguments do not form one commit (events of
    /// several aggregates, another aggregate type, a snapshot without events).
    /// Nothing was written.
    #[error("invalid persist call: {0}")]
    InvalidBatch(String),
    /// The commit lost a race or was based on a stale view (its first
    /// sequence or snapshot number is not the next one). Nothing was written.
    /// cqrs-es sees it as `PersistenceError::OptimisticLockError`.
    #[error("optimistic lock conflict on aggregate {key:?}: {reason}")]
    Conflict {
        /// The factlog aggregate id.
        key: String,
        /// What did not match.
        reason: String,
    },
    /// A payload, metadata or snapshot that is not JSON, or JSON that cannot be written.
    #[error("{what} of aggregate {key:?}: {source}")]
    Json {
        /// What was being encoded or decoded.
        what: &'static str,
        /// The factlog aggregate id.
        key: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A stored event or snapshot of this crate's key space that this crate
    /// did not write in that form (an envelope that does not parse, a snapshot
    /// copy that does not match the log).
    #[error("unexpected data in aggregate {key:?} at version {version}: {reason}")]
    Foreign {
        /// The factlog aggregate id.
        key: String,
        /// The factlog version of the event or snapshot.
        version: u64,
        /// What was wrong.
        reason: String,
    },
    /// The repository's append threads are gone (a thread could not be
    /// started, or the process is shutting down).
    #[error("the repository's append threads are unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    pub(crate) fn json(what: &'static str, key: &str, source: serde_json::Error) -> Error {
        Error::Json { what, key: key.to_string(), source }
    }

    pub(crate) fn conflict(key: &str, reason: impl Into<String>) -> Error {
        Error::Conflict { key: key.to_string(), reason: reason.into() }
    }

    /// Whether cqrs-es should see this as an optimistic-lock conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Error::Conflict { .. }
                | Error::Engine(factlog::Error::WrongExpectedVersion { .. })
                | Error::Engine(factlog::Error::DuplicateEventId { .. })
        )
    }
}

impl From<Error> for PersistenceError {
    fn from(err: Error) -> PersistenceError {
        use factlog::Error as E;
        if err.is_conflict() {
            return PersistenceError::OptimisticLockError;
        }
        match &err {
            Error::Json { .. } | Error::Foreign { .. } => PersistenceError::DeserializationError(Box::new(err)),
            Error::Engine(E::Io { .. } | E::NoSpace { .. } | E::Poisoned { .. } | E::Closed | E::Locked { .. })
            | Error::Unavailable(_) => PersistenceError::ConnectionError(Box::new(err)),
            _ => PersistenceError::UnknownError(Box::new(err)),
        }
    }
}

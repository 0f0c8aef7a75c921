//! [`factlog_status`], the one status every call returns; engine errors turned
//! into a status and a message (the engine's `Display`, which names the
//! aggregate, version, file or offset); the thread-local last error message;
//! and [`guard`], which runs a call's body so that a panic becomes
//! `FACTLOG_PANIC` instead of unwinding into C.

#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};

use factlog::Error;

/// What a call did. `FACTLOG_OK` (0), `FACTLOG_END` and `FACTLOG_TIMEOUT` are
/// outcomes; every other value is an error, and `factlog_last_error_message()`
/// then describes it.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum factlog_status {
    /// Success.
    FACTLOG_OK = 0,
    /// An iterator has no more events (not an error).
    FACTLOG_END = 1,
    /// A subscription's wait ran out with no event (not an error).
    FACTLOG_TIMEOUT = 2,
    /// The aggregate's version did not match the expectation; nothing was written.
    FACTLOG_WRONG_EXPECTED_VERSION = 10,
    /// An event id of the batch is stored elsewhere already; nothing was written.
    FACTLOG_DUPLICATE_EVENT_ID = 11,
    /// The engine refused an argument (an empty batch, an empty or oversized
    /// id or type, an id repeated in a batch, ...); nothing was written.
    FACTLOG_INVALID_INPUT = 12,
    /// An event is larger than `max_event_bytes`.
    FACTLOG_EVENT_TOO_LARGE = 13,
    /// A snapshot was offered for a version the aggregate has not reached.
    FACTLOG_SNAPSHOT_AHEAD = 14,
    /// The options are inconsistent.
    FACTLOG_INVALID_OPTIONS = 15,
    /// A file failed its checksum or structural validation (the message names
    /// the file and offset), or `factlog_verify` found problems.
    FACTLOG_CORRUPT = 16,
    /// A file has a format version this build does not read.
    FACTLOG_UNSUPPORTED_FORMAT = 17,
    /// The directory is not empty and not a factlog store.
    FACTLOG_NOT_A_STORE = 18,
    /// Another process, or another open handle in this one, holds the store.
    FACTLOG_LOCKED = 19,
    /// The file system is full; the store works again once space is freed.
    FACTLOG_NO_SPACE = 20,
    /// An I/O operation failed (the message names it and the file).
    FACTLOG_IO = 21,
    /// An earlier write or sync failed; reopen the store to recover.
    FACTLOG_POISONED = 22,
    /// The store was opened read-only.
    FACTLOG_READ_ONLY = 23,
    /// The store was closed (a subscription outliving it ends with this).
    FACTLOG_CLOSED = 24,
    /// A pointer argument that must not be NULL was NULL.
    FACTLOG_NULL_POINTER = 30,
    /// A string argument is not valid UTF-8.
    FACTLOG_INVALID_UTF8 = 31,
    /// A length, count or `FACTLOG_*` constant argument is outside what the call accepts.
    FACTLOG_OUT_OF_RANGE = 32,
    /// A bug: factlog panicked. The call did nothing more; the message says where.
    FACTLOG_PANIC = 33,
    /// An engine error this version of the C API has no status for (the message says what).
    FACTLOG_OTHER = 34,
}

use factlog_status::*;

/// Every status, for `factlog_status_name` and the tests.
pub(crate) const ALL_STATUSES: [factlog_status; 23] = [
    FACTLOG_OK,
    FACTLOG_END,
    FACTLOG_TIMEOUT,
    FACTLOG_WRONG_EXPECTED_VERSION,
    FACTLOG_DUPLICATE_EVENT_ID,
    FACTLOG_INVALID_INPUT,
    FACTLOG_EVENT_TOO_LARGE,
    FACTLOG_SNAPSHOT_AHEAD,
    FACTLOG_INVALID_OPTIONS,
    FACTLOG_CORRUPT,
    FACTLOG_UNSUPPORTED_FORMAT,
    FACTLOG_NOT_A_STORE,
    FACTLOG_LOCKED,
    FACTLOG_NO_SPACE,
    FACTLOG_IO,
    FACTLOG_POISONED,
    FACTLOG_READ_ONLY,
    FACTLOG_CLOSED,
    FACTLOG_NULL_POINTER,
    FACTLOG_INVALID_UTF8,
    FACTLOG_OUT_OF_RANGE,
    FACTLOG_PANIC,
    FACTLOG_OTHER,
];

impl factlog_status {
    /// The status's C name, NUL-terminated (`"FACTLOG_OK"`).
    pub fn name(self) -> &'static std::ffi::CStr {
        match self {
            FACTLOG_OK => c"FACTLOG_OK",
            FACTLOG_END => c"FACTLOG_END",
            FACTLOG_TIMEOUT => c"FACTLOG_TIMEOUT",
            FACTLOG_WRONG_EXPECTED_VERSION => c"FACTLOG_WRONG_EXPECTED_VERSION",
            FACTLOG_DUPLICATE_EVENT_ID => c"FACTLOG_DUPLICATE_EVENT_ID",
            FACTLOG_INVALID_INPUT => c"FACTLOG_INVALID_INPUT",
            FACTLOG_EVENT_TOO_LARGE => c"FACTLOG_EVENT_TOO_LARGE",
            FACTLOG_SNAPSHOT_AHEAD => c"FACTLOG_SNAPSHOT_AHEAD",
            FACTLOG_INVALID_OPTIONS => c"FACTLOG_INVALID_OPTIONS",
            FACTLOG_CORRUPT => c"FACTLOG_CORRUPT",
            FACTLOG_UNSUPPORTED_FORMAT => c"FACTLOG_UNSUPPORTED_FORMAT",
            FACTLOG_NOT_A_STORE => c"FACTLOG_NOT_A_STORE",
            FACTLOG_LOCKED => c"FACTLOG_LOCKED",
            FACTLOG_NO_SPACE => c"FACTLOG_NO_SPACE",
            FACTLOG_IO => c"FACTLOG_IO",
            FACTLOG_POISONED => c"FACTLOG_POISONED",
            FACTLOG_READ_ONLY => c"FACTLOG_READ_ONLY",
            FACTLOG_CLOSED => c"FACTLOG_CLOSED",
            FACTLOG_NULL_POINTER => c"FACTLOG_NULL_POINTER",
            FACTLOG_INVALID_UTF8 => c"FACTLOG_INVALID_UTF8",
            FACTLOG_OUT_OF_RANGE => c"FACTLOG_OUT_OF_RANGE",
            FACTLOG_PANIC => c"FACTLOG_PANIC",
            FACTLOG_OTHER => c"FACTLOG_OTHER",
        }
    }

    /// The status with this numeric value, if there is one.
    pub fn from_i32(value: i32) -> Option<factlog_status> {
        ALL_STATUSES.into_iter().find(|s| *s as i32 == value)
    }
}

/// An error status with its message: what a failed call reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The status returned.
    pub status: factlog_status,
    /// The text `factlog_last_error_message()` returns afterwards.
    pub message: String,
}

impl Failure {
    /// A failure of the binding itself (a NULL pointer, bad UTF-8, a value out of range).
    pub fn new(status: factlog_status, message: impl Into<String>) -> Failure {
        Failure { status, message: message.into() }
    }

    /// The same failure of a field of `place` (`"events[2]"`): its message
    /// then names the field as `events[2].data`.
    pub fn within(self, place: &str) -> Failure {
        Failure { status: self.status, message: format!("{place}.{}", self.message) }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure { status: status_of(&e), message: e.to_string() }
    }
}

/// The status of an engine error.
pub fn status_of(e: &Error) -> factlog_status {
    match e {
        Error::WrongExpectedVersion { .. } => FACTLOG_WRONG_EXPECTED_VERSION,
        Error::DuplicateEventId { .. } => FACTLOG_DUPLICATE_EVENT_ID,
        Error::InvalidInput(_) => FACTLOG_INVALID_INPUT,
        Error::EventTooLarge { .. } => FACTLOG_EVENT_TOO_LARGE,
        Error::SnapshotAhead { .. } => FACTLOG_SNAPSHOT_AHEAD,
        Error::InvalidOptions(_) => FACTLOG_INVALID_OPTIONS,
        Error::Corrupt { .. } => FACTLOG_CORRUPT,
        Error::UnsupportedFormat { .. } => FACTLOG_UNSUPPORTED_FORMAT,
        Error::NotAStore { .. } => FACTLOG_NOT_A_STORE,
        Error::Locked { .. } => FACTLOG_LOCKED,
        Error::NoSpace { .. } => FACTLOG_NO_SPACE,
        Error::Io { .. } => FACTLOG_IO,
        Error::Poisoned { .. } => FACTLOG_POISONED,
        Error::ReadOnly { .. } => FACTLOG_READ_ONLY,
        Error::Closed => FACTLOG_CLOSED,
        // Consumer errors (no consumer calls in this API yet) and variants
        // added to the engine later.
        _ => FACTLOG_OTHER,
    }
}

thread_local! {
    /// The message of the last error status returned on this thread.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `failure` as this thread's last error and returns its status.
fn record(failure: Failure) -> factlog_status {
    // A message cannot hold a NUL in C; none of ours should, but never lose one.
    let text = CString::new(failure.message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|last| *last.borrow_mut() = text);
    failure.status
}

/// Calls `f` with this thread's last error message. The message lives in
/// the thread-local until the next failing call on this thread replaces it.
pub fn with_last_error<R>(f: impl FnOnce(&std::ffi::CStr) -> R) -> R {
    LAST_ERROR.with(|last| f(last.borrow().as_c_str()))
}

/// Runs a call's body: its status, or its failure recorded as the last
/// error, or `FACTLOG_PANIC` if it panicked (the panic never reaches C).
pub fn guard(body: impl FnOnce() -> Result<factlog_status, Failure>) -> factlog_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(status)) => status,
        Ok(Err(failure)) => record(failure),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with no message".to_string());
            record(Failure::new(FACTLOG_PANIC, format!("factlog panicked (a bug; please report it): {what}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use factlog::{EventId, ExpectedVersion, LockHolder};
    use std::path::PathBuf;

    #[test]
    fn every_engine_error_has_its_status_and_its_message() {
        let path = PathBuf::from("/store/00000000000000000000.seg");
        let cases = [
            (
                Error::WrongExpectedVersion {
                    aggregate_id: "acct-1".into(),
                    expected: ExpectedVersion::Exact(3),
                    actual: Some(5),
                },
                FACTLOG_WRONG_EXPECTED_VERSION,
            ),
            (
                Error::DuplicateEventId {
                    event_id: EventId([7; 16]),
                    aggregate_id: "a".into(),
                    existing_aggregate: "b".into(),
                    existing_position: 9,
                },
                FACTLOG_DUPLICATE_EVENT_ID,
            ),
            (Error::InvalidInput("bad".into()), FACTLOG_INVALID_INPUT),
            (Error::EventTooLarge { aggregate_id: "a".into(), index: 1, size: 10, max: 5 }, FACTLOG_EVENT_TOO_LARGE),
            (Error::SnapshotAhead { aggregate_id: "a".into(), version: 4, actual: Some(2) }, FACTLOG_SNAPSHOT_AHEAD),
            (Error::InvalidOptions("opt".into()), FACTLOG_INVALID_OPTIONS),
            (Error::Corrupt { path: path.clone(), offset: 64, reason: "flip".into() }, FACTLOG_CORRUPT),
            (Error::UnsupportedFormat { path: path.clone(), found: 9, supported: 1 }, FACTLOG_UNSUPPORTED_FORMAT),
            (Error::NotAStore { path: path.clone(), reason: "r".into() }, FACTLOG_NOT_A_STORE),
            (Error::Locked { path: path.clone(), holder: LockHolder::Process(7) }, FACTLOG_LOCKED),
            (Error::NoSpace { path: path.clone() }, FACTLOG_NO_SPACE),
            (Error::Io { op: "write frames", path: path.clone(), source: std::io::Error::other("boom") }, FACTLOG_IO),
            (Error::Poisoned { cause: "fdatasync failed".into() }, FACTLOG_POISONED),
            (Error::ReadOnly { path: path.clone() }, FACTLOG_READ_ONLY),
            (Error::Closed, FACTLOG_CLOSED),
            (Error::PastEnd { position: 9, end: 3 }, FACTLOG_OTHER),
        ];
        for (error, status) in cases {
            let text = error.to_string();
            let failure = Failure::from(error);
            assert_eq!(failure, Failure { status, message: text });
            assert_eq!(guard(|| Err(failure.clone())), status);
            with_last_error(|m| assert_eq!(m.to_str().unwrap(), failure.message));
        }
        // The message names what the Rust error names.
        let corrupt = Failure::from(Error::Corrupt { path, offset: 64, reason: "bad checksum".into() });
        assert!(corrupt.message.contains("00000000000000000000.seg") && corrupt.message.contains("offset 64"));
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = guard(|| -> Result<factlog_status, Failure> { panic!("index out of bounds at 42") });
        assert_eq!(status, FACTLOG_PANIC);
        with_last_error(|m| assert!(m.to_str().unwrap().contains("index out of bounds at 42"), "{m:?}"));
        // Success leaves the last error as it was.
        assert_eq!(guard(|| Ok(FACTLOG_OK)), FACTLOG_OK);
        with_last_error(|m| assert!(m.to_str().unwrap().contains("panicked")));
    }

    #[test]
    fn statuses_have_names_and_round_trip() {
        for s in ALL_STATUSES {
            assert_eq!(factlog_status::from_i32(s as i32), Some(s));
            assert!(s.name().to_str().unwrap().starts_with("FACTLOG_"));
        }
        assert_eq!(factlog_status::from_i32(3), None);
        let message_with_nul = guard(|| Err(Failure::new(FACTLOG_OTHER, "a\0b")));
        assert_eq!(message_with_nul, FACTLOG_OTHER);
        with_last_error(|m| assert_eq!(m.to_str().unwrap(), "a\\0b"));
    }
}

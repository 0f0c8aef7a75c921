//! Opening the store a command names. `append` opens for writing, and
//! creates a store only where a mistyped path cannot land it by accident:
//! in a directory that does not exist but whose parent does, in an empty
//! directory, or anywhere with `--create` ([`open_for_append`]). `repair`
//! opens for writing with the engine's repair option ([`open_for_repair`]);
//! the lifecycle commands (`delete`, `erase`, `meta` with a setter,
//! `scavenge`) open an existing store for writing ([`open_for_change`]).
//! The inspecting commands (`read`, `stats`, `verify`, `dump`, `aggregates`,
//! `snapshots`, and `repair`'s dry run) open the store with
//! [`Store::open_read_only`]: a shared lock, no writer, and not one byte of
//! the store changed (a torn tail is reported, not cut). Several inspectors
//! run side by side, and beside a process that has the store open for
//! writing: they then see the log up to the durable watermark that writer
//! publishes. Only a repair, or a writer still recovering (it has published
//! nothing yet), keeps them waiting.
//!
//! Every open waits for the store's lock as long as `--wait` says (the
//! engine's `Options::lock_wait`), so that CLI appenders and inspectors
//! queue behind each other instead of failing; when the wait runs out, the
//! message names the process holding the lock and points at `--wait`.

use std::path::Path;
use std::time::Duration;

use factlog::{LockHolder, Options, Store, LOCK_NAME, MARKER_NAME};

use crate::error::{CliError, CliResult};

/// What `append` found at a store path, before opening anything.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    /// A directory with a store marker.
    Store,
    /// Somewhere a new store may be created without `--create`.
    New,
    /// A missing directory whose parent is missing too.
    MissingParent,
    /// Not a store, and no store can be created there: the message.
    NotAStore(String),
}

/// Looks at `dir` without changing anything.
fn place(dir: &Path) -> CliResult<Place> {
    if !dir.exists() {
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        return Ok(if parent.is_dir() { Place::New } else { Place::MissingParent });
    }
    if !dir.is_dir() {
        return Ok(Place::NotAStore("not a directory".into()));
    }
    if dir.join(MARKER_NAME).exists() {
        return Ok(Place::Store);
    }
    let listing = std::fs::read_dir(dir).map_err(|e| CliError::new(format!("listing {}: {e}", dir.display())))?;
    // NOTE: a lone lock file is what an interrupted first open leaves behind.
    let others = listing.filter_map(Result::ok).filter(|e| e.file_name() != LOCK_NAME).count();
    Ok(if others == 0 {
        Place::New
    } else {
        Place::NotAStore(format!(
            "it is not empty and has no {MARKER_NAME} file (a new store needs a new or empty directory)"
        ))
    })
}

/// Opens the store in `dir` for appending. Creates it (and, with `create`,
/// any missing parents) only where the module doc allows, and then says so
/// on stderr.
pub fn open_for_append(dir: &Path, create: bool, wait: Duration) -> CliResult<Store> {
    let creating = match place(dir)? {
        Place::Store => false,
        Place::New => true,
        Place::MissingParent if create => true,
        Place::MissingParent => {
            return Err(CliError::new(format!(
                "{} is not a factlog store: neither it nor its parent directory exists \
                 (a mistyped path?); pass --create to create a new store there, parents included",
                dir.display()
            )))
        }
        Place::NotAStore(why) => {
            return Err(CliError::new(format!("{} is not a factlog store: {why}", dir.display())));
        }
    };
    let store = match Store::open(dir, Options::default().lock_wait(wait)) {
        Ok(store) => store,
        Err(factlog::Error::Locked { holder, .. }) => return Err(in_use(dir, holder, wait, "append to it")),
        Err(e) => return Err(CliError::from(e)),
    };
    if creating {
        eprintln!("note: created a new factlog store in {}", dir.display());
    }
    Ok(store)
}

/// Opens the existing store in `dir` for writing with `Options::repair`:
/// recovery truncates the log at the first corrupt record instead of
/// failing, and reports what it cut in the store's recovery report.
pub fn open_for_repair(dir: &Path, wait: Duration) -> CliResult<Store> {
    if place(dir)? != Place::Store {
        return Err(CliError::new(format!("{} is not a factlog store: it has no {MARKER_NAME} file", dir.display())));
    }
    match Store::open(dir, Options::default().repair(true).lock_wait(wait)) {
        Ok(store) => Ok(store),
        Err(factlog::Error::Locked { holder, .. }) => Err(in_use(dir, holder, wait, "repair it")),
        Err(e) => Err(CliError::new(format!("the repair failed: {e}"))),
    }
}

/// Opens the existing store in `dir` for writing, to change it (`delete`,
/// `erase`, `meta` with a setter, `scavenge`): never creates one. Waits up
/// to `wait` for another writer; `what` says what to do once it is gone
/// ("delete from it"), for the message when the wait runs out.
pub fn open_for_change(dir: &Path, wait: Duration, what: &str) -> CliResult<Store> {
    existing(dir)?;
    match Store::open(dir, Options::default().lock_wait(wait)) {
        Ok(store) => Ok(store),
        Err(factlog::Error::Locked { holder, .. }) => Err(in_use(dir, holder, wait, what)),
        Err(e) => Err(CliError::from(e)),
    }
}

/// Opens the existing store in `dir` read-only, waiting up to `wait` for a
/// repair to finish (or a writer to publish its watermark), and failing without touching the file system if
/// `dir` is missing or is not a factlog store.
pub fn open_existing(dir: &Path, wait: Duration) -> CliResult<Store> {
    open_existing_with(dir, Options::default().lock_wait(wait))
}

/// [`open_existing`] with other options (their `lock_wait` included).
pub fn open_existing_with(dir: &Path, options: Options) -> CliResult<Store> {
    open_read_only(dir, options).map_err(|e| match e {
        OpenError::Cli(e) => e,
        OpenError::Store(e) => CliError::from(e),
    })
}

/// Why [`open_read_only`] failed: a problem the CLI found (no such
/// directory, not a store, locked by a writer), or the engine's error as it
/// is, for callers that treat some of them (corruption) specially.
pub enum OpenError {
    /// Already phrased for the user.
    Cli(CliError),
    /// The engine refused to open the store.
    Store(factlog::Error),
}

/// Opens the existing store in `dir` read-only with `options` (its
/// `lock_wait`, and `repair` for a dry run); see [`open_existing`].
pub fn open_read_only(dir: &Path, options: Options) -> Result<Store, OpenError> {
    existing(dir).map_err(OpenError::Cli)?;
    let wait = options.lock_wait;
    match Store::open_read_only(dir, options) {
        Ok(store) => Ok(store),
        Err(factlog::Error::Locked { holder, .. }) => Err(OpenError::Cli(locked(dir, holder, wait))),
        Err(e) => Err(OpenError::Store(e)),
    }
}

/// Checks, without changing anything, that `dir` is a directory with a
/// store marker: the error says which it is not.
fn existing(dir: &Path) -> CliResult<()> {
    if !dir.exists() {
        return Err(CliError::new(format!("no factlog store at {}: directory does not exist", dir.display())));
    }
    if !dir.is_dir() {
        return Err(CliError::new(format!("{} is not a factlog store: not a directory", dir.display())));
    }
    if !dir.join(MARKER_NAME).is_file() {
        return Err(CliError::new(format!("{} is not a factlog store: it has no {MARKER_NAME} file", dir.display())));
    }
    Ok(())
}

/// The message for a store a reader cannot open yet, to a reader.
fn locked(dir: &Path, holder: LockHolder, wait: Duration) -> CliError {
    CliError::new(format!(
        "store {} is held by {holder}, which is repairing it or has not yet published what is durable; {}; \
         inspect it once that process is done, or pass a longer --wait SECONDS",
        dir.display(),
        waited(wait)
    ))
}

/// The message for a store another process holds, to a writer: `what` to
/// do once it is free.
fn in_use(dir: &Path, holder: LockHolder, wait: Duration, what: &str) -> CliError {
    CliError::new(format!(
        "store {} is locked by {holder} (a writer, or for a repair also a reader such as `factlog read`); {}; \
         {what} once that process has closed it, or pass a longer --wait SECONDS",
        dir.display(),
        waited(wait)
    ))
}

/// How long the open waited, for the messages above.
fn waited(wait: Duration) -> String {
    if wait.is_zero() {
        "did not wait for it (--wait 0)".to_string()
    } else {
        format!("gave up after waiting {} s", wait.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        assert_eq!(place(&root.join("new")).unwrap(), Place::New);
        assert_eq!(place(&root.join("no/such/dir")).unwrap(), Place::MissingParent);
        assert_eq!(place(root).unwrap(), Place::New, "an empty directory");
        std::fs::write(root.join(LOCK_NAME), b"").unwrap();
        assert_eq!(place(root).unwrap(), Place::New, "only a lock file");
        std::fs::write(root.join("notes.txt"), b"x").unwrap();
        assert!(matches!(place(root).unwrap(), Place::NotAStore(why) if why.contains("not empty")));
        assert!(matches!(place(&root.join("notes.txt")).unwrap(), Place::NotAStore(why) if why == "not a directory"));
        std::fs::write(root.join(MARKER_NAME), b"").unwrap();
        assert_eq!(place(root).unwrap(), Place::Store);
        assert_eq!(place(Path::new("relative-name-that-does-not-exist")).unwrap(), Place::New);
    }

    #[test]
    fn lock_messages_name_the_holder_and_the_wait() {
        let dir = Path::new("/s");
        let text = locked(dir, LockHolder::Process(42), Duration::from_millis(1500)).to_string();
        assert!(text.starts_with("store /s is held by process 42, which is repairing it"), "{text}");
        assert!(text.contains("; gave up after waiting 1.5 s;"), "{text}");
        assert!(text.ends_with("or pass a longer --wait SECONDS"), "{text}");
        let text = in_use(dir, LockHolder::Unknown, Duration::ZERO, "append to it").to_string();
        assert!(text.starts_with("store /s is locked by another opener (a writer,"), "{text}");
        assert!(text.contains("; did not wait for it (--wait 0); append to it once"), "{text}");
    }
}

//! Opening the store a command names. `append` opens for writing, and
//! creates a store only where a mistyped path cannot land it by accident:
//! in a directory that does not exist but whose parent does, in an empty
//! directory, or anywhere with `--create` ([`open_for_append`]). `repair`
//! opens for writing with the engine's repair option ([`open_for_repair`]).
//! The inspecting commands (`read`, `stats`, `verify`, `dump`) open the store
//! with [`Store::open_read_only`]: a shared lock, no writer, and not one byte
//! of the store changed (a torn tail is reported, not cut). Several
//! inspectors can therefore run side by side, but not while a writer holds
//! the store, which [`open_existing`] turns into a clear message.

use std::path::Path;

use factlog::{Options, Store, LOCK_NAME, MARKER_NAME};

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
pub fn open_for_append(dir: &Path, create: bool) -> CliResult<Store> {
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
    let store = match Store::open(dir, Options::default()) {
        Ok(store) => store,
        Err(factlog::Error::Locked { .. }) => return Err(in_use(dir, "append to it")),
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
pub fn open_for_repair(dir: &Path) -> CliResult<Store> {
    if place(dir)? != Place::Store {
        return Err(CliError::new(format!("{} is not a factlog store: it has no {MARKER_NAME} file", dir.display())));
    }
    match Store::open(dir, Options::default().repair(true)) {
        Ok(store) => Ok(store),
        Err(factlog::Error::Locked { .. }) => Err(in_use(dir, "repair it")),
        Err(e) => Err(CliError::new(format!("the repair failed: {e}"))),
    }
}

/// Opens the existing store in `dir` read-only, failing without touching
/// the file system if `dir` is missing or is not a factlog store.
pub fn open_existing(dir: &Path) -> CliResult<Store> {
    open_read_only(dir).map_err(|e| match e {
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

/// Opens the existing store in `dir` read-only; see [`open_existing`].
pub fn open_read_only(dir: &Path) -> Result<Store, OpenError> {
    if !dir.exists() {
        return Err(OpenError::Cli(CliError::new(format!(
            "no factlog store at {}: directory does not exist",
            dir.display()
        ))));
    }
    if !dir.is_dir() {
        return Err(OpenError::Cli(CliError::new(format!(
            "{} is not a factlog store: not a directory",
            dir.display()
        ))));
    }
    if !dir.join(MARKER_NAME).is_file() {
        return Err(OpenError::Cli(CliError::new(format!(
            "{} is not a factlog store: it has no {MARKER_NAME} file",
            dir.display()
        ))));
    }
    match Store::open_read_only(dir, Options::default()) {
        Ok(store) => Ok(store),
        Err(factlog::Error::Locked { .. }) => Err(OpenError::Cli(locked(dir))),
        Err(e) => Err(OpenError::Store(e)),
    }
}

/// The message for a store a writer holds, to a reader.
fn locked(dir: &Path) -> CliError {
    CliError::new(format!(
        "store {} is open for writing by another process; \
         inspect it once that process has closed it (or read it through that process)",
        dir.display()
    ))
}

/// The message for a store another process holds, to a writer: `what` to
/// do once it is free.
fn in_use(dir: &Path, what: &str) -> CliError {
    CliError::new(format!(
        "store {} is open in another process (a writer, or a reader such as `factlog read`); \
         {what} once that process has closed it",
        dir.display()
    ))
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
}

//! Opening the store a command names. `append` opens for writing and may
//! create the store; the inspecting commands (`read`, `stats`, `verify`,
//! `dump`) open it with [`Store::open_read_only`]: a shared lock, no writer,
//! and not one byte of the store changed (a torn tail is reported, not cut).
//! Several inspectors can therefore run side by side, but not while a writer
//! holds the store, which [`open_existing`] turns into a clear message.

use std::path::Path;

use factlog::{Options, Store, MARKER_NAME};

use crate::error::{CliError, CliResult};

/// Opens the store in `dir`, creating it (and `dir`) if needed.
pub fn open_or_create(dir: &Path) -> CliResult<Store> {
    Ok(Store::open(dir, Options::default())?)
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

/// The message for a store a writer holds.
fn locked(dir: &Path) -> CliError {
    CliError::new(format!(
        "store {} is open for writing by another process; \
         inspect it once that process has closed it (or read it through that process)",
        dir.display()
    ))
}

//! Opening the store a command names. Writing commands may create it;
//! reading commands must not: [`Store::open`] creates a missing or empty
//! directory, so [`open_existing`] first checks for the store's marker file
//! ([`factlog::MARKER_NAME`]) and refuses with a clear message instead.

use std::path::Path;

use factlog::{Options, Store, MARKER_NAME};

use crate::error::{CliError, CliResult};

/// Opens the store in `dir`, creating it (and `dir`) if needed.
pub fn open_or_create(dir: &Path) -> CliResult<Store> {
    Ok(Store::open(dir, Options::default())?)
}

/// Opens the store in `dir`, failing without touching the file system if
/// `dir` is missing or is not a factlog store.
pub fn open_existing(dir: &Path) -> CliResult<Store> {
    if !dir.exists() {
        return Err(CliError::new(format!("no factlog store at {}: directory does not exist", dir.display())));
    }
    if !dir.is_dir() {
        return Err(CliError::new(format!("{} is not a factlog store: not a directory", dir.display())));
    }
    if !dir.join(MARKER_NAME).is_file() {
        return Err(CliError::new(format!("{} is not a factlog store: it has no {MARKER_NAME} file", dir.display())));
    }
    // A reading command never rolls a segment: no need to prepare the next one.
    let options = Options { prepare_next_segment: false, ..Options::default() };
    Ok(Store::open(dir, options)?)
}

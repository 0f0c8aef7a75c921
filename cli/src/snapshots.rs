//! `factlog snapshots`: the snapshots in a store's snapshot files
//! ([`factlog::Store::snapshots`]), sorted by aggregate and version, of every
//! aggregate, of one (`--aggregate`) or of those whose id starts with
//! `--prefix`: each with the version its state reflects, the snapshot file
//! holding it (relative to the store directory) and the bytes of its frame
//! there (compressed). Nothing is read or decompressed.
//!
//! How many snapshots an application keeps per aggregate is its own open
//! option (`Options::snapshots_keep`), which the store does not record; this
//! command lists every one the files still hold, up to
//! [`LISTED_PER_AGGREGATE_MAX`] per aggregate: older ones stay in the files
//! until compaction drops them. Text output is a table with a header;
//! `--json` prints one object per snapshot and line. The store is opened
//! read-only. When no snapshot matches, nothing is printed on stdout and a
//! note goes to stderr.

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use factlog::{Options, SnapshotEntry};
use serde_json::json;

use crate::error::CliResult;
use crate::output::{self, Column};
use crate::{open, SnapshotsArgs};

/// Most snapshots listed per aggregate: the newest ones.
pub const LISTED_PER_AGGREGATE_MAX: usize = 1024;

/// The text table's columns.
const COLUMNS: [Column; 4] = [
    Column { name: "aggregate", right: false },
    Column { name: "version", right: true },
    Column { name: "file", right: false },
    Column { name: "stored_bytes", right: true },
];

/// Runs `factlog snapshots`.
pub fn run(args: &SnapshotsArgs, wait: Duration) -> CliResult {
    let options = Options::default().lock_wait(wait).snapshots_keep(LISTED_PER_AGGREGATE_MAX);
    let store = open::open_existing_with(&args.dir, options)?;
    let (entries, matching) = match (&args.aggregate, &args.prefix) {
        (Some(id), _) => {
            let mut entries = store.snapshots(id);
            entries.retain(|e| e.aggregate_id == *id);
            (entries, format!(" of aggregate {id:?}"))
        }
        (None, Some(prefix)) => (store.snapshots(prefix), format!(" with prefix {prefix:?}")),
        (None, None) => (store.snapshots(""), String::new()),
    };
    if entries.is_empty() {
        eprintln!("note: no snapshots{matching} in {}", args.dir.display());
        return Ok(());
    }
    let mut out = output::stdout();
    let written =
        if args.json { write_json(&mut out, &args.dir, &entries) } else { write_text(&mut out, &args.dir, &entries) };
    output::finish(written.and_then(|()| out.flush()))
}

/// The snapshot file's path relative to the store directory, or as it is.
fn file(dir: &Path, entry: &SnapshotEntry) -> String {
    entry.path.strip_prefix(dir).unwrap_or(&entry.path).display().to_string()
}

/// The table: one row per snapshot under a header.
fn write_text<W: Write>(w: &mut W, dir: &Path, entries: &[SnapshotEntry]) -> io::Result<()> {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                output::cell_name(&e.aggregate_id).into_owned(),
                e.version.to_string(),
                file(dir, e),
                e.stored_bytes.to_string(),
            ]
        })
        .collect();
    output::write_table(w, &COLUMNS, &rows)
}

/// One JSON object per snapshot and line.
fn write_json<W: Write>(w: &mut W, dir: &Path, entries: &[SnapshotEntry]) -> io::Result<()> {
    for e in entries {
        let v = json!({
            "aggregate_id": e.aggregate_id,
            "version": e.version,
            "file": file(dir, e),
            "stored_bytes": e.stored_bytes,
        });
        writeln!(w, "{v}")?;
    }
    Ok(())
}

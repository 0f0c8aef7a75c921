//! `factlog aggregates`: the aggregates that have events, sorted by id
//! ([`factlog::Reader::aggregates`]), optionally only those whose id starts
//! with `--prefix`: each with its version, its number of events (those the
//! lifecycle rules leave visible, [`AggregateInfo::events`]) and the position
//! of its last event. Text
//! output is a table with a header; `--json` prints one object per
//! aggregate and line. The store is opened read-only. When no aggregate
//! matches, nothing is printed on stdout and a note goes to stderr.

use std::io::{self, Write};
use std::time::Duration;

use factlog::AggregateInfo;
use serde_json::json;

use crate::error::CliResult;
use crate::output::{self, Column};
use crate::{open, AggregatesArgs};

/// The text table's columns.
const COLUMNS: [Column; 4] = [
    Column { name: "aggregate", right: false },
    Column { name: "version", right: true },
    Column { name: "events", right: true },
    Column { name: "last_position", right: true },
];

/// Runs `factlog aggregates`.
pub fn run(args: &AggregatesArgs, wait: Duration) -> CliResult {
    let store = open::open_existing(&args.dir, wait)?;
    let aggregates = store.reader().aggregates(&args.prefix);
    if aggregates.is_empty() {
        let matching = if args.prefix.is_empty() { String::new() } else { format!(" with prefix {:?}", args.prefix) };
        eprintln!("note: no aggregates{matching} in {}", args.dir.display());
        return Ok(());
    }
    let mut out = output::stdout();
    let written = if args.json { write_json(&mut out, &aggregates) } else { write_text(&mut out, &aggregates) };
    output::finish(written.and_then(|()| out.flush()))
}

/// The table: one row per aggregate under a header.
fn write_text<W: Write>(w: &mut W, aggregates: &[AggregateInfo]) -> io::Result<()> {
    let rows: Vec<Vec<String>> = aggregates
        .iter()
        .map(|a| {
            vec![
                output::cell_name(&a.aggregate_id).into_owned(),
                a.version.to_string(),
                a.events().to_string(),
                a.last_position.to_string(),
            ]
        })
        .collect();
    output::write_table(w, &COLUMNS, &rows)
}

/// One JSON object per aggregate and line.
fn write_json<W: Write>(w: &mut W, aggregates: &[AggregateInfo]) -> io::Result<()> {
    for a in aggregates {
        let v = json!({
            "aggregate_id": a.aggregate_id,
            "version": a.version,
            "events": a.events(),
            "last_position": a.last_position,
        });
        writeln!(w, "{v}")?;
    }
    Ok(())
}

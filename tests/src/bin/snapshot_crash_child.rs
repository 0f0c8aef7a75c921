//! The process that `tests/tests/crash_snapshots.rs` kills with SIGKILL while
//! it saves snapshots as fast as it can into tiny snapshot files, so that
//! kills land in the middle of saves, file rolls and compactions.
//!
//! ```text
//! snapshot_crash_child <store-dir> <ack-log> [keep-all]
//! ```
//!
//! With `keep-all` the store keeps every snapshot (`snapshot_crash::options_keeping_all`).

//!
//! After each `save_snapshot` returns it appends `ack <aggregate> <version>`
//! to the ack log and fsyncs it, then prints `ready` once (after the first).
//! Every state it saves is `snapshot_crash::state(aggregate, version)`, so
//! the checker can recompute it. It never acknowledges a save before
//! `save_snapshot` has returned, and writes only inside the two paths it is
//! given.

use std::io::Write;

use factlog::{ExpectedVersion, NewEvent, Store};
use factlog_tests::snapshot_crash as spec;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(ack_path)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: snapshot_crash_child <store-dir> <ack-log> [keep-all]");
        std::process::exit(2);
    };
    let options =
        if args.get(3).is_some_and(|a| a == "keep-all") { spec::options_keeping_all() } else { spec::options() };
    let store = Store::open(dir, options).expect("open store");
    let mut acks = std::fs::OpenOptions::new().create(true).append(true).open(ack_path).expect("open ack log");
    let mut announced = false;
    let mut round = 0u64;
    loop {
        let agg = spec::aggregate(round % spec::AGGREGATES);
        round += 1;
        let next = store.aggregate_version(&agg).map_or(0, |v| v + 1);
        let id = spec::event_id(&agg, next);
        let expected = if next == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(next - 1) };
        store.append(&agg, expected, vec![NewEvent::new(id, "Posted", &b"{}"[..])]).expect("append");
        store.save_snapshot(&agg, next, factlog::SchemaVersion(1), &spec::state(&agg, next)).expect("save snapshot");
        writeln!(acks, "ack {agg} {next}").expect("write ack");
        acks.sync_data().expect("fsync ack log");
        if !announced {
            println!("ready");
            std::io::stdout().flush().expect("flush stdout");
            announced = true;
        }
    }
}

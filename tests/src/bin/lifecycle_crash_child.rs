//! The process that `tests/tests/lifecycle_crash.rs` kills with SIGKILL while
//! it appends, deletes aggregates and scavenges in a loop, with retention
//! on, so that kills land inside scavenges (segment rewrites, checkpoint
//! swaps), retention runs and metadata changes.
//!
//! ```text
//! lifecycle_crash_child <store-dir> <ack-log> <seed>
//! ```
//!
//! After each call returns it appends one line to the ack log and fsyncs it:
//! `append <aggregate> <first position> <first version> <count> <serial>`,
//! `delete <aggregate> <soft|hard>`, `scavenged <first position of the
//! segment that was active when it started>`. It prints `ready` once,
//! after the first acknowledgement. Event ids and payloads derive from the
//! serial (`lifecycle_crash::event`), so the checker can recompute them.

use std::io::Write;

use factlog::{DeleteMode, Error, ExpectedVersion, Store};
use factlog_tests::lifecycle_crash as spec;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(ack_path), Some(seed)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: lifecycle_crash_child <store-dir> <ack-log> <seed>");
        std::process::exit(2);
    };
    let seed: u64 = seed.parse().expect("seed is a number");
    let store = Store::open(dir, spec::options()).expect("open store");
    let mut acks = std::fs::OpenOptions::new().create(true).append(true).open(ack_path).expect("open ack log");
    let mut ack = |line: String| {
        acks.write_all(line.as_bytes()).and_then(|_| acks.sync_data()).expect("write the ack log");
    };
    let mut announced = false;
    let mut round = 0u64;
    loop {
        round += 1;
        let a = (round * 7 + seed) % spec::AGGREGATES;
        let agg = spec::aggregate(a);
        let serial = seed * 1_000_000 + round;
        let events: Vec<_> = (0..3).map(|i| spec::event(serial, i)).collect();
        match store.append(&agg, ExpectedVersion::Any, events) {
            Ok(r) => ack(format!("append {agg} {} {} 3 {serial}\n", r.first_position, r.first_version)),
            Err(Error::AggregateDeleted { .. }) => {}
            Err(e) => panic!("append to {agg}: {e}"),
        }
        if round.is_multiple_of(11) {
            let victim = spec::aggregate((round / 11 + seed) % spec::AGGREGATES);
            let mode = if round.is_multiple_of(33) { DeleteMode::Hard } else { DeleteMode::Soft };
            match store.delete_aggregate(&victim, mode) {
                Ok(_) => ack(format!("delete {victim} {}\n", if mode == DeleteMode::Hard { "hard" } else { "soft" })),
                Err(Error::AggregateDeleted { .. } | Error::UnknownAggregate { .. }) => {}
                Err(e) => panic!("delete {victim}: {e}"),
            }
        }
        if round.is_multiple_of(17) {
            // What was sealed when it started: the active segment is the newest file.
            let active_first = factlog_tests::segment_files(std::path::Path::new(dir))
                .iter()
                .filter_map(|p| p.file_stem()?.to_str()?.parse::<u64>().ok())
                .max()
                .unwrap_or(0);
            store.scavenge(&mut |_, _| {}).expect("scavenge");
            ack(format!("scavenged {active_first}\n"));
        }
        if !announced {
            println!("ready");
            announced = true;
        }
    }
}

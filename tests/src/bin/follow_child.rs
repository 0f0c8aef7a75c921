//! The writer process of the follow tests (`tests/tests/follow.rs`) and the
//! CLI's `tail` test: it holds a store open for writing while a read-only
//! store in another process follows it, and is killed with SIGKILL.
//!
//! ```text
//! follow_child <store-dir> <round> loop    appends batches forever
//! follow_child <store-dir> <round> stdin   appends a batch per line read (its size: the line, or 1)
//! ```
//!
//! It opens the store (`Sync` durability, small segments so that followers
//! see rolls), prints `ready <next position>` and then, after every
//! acknowledged append, `ack <round> <first n> <count> <first position>`:
//! the events of a batch are `factlog_tests::event(round, n)` for
//! `n = first n .. first n + count`, so the checker can recompute them. It
//! writes only the store it is given.

use std::io::{BufRead, Write};

use factlog::{ExpectedVersion, Store};
use factlog_tests::{event, small_options};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, round, mode] = args.as_slice() else {
        eprintln!("usage: follow_child <store-dir> <round> loop|stdin");
        std::process::exit(2);
    };
    let round: u64 = round.parse().unwrap_or_else(|e| panic!("round {round:?}: {e}"));
    let store = Store::open(dir, small_options()).unwrap_or_else(|e| panic!("open {dir}: {e}"));
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {}", store.last_position().map_or(0, |p| p + 1)).unwrap();
    out.flush().unwrap();
    let mut n = 0u64;
    match mode.as_str() {
        "loop" => loop {
            let count = n % 4 + 1;
            append(&store, round, &mut n, count, &mut out);
        },
        "stdin" => {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                let count = line.trim().parse().unwrap_or(1);
                append(&store, round, &mut n, count, &mut out);
            }
        }
        other => panic!("unknown mode {other:?}"),
    }
}

/// Appends events `n..n + count` of `round` as one batch and prints the ack.
fn append(store: &Store, round: u64, n: &mut u64, count: u64, out: &mut impl Write) {
    let first = *n;
    let events = (first..first + count).map(|i| event(round, i)).collect();
    let aggregate = format!("agg-{}", first % 5);
    let r = store.append(&aggregate, ExpectedVersion::Any, events).unwrap_or_else(|e| panic!("append: {e}"));
    writeln!(out, "ack {round} {first} {count} {}", r.first_position).unwrap();
    out.flush().unwrap();
    *n += count;
}

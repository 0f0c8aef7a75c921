//! Writes a sample store in a temporary directory, replays it, and prints
//! what it did: the smallest end-to-end use of factlog.

use std::time::Instant;

use factlog::{Direction, ExpectedVersion, NewEvent, Options, Store};

fn main() -> Result<(), factlog::Error> {
    let dir = std::env::temp_dir().join(format!("factlog-quickstart-{}", std::process::id()));
    let store = Store::open(&dir, Options::default())?;
    let started = Instant::now();
    let mut n = 0u64;
    for account in 0..100u64 {
        let aggregate = format!("account-{account}");
        for v in 0..10u64 {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&account.to_le_bytes());
            id[8..].copy_from_slice(&v.to_le_bytes());
            let data = format!("{{\"amount\":{}}}", v * 10);
            let ev = NewEvent::new(id, "FundsDeposited", data.into_bytes());
            let expected = if v == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(v - 1) };
            store.append(&aggregate, expected, vec![ev])?;
            n += 1;
        }
    }
    let took = started.elapsed();
    println!("appended {n} events durably (one fsync per append, 1 writer) in {took:.2?}");
    let reader = store.reader();
    let mut balance = 0i64;
    for event in reader.read_aggregate("account-7", 0, Direction::Forward) {
        let event = event?;
        let text = std::str::from_utf8(event.data()).unwrap_or("");
        balance += text.trim_start_matches("{\"amount\":").trim_end_matches('}').parse::<i64>().unwrap_or(0);
    }
    println!("account-7 replayed: version {:?}, balance {balance}", store.aggregate_version("account-7"));
    println!("stats: {:?}", store.stats());
    store.close()?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

//! A small bank on factlog, end to end: accounts as aggregates, commands that
//! append events with an expected version, state as a fold over events
//! (parsed with serde_json), metadata and causation, a snapshot every 25
//! events, and time travel to a past moment. Run it with
//! `cargo run --release -p factlog --example quickstart`.

use std::time::Instant;

use factlog::{AsOf, Error, EventId, ExpectedVersion, NewEvent, Options, SchemaVersion, Store};
use serde_json::{json, Value};

/// Schema version of the account state saved in snapshots.
const STATE_SCHEMA: SchemaVersion = SchemaVersion(1);

/// An account's state: what a fold over its events gives.
#[derive(Debug, Default, Clone, PartialEq)]
struct Account {
    balance: i64,
    deposits: u64,
}

impl Account {
    fn apply(mut self, event_type: &str, data: &[u8]) -> Account {
        let amount = serde_json::from_slice::<Value>(data).ok().and_then(|v| v["amount"].as_i64()).unwrap_or(0);
        match event_type {
            "FundsDeposited" => {
                self.balance += amount;
                self.deposits += 1;
            }
            "FundsWithdrawn" => self.balance -= amount,
            _ => {}
        }
        self
    }

    fn to_state(&self) -> Vec<u8> {
        json!({ "balance": self.balance, "deposits": self.deposits }).to_string().into_bytes()
    }

    fn from_state(bytes: &[u8]) -> Account {
        let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        Account { balance: v["balance"].as_i64().unwrap_or(0), deposits: v["deposits"].as_u64().unwrap_or(0) }
    }
}

/// Rebuilds an account from its newest snapshot plus the events after it.
fn load(store: &Store, account: &str, as_of: Option<AsOf>) -> Result<(Account, Option<u64>), Error> {
    let loaded = match as_of {
        Some(at) => store.load_as_of(account, at)?,
        None => store.load(account)?,
    };
    let mut state = loaded.snapshot.as_ref().map(|s| Account::from_state(&s.data)).unwrap_or_default();
    for event in loaded.events() {
        let event = event?;
        state = state.apply(event.event_type(), event.data());
    }
    Ok((state, loaded.version()))
}

/// The "deposit" command: reads the current version, appends with it as the
/// expected version (a concurrent writer makes this fail, typed), and saves a
/// snapshot when the store says one is due.
fn deposit(store: &Store, account: &str, amount: i64, command_id: EventId) -> Result<(), Error> {
    let expected = match store.aggregate_version(account) {
        Some(v) => ExpectedVersion::Exact(v),
        None => ExpectedVersion::NoStream,
    };
    let event = NewEvent::new(EventId::new_v7(), "FundsDeposited", json!({ "amount": amount }).to_string())
        .with_causation_id(command_id)
        .with_metadata(r#"{"source":"quickstart"}"#);
    let written = store.append(account, expected, vec![event])?;
    if written.snapshot_due {
        let (state, version) = load(store, account, None)?;
        store.save_snapshot(account, version.unwrap_or(0), STATE_SCHEMA, &state.to_state())?;
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("factlog-quickstart-{}", std::process::id()));
    let store = Store::open(&dir, Options::default().snapshot_every(25))?;
    let started = Instant::now();
    // Four threads, 25 accounts each, 40 deposits per account: every append
    // is durable when it returns, and the threads share group commits.
    let mut halfway = 0;
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..4u64)
            .map(|t| {
                let store = store.clone();
                s.spawn(move || -> Result<(), Error> {
                    for round in 0..40 {
                        for a in 0..25u64 {
                            deposit(&store, &format!("account-{}", t * 25 + a), 10 + round, EventId::new_v7())?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        halfway = factlog::now_nanos();
        workers.into_iter().try_for_each(|w| w.join().unwrap_or(Err(Error::Closed)))
    })?;
    let stats = store.stats();
    println!(
        "appended {} events from 4 threads in {:.2?} ({} group commits, {} snapshots saved)",
        stats.events,
        started.elapsed(),
        stats.group_commits,
        stats.snapshots
    );
    let (now, version) = load(&store, "account-7", None)?;
    println!("account-7 now: {now:?} at version {version:?} (snapshot plus the events after it)");
    let (then, version) = load(&store, "account-7", Some(AsOf::RecordedAt(halfway)))?;
    println!("account-7 50 ms into the run: {then:?} at version {version:?}");
    let (early, _) = load(&store, "account-7", Some(AsOf::Version(4)))?;
    println!("account-7 after its first five deposits: {early:?}");
    store.close()?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

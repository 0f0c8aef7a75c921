//! A bank account on cqrs-es with factlog as its event store.
//!
//! ```sh
//! cargo run --release -p factlog-cqrs --example bank             # a fresh temporary store
//! cargo run --release -p factlog-cqrs --example bank -- /tmp/bank # keeps the store; run it twice
//! ```
//!
//! Commands go through cqrs-es's `CqrsFramework`: the aggregate decides,
//! factlog stores the events (and a snapshot every 5 events), a view keeps
//! the balance. An overdraft is refused by the aggregate's rule.
//!
//! The events carry the balance they leave, so that applying one twice is
//! harmless: cqrs-es 0.5 applies a command's events to the aggregate in the
//! event sink and again when it takes a snapshot, on every backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, AggregateError, DomainEvent, EventEnvelope, Query};
use factlog_cqrs::{factlog_snapshot_cqrs, FactlogEventRepository};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Account {
    opened: bool,
    balance: i64,
}

#[derive(Debug)]
enum Command {
    Open,
    Deposit(i64),
    Withdraw(i64),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Event {
    Opened,
    Deposited { amount: i64, balance: i64 },
    Withdrawn { amount: i64, balance: i64 },
}

impl DomainEvent for Event {
    fn event_type(&self) -> String {
        match self {
            Event::Opened => "Opened",
            Event::Deposited { .. } => "Deposited",
            Event::Withdrawn { .. } => "Withdrawn",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Refused {}

impl Aggregate for Account {
    const TYPE: &'static str = "Account";
    type Command = Command;
    type Event = Event;
    type Error = Refused;
    type Services = ();

    async fn handle(&mut self, command: Command, _: &(), sink: &EventSink<Self>) -> Result<(), Refused> {
        let event = match command {
            Command::Open if self.opened => return Ok(()), // already open: nothing to do
            Command::Open => Event::Opened,
            Command::Deposit(amount) => Event::Deposited { amount, balance: self.balance + amount },
            Command::Withdraw(amount) if amount > self.balance => {
                return Err(Refused(format!("cannot withdraw {amount}: the balance is {}", self.balance)))
            }
            Command::Withdraw(amount) => Event::Withdrawn { amount, balance: self.balance - amount },
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::Opened => self.opened = true,
            Event::Deposited { balance, .. } | Event::Withdrawn { balance, .. } => self.balance = balance,
        }
    }
}

/// A view: each account's balance and how many events made it.
#[derive(Clone, Default)]
struct Balances(Arc<Mutex<HashMap<String, (i64, usize)>>>);

#[async_trait]
impl Query<Account> for Balances {
    async fn dispatch(&self, id: &str, events: &[EventEnvelope<Account>]) {
        let mut views = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let view = views.entry(id.to_string()).or_default();
        for e in events {
            match e.payload {
                Event::Deposited { amount, .. } => view.0 += amount,
                Event::Withdrawn { amount, .. } => view.0 -= amount,
                Event::Opened => {}
            }
            view.1 = e.sequence;
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args().nth(1).map_or_else(|| temp.path().to_path_buf(), Into::into);

    // The one line that differs from postgres-es (`PostgresEventRepository::new(pool)`).
    let repo = FactlogEventRepository::open(&dir)?;
    let balances = Balances::default();
    let cqrs = factlog_snapshot_cqrs::<Account>(repo.clone(), vec![Box::new(balances.clone())], 5, ());

    cqrs.execute("acct-1", Command::Open).await?;
    for amount in [100, 250, 40] {
        cqrs.execute("acct-1", Command::Deposit(amount)).await?;
    }
    cqrs.execute("acct-1", Command::Withdraw(90)).await?;
    match cqrs.execute("acct-1", Command::Withdraw(10_000)).await {
        Err(AggregateError::UserError(refused)) => println!("refused: {refused}"),
        other => println!("unexpected: {other:?}"),
    }
    if let Some((balance, sequence)) = balances.0.lock().unwrap_or_else(|p| p.into_inner()).get("acct-1") {
        println!("view: this run moved acct-1's balance by {balance}, up to sequence {sequence}");
    }

    // What the store holds: every event of every run, and the snapshot the
    // next command will load from.
    use cqrs_es::persist::PersistedEventRepository;
    let events = repo.get_events::<Account>("acct-1").await?;
    let snapshot = repo.get_snapshot::<Account>("acct-1").await?;
    println!("stored: {} events in {}", events.len(), dir.display());
    if let Some(s) = snapshot {
        println!("snapshot {} at sequence {}: {}", s.current_snapshot, s.current_sequence, s.aggregate);
    }
    Ok(())
}

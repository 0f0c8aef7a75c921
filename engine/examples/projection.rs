//! A read model kept by a durable consumer: account balances, folded from
//! `Deposited` / `Withdrawn` events, saved in `balances.txt` beside the store.
//! Run it twice: the second run appends a few more events and handles only
//! those, because the consumer resumes after its checkpoint.
//!
//! ```text
//! cargo run --release -p factlog --example projection -- /tmp/bank
//! cargo run --release -p factlog --example projection -- /tmp/bank
//! ```
//!
//! The model file records the position it reflects, and the checkpoint is
//! committed only after the model is saved. After a crash between the two,
//! the consumer hands out again the events after its checkpoint, and the
//! handler skips those the saved model already holds: at-least-once
//! delivery becomes an exactly-once model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use factlog::{ConsumerOptions, EventId, EventRef, ExpectedVersion, NewEvent, Options, Store};

/// The read model: balances, and the next position it has not folded yet.
#[derive(Default)]
struct Balances {
    next: u64,
    accounts: BTreeMap<String, i64>,
}

impl Balances {
    /// Loads the model, or an empty one if it was never saved.
    fn load(path: &Path) -> std::io::Result<Balances> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Balances::default()),
            Err(e) => return Err(e),
        };
        let mut model = Balances::default();
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("next", n)) => model.next = n.parse().map_err(std::io::Error::other)?,
                Some((account, balance)) => {
                    model.accounts.insert(account.to_string(), balance.parse().map_err(std::io::Error::other)?);
                }
                None => return Err(std::io::Error::other(format!("bad line {line:?} in {}", path.display()))),
            }
        }
        Ok(model)
    }

    /// Saves the model crash-safely (write a temporary file, then rename).
    fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut text = format!("next {}\n", self.next);
        for (account, balance) in &self.accounts {
            text.push_str(&format!("{account} {balance}\n"));
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// Folds one event in, unless the model already holds it.
    fn apply(&mut self, event: &EventRef<'_>) -> Result<(), String> {
        if event.position() < self.next {
            return Ok(()); // handled before a crash: already in the saved model
        }
        let amount: i64 = std::str::from_utf8(event.data())
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("event at {} has no amount", event.position()))?;
        let balance = self.accounts.entry(event.aggregate_id().to_string()).or_default();
        match event.event_type() {
            "Deposited" => *balance += amount,
            "Withdrawn" => *balance -= amount,
            _ => {}
        }
        self.next = event.position() + 1;
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("factlog-bank"));
    let store = Store::open(&dir, Options::default())?;

    // The application: a few deposits and withdrawals on three accounts.
    let before = store.last_position().map_or(0, |p| p + 1);
    for i in 0..30u64 {
        let account = format!("account-{}", i % 3);
        let (kind, amount) = if i % 4 == 3 { ("Withdrawn", 20) } else { ("Deposited", 100) };
        let event = NewEvent::new(EventId::new_v7(), kind, amount.to_string());
        store.append(&account, ExpectedVersion::Any, vec![event])?;
    }

    // The projector: a durable consumer that commits only after saving the model.
    let model_path = dir.join("balances.txt");
    let mut model = Balances::load(&model_path)?;
    let mut consumer = store.consumer("balances", ConsumerOptions::default().auto_commit(false))?;
    let resumed_at = consumer.position();
    let summary = consumer.run_until_caught_up(|event: &EventRef<'_>| model.apply(event))?;
    model.save(&model_path)?;
    if let Some(last) = model.next.checked_sub(1) {
        consumer.commit(last)?;
    }

    println!("log had {before} events; 30 appended; consumer resumed at position {resumed_at}");
    println!("handled {} events this run, parked {}", summary.handled, summary.parked);
    for (account, balance) in &model.accounts {
        println!("{account}: {balance}");
    }
    Ok(())
}

//! A bank account for cqrs-es: the aggregate, its commands and events, and a
//! balance view. Shared by the tests and the W11 benchmark
//! (`bench/src/main.rs` includes this file).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope, Query};
use serde::{Deserialize, Serialize};

/// The account: its owner and balance in cents.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct BankAccount {
    pub opened: bool,
    pub owner: String,
    pub balance: i64,
}

/// What a client asks of an account.
#[derive(Debug, Clone)]
pub enum BankCommand {
    Open {
        owner: String,
    },
    Deposit {
        amount: i64,
    },
    /// One command, one event per amount (a batch of several events).
    DepositMany {
        amounts: Vec<i64>,
    },
    Withdraw {
        amount: i64,
    },
}

/// What happened to an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BankEvent {
    AccountOpened { owner: String },
    FundsDeposited { amount: i64, balance: i64 },
    FundsWithdrawn { amount: i64, balance: i64 },
}

impl DomainEvent for BankEvent {
    fn event_type(&self) -> String {
        match self {
            BankEvent::AccountOpened { .. } => "AccountOpened",
            BankEvent::FundsDeposited { .. } => "FundsDeposited",
            BankEvent::FundsWithdrawn { .. } => "FundsWithdrawn",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

/// A command the account's rules refuse.
#[derive(Debug, Clone, PartialEq)]
pub struct BankError(pub String);

impl std::fmt::Display for BankError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BankError {}

impl Aggregate for BankAccount {
    const TYPE: &'static str = "BankAccount";
    type Command = BankCommand;
    type Event = BankEvent;
    type Error = BankError;
    type Services = ();

    async fn handle(&mut self, command: BankCommand, _: &(), sink: &EventSink<Self>) -> Result<(), BankError> {
        match command {
            BankCommand::Open { owner } if !self.opened => sink.write(BankEvent::AccountOpened { owner }, self).await,
            BankCommand::Open { .. } => return Err(BankError("account already open".into())),
            _ if !self.opened => return Err(BankError("no such account".into())),
            BankCommand::Deposit { amount } => self.deposit(amount, sink).await?,
            BankCommand::DepositMany { amounts } => {
                for amount in amounts {
                    self.deposit(amount, sink).await?;
                }
            }
            BankCommand::Withdraw { amount } if amount > self.balance => {
                return Err(BankError(format!("insufficient funds: {} < {amount}", self.balance)))
            }
            BankCommand::Withdraw { amount } => {
                let balance = self.balance - amount;
                sink.write(BankEvent::FundsWithdrawn { amount, balance }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: BankEvent) {
        match event {
            BankEvent::AccountOpened { owner } => {
                self.opened = true;
                self.owner = owner;
            }
            BankEvent::FundsDeposited { balance, .. } | BankEvent::FundsWithdrawn { balance, .. } => {
                self.balance = balance
            }
        }
    }
}

impl BankAccount {
    async fn deposit(&mut self, amount: i64, sink: &EventSink<Self>) -> Result<(), BankError> {
        if amount <= 0 {
            return Err(BankError(format!("deposit of {amount}")));
        }
        let balance = self.balance + amount;
        sink.write(BankEvent::FundsDeposited { amount, balance }, self).await;
        Ok(())
    }
}

/// A read model: per account, the balance and what moved it.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalanceView {
    pub owner: String,
    pub balance: i64,
    pub deposits: u64,
    pub withdrawals: u64,
    pub last_sequence: usize,
}

/// Keeps [`BalanceView`]s in memory, updated by the framework after each commit.
#[derive(Clone, Default)]
pub struct BalanceQuery {
    pub views: Arc<Mutex<HashMap<String, BalanceView>>>,
}

impl BalanceQuery {
    pub fn view(&self, id: &str) -> Option<BalanceView> {
        self.views.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    pub fn all(&self) -> Vec<(String, BalanceView)> {
        let mut all: Vec<_> =
            self.views.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[async_trait]
impl Query<BankAccount> for BalanceQuery {
    async fn dispatch(&self, aggregate_id: &str, events: &[EventEnvelope<BankAccount>]) {
        let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        let view = views.entry(aggregate_id.to_string()).or_default();
        for e in events {
            view.last_sequence = e.sequence;
            match &e.payload {
                BankEvent::AccountOpened { owner } => view.owner = owner.clone(),
                BankEvent::FundsDeposited { balance, .. } => {
                    view.balance = *balance;
                    view.deposits += 1;
                }
                BankEvent::FundsWithdrawn { balance, .. } => {
                    view.balance = *balance;
                    view.withdrawals += 1;
                }
            }
        }
    }
}

//! factlog's benchmark suite: a harness (`factlog-bench`) that runs eleven
//! event-store workloads against factlog and two peers (SQLite, fjall) and
//! this machine's physical limits, plus criterion micro-benchmarks in
//! `benches/`.
//!
//! Modules: [`event`] (the shared event shape), [`engines`] (one adapter per
//! engine behind one trait), [`workloads`] (W1–W6, W2m), [`snapshots`] (W7),
//! [`live`] (W8 and W2 with subscribers), [`catchup`] (W9, W10), [`upcast`] (W6 with upcasters), [`physical`]
//! (hardware limits), [`harness`] (running workloads per engine), [`report`]
//! (table and JSON), [`progress`] (stderr), [`cli`], plus small helpers.
//! Errors are [`anyhow::Error`]s carrying what was being done as context.
//!
//! No `unsafe` code anywhere in the crate; no `unwrap`/`expect` outside tests.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod catchup;
pub mod cli;
pub mod disk;
pub mod engines;
pub mod event;
pub mod harness;
pub mod latency;
pub mod live;
pub mod machine;
pub mod physical;
pub mod progress;
pub mod report;
pub mod snapshots;
pub mod upcast;
pub mod workloads;

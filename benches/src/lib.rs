//! factlog's benchmark suite: a harness (`factlog-bench`) that runs seven
//! event-store workloads against factlog and two peers (SQLite, fjall) and
//! this machine's physical limits, plus criterion micro-benchmarks in
//! `benches/`.
//!
//! Modules: [`event`] (the shared event shape), [`engines`] (one adapter per
//! engine behind one trait), [`workloads`] (W1–W6), [`snapshots`] (W7), [`physical`] (hardware
//! limits), [`harness`] (running workloads per engine), [`report`] (table and
//! JSON), [`cli`], plus small helpers.

pub mod cli;
pub mod disk;
pub mod engines;
pub mod error;
pub mod event;
pub mod harness;
pub mod latency;
pub mod machine;
pub mod physical;
pub mod progress;
pub mod report;
pub mod snapshots;
pub mod workloads;

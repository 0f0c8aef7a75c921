//! W11: the bank-account commands of `bindings/cqrs-es/tests/common/bank.rs`
//! through cqrs-es's `CqrsFramework`, on three backends in one run: factlog
//! (`Durability::Sync`, through `factlog-cqrs`), postgres-es 0.5 on a
//! throwaway local PostgreSQL cluster (default `synchronous_commit=on`; only
//! with `--features postgres`, skipped with the reason otherwise) and
//! cqrs-es's in-memory `MemStore`, the ceiling.
//!
//! - (a) one client, one command at a time;
//! - (b) 16 concurrent clients, each on its own accounts;
//! - (c) loading an account of 10,000 events, replaying every event and from
//!   the newest snapshot (a snapshot store with a snapshot every 100 events).
//!
//! Each client works on accounts of 20 commands each (an open, then deposits
//! and withdrawals), so a command loads about 10 events in (a) and (b).
//! Run `factlog-cqrs-bench --help` for the options.

mod postgres;

#[path = "../../tests/common/bank.rs"]
mod bank;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bank::{BankAccount, BankCommand};
use cqrs_es::mem_store::MemStore;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{AggregateContext, AggregateError, CqrsFramework, EventStore};
use factlog::{Options, Store};
use factlog_cqrs::{factlog_cqrs, factlog_snapshot_cqrs, FactlogEventRepository};

/// Commands on one account before a client moves to its next one.
const COMMANDS_PER_ACCOUNT: usize = 20;
/// Events per command while the (c) account is built.
const BUILD_BATCH_EVENTS: usize = 100;

#[derive(Debug, Clone)]
struct Config {
    /// (a): commands of the single client.
    commands: usize,
    /// (b): concurrent clients, and commands each.
    clients: usize,
    commands_per_client: usize,
    /// (c): events of the loaded account, snapshot size, timed loads.
    load_events: usize,
    snapshot_size: usize,
    loads: usize,
    backends: Vec<Backend>,
    dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Backend {
    Factlog,
    Postgres,
    Mem,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Factlog => "factlog",
            Backend::Postgres => "postgres-es",
            Backend::Mem => "in-memory",
        }
    }
}

const USAGE: &str = "factlog-cqrs-bench [--quick] [--commands N] [--clients N] [--commands-per-client N]
  [--load-events N] [--snapshot-size N] [--loads N] [--backends factlog,postgres,mem] [--dir DIR]

W11: cqrs-es bank-account commands on factlog (Sync), postgres-es (a throwaway local
PostgreSQL; needs --features postgres) and cqrs-es's in-memory store.
Defaults: --commands 2000 --clients 16 --commands-per-client 500 --load-events 10000
--snapshot-size 100 --loads 30, every backend, stores in the system temp directory.
--quick: 200 / 16 x 20 / 1,000 events / 5 loads (CI's smoke test).";

fn parse_args() -> anyhow::Result<Config> {
    let mut c = Config {
        commands: 2000,
        clients: 16,
        commands_per_client: 500,
        load_events: 10_000,
        snapshot_size: 100,
        loads: 30,
        backends: vec![Backend::Factlog, Backend::Postgres, Backend::Mem],
        dir: std::env::temp_dir(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--quick" => (c.commands, c.commands_per_client, c.load_events, c.loads) = (200, 20, 1000, 5),
            "--commands" => c.commands = value()?.parse()?,
            "--clients" => c.clients = value()?.parse()?,
            "--commands-per-client" => c.commands_per_client = value()?.parse()?,
            "--load-events" => c.load_events = value()?.parse()?,
            "--snapshot-size" => c.snapshot_size = value()?.parse()?,
            "--loads" => c.loads = value()?.parse()?,
            "--dir" => c.dir = PathBuf::from(value()?),
            "--backends" => {
                c.backends = value()?
                    .split(',')
                    .map(|b| match b {
                        "factlog" => Ok(Backend::Factlog),
                        "postgres" | "postgres-es" => Ok(Backend::Postgres),
                        "mem" | "in-memory" => Ok(Backend::Mem),
                        other => bail!("unknown backend {other:?}\n{USAGE}"),
                    })
                    .collect::<anyhow::Result<_>>()?
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if c.load_events < BUILD_BATCH_EVENTS || c.snapshot_size == 0 || c.clients == 0 || c.loads == 0 {
        bail!("--load-events must be at least {BUILD_BATCH_EVENTS}, the other counts at least 1");
    }
    Ok(c)
}

/// One measured figure.
struct Row {
    workload: &'static str,
    backend: Backend,
    /// Commands (or loads) per second.
    per_second: f64,
    /// Latencies in nanoseconds, sorted.
    latencies: Vec<u64>,
}

impl Row {
    fn new(workload: &'static str, backend: Backend, count: usize, elapsed: Duration, mut latencies: Vec<u64>) -> Row {
        latencies.sort_unstable();
        Row { workload, backend, per_second: count as f64 / elapsed.as_secs_f64(), latencies }
    }

    fn percentile_us(&self, p: f64) -> f64 {
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len().max(1)) - 1;
        self.latencies.get(i).map_or(0.0, |ns| *ns as f64 / 1000.0)
    }
}

/// The i-th command on an account.
fn command(i: usize) -> BankCommand {
    match i {
        0 => BankCommand::Open { owner: "w11".into() },
        i if i % 4 == 3 => BankCommand::Withdraw { amount: 5 },
        _ => BankCommand::Deposit { amount: 10 },
    }
}

/// `clients` concurrent clients doing `per_client` commands each, one at a
/// time, on accounts of their own; returns the wall time and every latency.
async fn run_clients<ES>(
    cqrs: Arc<CqrsFramework<BankAccount, ES>>,
    tag: &str,
    clients: usize,
    per_client: usize,
) -> anyhow::Result<(Duration, Vec<u64>)>
where
    ES: EventStore<BankAccount> + 'static,
    ES::AC: Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let cqrs = Arc::clone(&cqrs);
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for k in 0..per_client {
                let id = format!("{tag}-c{client}-acct-{}", k / COMMANDS_PER_ACCOUNT);
                let t = Instant::now();
                cqrs.execute(&id, command(k % COMMANDS_PER_ACCOUNT))
                    .await
                    .map_err(|e| anyhow::anyhow!("command {k} of client {client} on {id}: {e}"))?;
                latencies.push(t.elapsed().as_nanos() as u64);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::with_capacity(clients * per_client);
    for task in tasks {
        all.extend(task.await??);
    }
    Ok((start.elapsed(), all))
}

/// Builds the (c) account: an open, then deposits in commands of
/// [`BUILD_BATCH_EVENTS`] events, the first one short so that every command
/// ends on a multiple of the batch (postgres-es records a snapshot at its
/// commit's last sequence: this keeps its snapshots right).
async fn build_account<ES: EventStore<BankAccount>>(
    cqrs: &CqrsFramework<BankAccount, ES>,
    id: &str,
    events: usize,
) -> anyhow::Result<i64> {
    cqrs.execute(id, command(0)).await.map_err(framework_error)?;
    let mut stored = 1;
    let mut balance = 0;
    while stored < events {
        let n = (BUILD_BATCH_EVENTS - stored % BUILD_BATCH_EVENTS).min(events - stored);
        let amounts: Vec<i64> = (0..n as i64).map(|i| 1 + i % 7).collect();
        balance += amounts.iter().sum::<i64>();
        cqrs.execute(id, BankCommand::DepositMany { amounts }).await.map_err(framework_error)?;
        stored += n;
    }
    Ok(balance)
}

fn framework_error(e: AggregateError<bank::BankError>) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Times `loads` loads of the account as a command would load it, and
/// checks the balance each one loads.
async fn time_loads<ES: EventStore<BankAccount>>(
    store: &ES,
    id: &str,
    loads: usize,
    balance: i64,
) -> anyhow::Result<(Duration, Vec<u64>)> {
    let mut latencies = Vec::with_capacity(loads);
    let mut elapsed = Duration::ZERO;
    for _ in 0..loads {
        let t = Instant::now();
        let mut ctx = store.load_aggregate(id).await.map_err(framework_error)?;
        let took = t.elapsed();
        elapsed += took;
        latencies.push(took.as_nanos() as u64);
        if ctx.aggregate().balance != balance {
            bail!("loaded balance {}, built {balance}", ctx.aggregate().balance);
        }
    }
    Ok((elapsed, latencies))
}

async fn bench_factlog(cfg: &Config, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("w11-factlog-").tempdir_in(&cfg.dir)?;
    let b = Backend::Factlog;
    let repo = FactlogEventRepository::new(Store::open(dir.path().join("ab"), Options::default())?);
    let cqrs = Arc::new(factlog_cqrs::<BankAccount>(repo.clone(), vec![], ()));
    let (t, lat) = run_clients(Arc::clone(&cqrs), "a", 1, cfg.commands).await?;
    rows.push(Row::new("(a) 1 client", b, cfg.commands, t, lat));
    let (t, lat) = run_clients(cqrs, "b", cfg.clients, cfg.commands_per_client).await?;
    rows.push(Row::new("(b) concurrent clients", b, cfg.clients * cfg.commands_per_client, t, lat));

    let repo = FactlogEventRepository::new(Store::open(dir.path().join("c"), Options::default())?);
    let builder = factlog_snapshot_cqrs::<BankAccount>(repo.clone(), vec![], cfg.snapshot_size, ());
    let balance = build_account(&builder, "big", cfg.load_events).await?;
    let events = PersistedEventStore::<_, BankAccount>::new_event_store(repo.clone());
    let (t, lat) = time_loads(&events, "big", cfg.loads, balance).await?;
    rows.push(Row::new("(c) load, replay", b, cfg.loads, t, lat));
    let snaps = repo.clone().with_snapshot_size(cfg.snapshot_size);
    let snaps = PersistedEventStore::<_, BankAccount>::new_snapshot_store(snaps, cfg.snapshot_size);
    let (t, lat) = time_loads(&snaps, "big", cfg.loads, balance).await?;
    rows.push(Row::new("(c) load, snapshot", b, cfg.loads, t, lat));
    Ok(())
}

async fn bench_mem(cfg: &Config, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let b = Backend::Mem;
    // IMPORTANT: MemStore prints a line on every load and commit; stdout is
    // silenced while it runs, or the terminal would be the benchmark.
    let quiet = gag::Gag::stdout().ok();
    let mem = MemStore::<BankAccount>::default();
    let cqrs = Arc::new(CqrsFramework::new(mem.clone(), vec![], ()));
    let a = run_clients(Arc::clone(&cqrs), "a", 1, cfg.commands).await;
    let bb = run_clients(cqrs.clone(), "b", cfg.clients, cfg.commands_per_client).await;
    let balance = build_account(&cqrs, "big", cfg.load_events).await;
    let loads = match &balance {
        Ok(balance) => Some(time_loads(&mem, "big", cfg.loads, *balance).await),
        Err(_) => None,
    };
    drop(quiet);
    let (t, lat) = a?;
    rows.push(Row::new("(a) 1 client", b, cfg.commands, t, lat));
    let (t, lat) = bb?;
    rows.push(Row::new("(b) concurrent clients", b, cfg.clients * cfg.commands_per_client, t, lat));
    balance?;
    if let Some(loads) = loads {
        let (t, lat) = loads?;
        rows.push(Row::new("(c) load, replay", b, cfg.loads, t, lat));
    }
    Ok(())
}

fn print_rows(cfg: &Config, rows: &[Row]) {
    println!();
    println!(
        "W11: cqrs-es bank account, (a) {} commands, (b) {} clients x {} commands, (c) a {}-event account, snapshot every {} events, {} loads",
        cfg.commands, cfg.clients, cfg.commands_per_client, cfg.load_events, cfg.snapshot_size, cfg.loads
    );
    println!(
        "{:<24} {:<12} {:>14} {:>12} {:>12} {:>14} {:>14}",
        "workload", "backend", "per second", "p50 us", "p99 us", "x postgres-es", "x in-memory"
    );
    let ratio = |row: &Row, peer: Backend, workload: &str| {
        let peer_workload =
            if peer == Backend::Mem && workload.starts_with("(c)") { "(c) load, replay" } else { workload };
        rows.iter()
            .find(|r| r.backend == peer && r.workload == peer_workload)
            .map_or("".to_string(), |p| format!("{:.2}", row.per_second / p.per_second))
    };
    for row in rows {
        println!(
            "{:<24} {:<12} {:>14.0} {:>12.1} {:>12.1} {:>14} {:>14}",
            row.workload,
            row.backend.name(),
            row.per_second,
            row.percentile_us(0.5),
            row.percentile_us(0.99),
            if row.backend == Backend::Postgres { String::new() } else { ratio(row, Backend::Postgres, row.workload) },
            if row.backend == Backend::Mem { String::new() } else { ratio(row, Backend::Mem, row.workload) },
        );
    }
    println!("(c) rows are loads per second and load latency; the in-memory store has no snapshots, so both (c) rows compare with its replay.");
}

fn main() -> anyhow::Result<()> {
    let cfg = parse_args()?;
    std::fs::create_dir_all(&cfg.dir).with_context(|| format!("cannot create {}", cfg.dir.display()))?;
    println!("stores under {} (factlog: Durability::Sync)", cfg.dir.display());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut rows = Vec::new();
    for backend in &cfg.backends {
        let started = Instant::now();
        let done = match backend {
            Backend::Factlog => runtime.block_on(bench_factlog(&cfg, &mut rows)),
            Backend::Mem => runtime.block_on(bench_mem(&cfg, &mut rows)),
            Backend::Postgres => match postgres::Cluster::start(&cfg.dir) {
                Ok(cluster) => {
                    let r = runtime.block_on(postgres::bench(&cluster, &cfg, &mut rows));
                    drop(cluster);
                    r
                }
                Err(reason) => {
                    println!("postgres-es: skipped: {reason}");
                    continue;
                }
            },
        };
        done.with_context(|| format!("{} failed", backend.name()))?;
        println!("{}: done in {:.1} s", backend.name(), started.elapsed().as_secs_f64());
    }
    print_rows(&cfg, &rows);
    Ok(())
}

/// For the postgres module: what it needs of this one.
mod shared {
    #[cfg_attr(not(feature = "postgres"), allow(unused_imports))]
    pub(crate) use super::{build_account, run_clients, time_loads, Backend, Config, Row};
}

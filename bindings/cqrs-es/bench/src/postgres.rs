//! The postgres-es side of W11: a throwaway PostgreSQL cluster (`initdb` and
//! `pg_ctl` in a temporary directory, on a free loopback port, as a non-root
//! user since PostgreSQL refuses root; stopped when dropped) and the same
//! workloads on postgres-es 0.5. Built only with `--features postgres`;
//! without it, [`Cluster::start`] says so and the run skips PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::shared::Config;
#[cfg(feature = "postgres")]
use crate::shared::{build_account, run_clients, time_loads, Backend, Row};

/// A running throwaway cluster.
pub struct Cluster {
    /// Holds the data directory until the cluster is stopped.
    _dir: tempfile::TempDir,
    data: PathBuf,
    pg_ctl: PathBuf,
    as_user: Option<&'static str>,
    /// Where to connect.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub url: String,
}

impl Cluster {
    /// Starts a cluster under `base`, or says why it cannot.
    pub fn start(base: &Path) -> Result<Cluster, String> {
        if !cfg!(feature = "postgres") {
            return Err("built without postgres-es (run with `--features postgres`)".into());
        }
        let bin = find_bin().ok_or("no initdb/pg_ctl found (apt-get install postgresql)")?;
        let as_user = match is_root() {
            true if run(None, Path::new("id"), &["postgres"]).is_ok() => Some("postgres"),
            true => return Err("running as root and there is no `postgres` user to run PostgreSQL as".into()),
            false => None,
        };
        let dir = tempfile::Builder::new().prefix("w11-pg-").tempdir_in(base).map_err(|e| e.to_string())?;
        let dir_s = dir.path().to_string_lossy().to_string();
        if let Some(user) = as_user {
            run(None, Path::new("chown"), &[&format!("{user}:"), &dir_s])?;
        }
        let data = dir.path().join("data");
        let data_s = data.to_string_lossy().to_string();
        let initdb = bin.join("initdb");
        run(as_user, &initdb, &["-D", &data_s, "-U", "bench", "--auth=trust", "-E", "UTF8", "--no-instructions"])?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free loopback port: {e}"))?
            .port();
        let pg_ctl = bin.join("pg_ctl");
        let log = dir.path().join("postgres.log").to_string_lossy().to_string();
        let opts = format!("-p {port} -k {dir_s} -c listen_addresses=127.0.0.1");
        let cluster =
            Cluster { _dir: dir, data, pg_ctl, as_user, url: format!("postgres://bench@127.0.0.1:{port}/postgres") };
        run(as_user, &cluster.pg_ctl, &["-D", &data_s, "-l", &log, "-w", "-o", &opts, "start"])?;
        println!("postgres-es: PostgreSQL started in {dir_s} on 127.0.0.1:{port} (synchronous_commit=on, the default)");
        Ok(cluster)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data.to_string_lossy().to_string();
        if let Err(e) = run(self.as_user, &self.pg_ctl, &["-D", &data, "-m", "fast", "-w", "stop"]) {
            eprintln!("postgres-es: could not stop the cluster: {e}");
        }
    }
}

/// The directory holding `initdb` and `pg_ctl`: on the PATH, else Debian's.
fn find_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if let Ok(versions) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut found: Vec<PathBuf> = versions.filter_map(|v| v.ok()).map(|v| v.path().join("bin")).collect();
        found.sort();
        dirs.extend(found.into_iter().rev());
    }
    dirs.into_iter().find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a program (as `user` through `runuser` when given), failing with its output.
fn run(user: Option<&str>, program: &Path, args: &[&str]) -> Result<(), String> {
    let mut cmd = match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    };
    let out = cmd.args(args).output().map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Err(format!("{} {args:?} failed ({}): {}", program.display(), out.status, text.trim()))
}

/// postgres-es's tables (its `db/init.sql`, without the test rows).
#[cfg(feature = "postgres")]
const SCHEMA: [&str; 2] = [
    "CREATE TABLE events (aggregate_type text NOT NULL, aggregate_id text NOT NULL,
        sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL, event_version text NOT NULL,
        payload json NOT NULL, metadata json NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, sequence))",
    "CREATE TABLE snapshots (aggregate_type text NOT NULL, aggregate_id text NOT NULL,
        last_sequence bigint CHECK (last_sequence >= 0) NOT NULL, current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
        payload json NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, last_sequence))",
];

/// The workloads on postgres-es.
#[cfg(feature = "postgres")]
pub async fn bench(cluster: &Cluster, cfg: &Config, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    use std::sync::Arc;

    use crate::bank::BankAccount;
    use cqrs_es::persist::PersistedEventStore;
    use postgres_es::{postgres_cqrs, postgres_snapshot_cqrs, PostgresEventRepository};

    let pool =
        sqlx::postgres::PgPoolOptions::new().max_connections(cfg.clients as u32 + 4).connect(&cluster.url).await?;
    for statement in SCHEMA {
        sqlx::query(statement).execute(&pool).await?;
    }
    let b = Backend::Postgres;
    let cqrs = Arc::new(postgres_cqrs::<BankAccount>(pool.clone(), vec![], ()));
    let (t, lat) = run_clients(Arc::clone(&cqrs), "a", 1, cfg.commands).await?;
    rows.push(Row::new("(a) 1 client", b, cfg.commands, t, lat));
    let (t, lat) = run_clients(cqrs, "b", cfg.clients, cfg.commands_per_client).await?;
    rows.push(Row::new("(b) concurrent clients", b, cfg.clients * cfg.commands_per_client, t, lat));

    let builder = postgres_snapshot_cqrs::<BankAccount>(pool.clone(), vec![], cfg.snapshot_size, ());
    let balance = build_account(&builder, "big", cfg.load_events).await?;
    let events = PersistedEventStore::<_, BankAccount>::new_event_store(PostgresEventRepository::new(pool.clone()));
    let (t, lat) = time_loads(&events, "big", cfg.loads, balance).await?;
    rows.push(Row::new("(c) load, replay", b, cfg.loads, t, lat));
    let repo = PostgresEventRepository::new(pool.clone());
    let snaps = PersistedEventStore::<_, BankAccount>::new_snapshot_store(repo, cfg.snapshot_size);
    let (t, lat) = time_loads(&snaps, "big", cfg.loads, balance).await?;
    rows.push(Row::new("(c) load, snapshot", b, cfg.loads, t, lat));
    pool.close().await;
    Ok(())
}

/// Without the feature there is nothing to run ([`Cluster::start`] refused).
#[cfg(not(feature = "postgres"))]
pub async fn bench(_: &Cluster, _: &Config, _: &mut Vec<crate::shared::Row>) -> anyhow::Result<()> {
    anyhow::bail!("built without postgres-es")
}

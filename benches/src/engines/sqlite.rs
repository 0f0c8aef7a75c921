//! SQLite peer (rusqlite, bundled): one `events` table keyed by global
//! position, WAL journal, one connection per thread, the expected-version
//! check done in SQL inside a `BEGIN IMMEDIATE` transaction.
//!
//! Set up as SQLite's own documentation recommends for this use: WAL mode
//! (concurrent readers, one fsync per commit) with `synchronous=FULL` when
//! every commit must survive power loss, and `synchronous=NORMAL` for
//! buffered runs ("WAL mode is safe from corruption with synchronous=NORMAL"
//! — a commit may roll back after a power loss but never corrupts). Writers
//! serialize on the database write lock and wait for it with `busy_timeout`.

use super::{BenchEngine, Durability, EngineKind, EngineStats, ManyPart, Session};
use crate::event::Ev;
use anyhow::{anyhow, bail, Context, Result};
use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Database file name inside the store directory.
const DB_FILE: &str = "events.db";

/// How long a writer waits for the write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS events(
    global_pos INTEGER PRIMARY KEY,
    event_id BLOB NOT NULL UNIQUE,
    aggregate_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    event_type TEXT,
    occurred_at INTEGER,
    data BLOB,
    UNIQUE(aggregate_id, version))";

const SQL_MAX_VERSION: &str = "SELECT MAX(version) FROM events WHERE aggregate_id = ?1";
const SQL_INSERT: &str = "INSERT INTO events(event_id, aggregate_id, version, event_type, occurred_at, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const SQL_REPLAY: &str = "SELECT data FROM events WHERE aggregate_id = ?1 ORDER BY version";
const SQL_SCAN: &str = "SELECT data FROM events ORDER BY global_pos";
/// Rows past a poller's last seen `global_pos` (SQLite numbers rows from 1).
const SQL_POLL: &str = "SELECT global_pos, data FROM events WHERE global_pos > ?1 ORDER BY global_pos";

/// An open SQLite store.
pub struct SqliteEngine {
    path: PathBuf,
    durability: Durability,
    control: Mutex<Connection>,
}

impl SqliteEngine {
    /// Creates the database in `dir` with the schema and WAL journal.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self> {
        let path = dir.join(DB_FILE);
        let control = connect(&path, durability)?;
        let mode: String =
            control.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).context("sqlite: enabling WAL")?;
        if !mode.eq_ignore_ascii_case("wal") {
            bail!("sqlite refused WAL mode (got {mode})");
        }
        control.execute_batch(SCHEMA).context("sqlite: creating schema")?;
        Ok(SqliteEngine { path, durability, control: Mutex::new(control) })
    }
}

/// A new connection with this run's per-connection settings.
fn connect(path: &Path, durability: Durability) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .context(format!("sqlite: opening {}", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let sync = match durability {
        Durability::Sync => "FULL",
        Durability::Buffered => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync).context("sqlite: setting synchronous")?;
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}

impl BenchEngine for SqliteEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Sqlite
    }

    fn session(&self) -> Result<Box<dyn Session>> {
        Ok(Box::new(SqliteSession { conn: connect(&self.path, self.durability)? }))
    }

    fn sync(&self) -> Result<()> {
        let conn = self.control.lock().map_err(|_| anyhow!("sqlite control connection poisoned"))?;
        // A checkpoint fsyncs the WAL, copies it into the database, fsyncs
        // that and truncates the WAL: afterwards everything is durable and the
        // database file holds all the data.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).context("sqlite: checkpoint")?;
        Ok(())
    }

    fn stats(&self) -> EngineStats {
        EngineStats::default()
    }

    fn close(self: Box<Self>) -> Result<()> {
        let conn = self.control.into_inner().map_err(|_| anyhow!("sqlite control connection poisoned"))?;
        conn.close().map_err(|(_, e)| anyhow::Error::from(e).context("sqlite: close"))
    }
}

/// One thread's connection.
struct SqliteSession {
    conn: Connection,
}

impl Session for SqliteSession {
    fn append(&mut self, agg: &str, expected: Option<u64>, events: &[Ev]) -> Result<u64> {
        let versions = self.append_in_one_transaction(&[(agg, expected, events)])?;
        versions.first().copied().ok_or_else(|| anyhow!("sqlite: no version for {agg}"))
    }

    fn append_many(&mut self, batches: &[ManyPart<'_>]) -> Result<Vec<u64>> {
        self.append_in_one_transaction(batches)
    }

    fn replay(&mut self, agg: &str, visit: &mut dyn FnMut(&[u8])) -> Result<u64> {
        let mut stmt = self.conn.prepare_cached(SQL_REPLAY)?;
        let n = visit_rows(stmt.query(params![agg])?, visit)?;
        Ok(n)
    }

    fn scan(&mut self, visit: &mut dyn FnMut(&[u8])) -> Result<u64> {
        let mut stmt = self.conn.prepare_cached(SQL_SCAN)?;
        let n = visit_rows(stmt.query([])?, visit)?;
        Ok(n)
    }

    fn read_from(&mut self, from: u64, visit: &mut dyn FnMut(u64, &[u8])) -> Result<u64> {
        let mut stmt = self.conn.prepare_cached(SQL_POLL)?;
        // Position p (from 0) is row p + 1: rows past `from` in SQLite's numbering.
        let mut rows = stmt.query(params![from as i64])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let global_pos: i64 = row.get(0)?;
            let data = row.get_ref(1)?.as_blob().context("sqlite: data column")?;
            visit((global_pos as u64).saturating_sub(1), data);
            n += 1;
        }
        Ok(n)
    }
}

impl SqliteSession {
    /// Checks every part's expected version and inserts its events, all in
    /// one `BEGIN IMMEDIATE` transaction (dropped, so rolled back, on the
    /// first mismatch); returns each part's new last version.
    fn append_in_one_transaction(&mut self, parts: &[ManyPart<'_>]) -> Result<Vec<u64>> {
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).context("sqlite: BEGIN IMMEDIATE")?;
        let mut last_versions = Vec::with_capacity(parts.len());
        for &(agg, expected, events) in parts {
            let current: Option<i64> = tx.prepare_cached(SQL_MAX_VERSION)?.query_row(params![agg], |r| r.get(0))?;
            let current = current.map(|v| v as u64);
            if current != expected {
                bail!("sqlite: wrong expected version for {agg}: expected {expected:?}, actual {current:?}");
            }
            let mut version = expected.map_or(0, |v| v + 1);
            let mut insert = tx.prepare_cached(SQL_INSERT)?;
            for ev in events {
                insert.execute(params![
                    &ev.id[..],
                    agg,
                    version as i64,
                    ev.event_type,
                    ev.occurred_at,
                    &ev.payload[..]
                ])?;
                version += 1;
            }
            last_versions.push(version.saturating_sub(1));
        }
        tx.commit().context("sqlite: COMMIT")?;
        Ok(last_versions)
    }
}

/// Hands the blob in column 0 of every row to `visit`; returns the row count.
fn visit_rows(mut rows: rusqlite::Rows<'_>, visit: &mut dyn FnMut(&[u8])) -> Result<u64> {
    let mut n = 0;
    while let Some(row) = rows.next()? {
        let data = row.get_ref(0)?.as_blob().context("sqlite: data column")?;
        visit(data);
        n += 1;
    }
    Ok(n)
}

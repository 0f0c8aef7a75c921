//! The process that the crash torture test (`tests/tests/crash.rs`) kills with
//! SIGKILL, again and again, on the same store directory.
//!
//! ```text
//! crash_child <store-dir> <ack-log> <cycle> <writers> <sync|buffered>
//! ```
//!
//! It opens the store, starts `writers` threads that append batches forever
//! (each writer on its own aggregates, with `ExpectedVersion::Exact`/`NoStream`),
//! and prints `ready` on stdout. After every acknowledged append a writer adds
//! one line to the ack log and fsyncs it (in `buffered` mode the ack lines are
//! fsynced at each sync checkpoint instead, see [`spec::SYNCED`]).
//!
//! The contents of every batch (aggregate, size, and every field of every
//! event) are a pure function of `(cycle, writer, batch number, index)`: see
//! [`spec::BatchKey`]. The test includes this file as a module to recompute
//! them, so child and checker share one definition. The child never logs an
//! ack before `append` has returned it, and writes only the store and the
//! ack log it is given.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use factlog::{Durability, ExpectedVersion, Store};

use spec::{Ack, BatchKey};

/// What the child and the checker must agree on: options, batch contents,
/// the ack log format.
#[allow(dead_code)]
pub mod spec {
    use bytes::Bytes;
    use factlog::{Durability, EventId, NewEvent, Options};
    use factlog_tests::random;
    use rand::rngs::StdRng;
    use rand::{Rng, RngCore};

    /// The largest batch a writer appends.
    pub const MAX_BATCH: u32 = 20;
    /// Aggregates per writer (`w<writer>-a<k>`).
    pub const AGGREGATES_PER_WRITER: u64 = 3;
    /// Writer number of the probe events the checker appends after each kill.
    pub const PROBE_WRITER: u32 = 0xFFFF;
    /// Aggregate of the probe events.
    pub const PROBE_AGGREGATE: &str = "probe";
    /// Bytes 6..8 of every event id the test writes.
    const ID_MAGIC: [u8; 2] = *b"CT";
    /// First word of an ack line.
    pub const ACK: &str = "ack";
    /// First word of a sync checkpoint line (`buffered` mode): `synced <n>`
    /// means the first `n` ack lines were acknowledged before a
    /// `Store::sync()` that then returned `Ok`.
    pub const SYNCED: &str = "synced";

    /// Store options of the crash tests: small segments so that kills also
    /// land during segment rolls and index checkpoint writes.
    pub fn options(durability: Durability) -> Options {
        Options::default().segment_bytes(64 * 1024).max_event_bytes(16 * 1024).durability(durability)
    }

    /// `options` with 4 MiB segments: rolls (each of which syncs) are rare,
    /// so durability rests on the explicit syncs (`buffered-large-segments`).
    pub fn large_segments(options: Options) -> Options {
        options.segment_bytes(4 << 20)
    }

    /// The `buffered` mode durability: the background flush is far away, so
    /// only the child's explicit `Store::sync()` calls make data durable.
    pub fn buffered() -> Durability {
        Durability::Buffered { flush_interval_ms: 60_000 }
    }

    /// Identifies one batch: the child process run (`cycle`), the writer
    /// thread, and the writer's batch number in that run.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct BatchKey {
        /// Child run number (unique per spawn, so ids never repeat).
        pub cycle: u32,
        /// Writer thread, or [`PROBE_WRITER`].
        pub writer: u32,
        /// The writer's batch number within the cycle.
        pub batch: u32,
    }

    impl BatchKey {
        /// The probe event the checker appends after cycle `cycle`.
        pub fn probe(cycle: u32) -> BatchKey {
            BatchKey { cycle, writer: PROBE_WRITER, batch: 0 }
        }

        /// Whether this is a probe.
        pub fn is_probe(&self) -> bool {
            self.writer == PROBE_WRITER
        }

        /// The writer's next batch.
        pub fn next(&self) -> BatchKey {
            BatchKey { batch: self.batch + 1, ..*self }
        }

        /// Whether the writer appends this batch and the next one together
        /// with one `Store::append_many` (every fourth batch, when the two go
        /// to different aggregates): then both are in the log or neither.
        pub fn pairs_with_next(&self) -> bool {
            !self.is_probe() && self.batch % 4 == 2 && self.aggregate() != self.next().aggregate()
        }

        /// The batch's random stream for `salt`: the test's only source of
        /// randomness, so child and checker derive the same batch.
        fn rng(&self, salt: u64) -> StdRng {
            random::rng(&[u64::from(self.cycle), u64::from(self.writer), u64::from(self.batch), salt])
        }

        /// Number of events in the batch, 1..=[`MAX_BATCH`].
        pub fn count(&self) -> u32 {
            if self.is_probe() {
                1
            } else {
                self.rng(1).gen_range(1..=MAX_BATCH)
            }
        }

        /// The aggregate the batch goes to.
        pub fn aggregate(&self) -> String {
            if self.is_probe() {
                PROBE_AGGREGATE.to_string()
            } else {
                writer_aggregate(self.writer, self.rng(2).gen_range(0..AGGREGATES_PER_WRITER))
            }
        }

        /// Event id of event `index`: cycle (4 bytes), writer (2), magic (2),
        /// batch (4), index (4), little-endian.
        pub fn event_id(&self, index: u32) -> EventId {
            let mut id = [0u8; 16];
            id[0..4].copy_from_slice(&self.cycle.to_le_bytes());
            id[4..6].copy_from_slice(&(self.writer as u16).to_le_bytes());
            id[6..8].copy_from_slice(&ID_MAGIC);
            id[8..12].copy_from_slice(&self.batch.to_le_bytes());
            id[12..16].copy_from_slice(&index.to_le_bytes());
            factlog::EventId(id)
        }

        /// Decodes an event id written by [`BatchKey::event_id`] into the batch and index.
        pub fn from_event_id(id: &EventId) -> Option<(BatchKey, u32)> {
            if id.0[6..8] != ID_MAGIC {
                return None;
            }
            let u32_at = |at: usize| u32::from_le_bytes([id.0[at], id.0[at + 1], id.0[at + 2], id.0[at + 3]]);
            let writer = u32::from(u16::from_le_bytes([id.0[4], id.0[5]]));
            let key = BatchKey { cycle: u32_at(0), writer, batch: u32_at(8) };
            let index = u32_at(12);
            (index < key.count()).then_some((key, index))
        }

        /// Event `index` of the batch, every field derived from the key.
        pub fn event(&self, index: u32) -> NewEvent {
            let mut rng = self.rng(100 + u64::from(index));
            let event_type = if self.is_probe() {
                "ProbeAppended".to_string()
            } else {
                format!("W{}Thing{}Happened", self.writer, index % 4)
            };
            // Mostly small payloads, some empty, about one in ten of 1..2.4 KB:
            // batches average ~4 KB, so a 64 KiB segment rolls every ~15 batches,
            // and the largest batch (20 x 2.4 KB) still fits in one segment.
            let len = match rng.gen_range(0..100) {
                0..=4 => 0,
                5..=89 => rng.gen_range(0..300),
                _ => rng.gen_range(1000..2400),
            };
            let mut data = vec![0u8; len];
            rng.fill_bytes(&mut data);
            NewEvent {
                event_id: self.event_id(index),
                event_type,
                event_version: rng.gen_range(1..=5),
                occurred_at: rng.gen_range(0..=i64::MAX),
                causation_id: rng.gen_bool(0.5).then(|| factlog::EventId(rng.gen())),
                correlation_id: rng.gen_bool(0.5).then(|| factlog::EventId(rng.gen())),
                metadata: Bytes::from(format!(
                    "c={} w={} b={} i={index} n={}",
                    self.cycle,
                    self.writer,
                    self.batch,
                    self.count()
                )),
                data: Bytes::from(data),
            }
        }

        /// Every event of the batch.
        pub fn events(&self) -> Vec<NewEvent> {
            (0..self.count()).map(|i| self.event(i)).collect()
        }
    }

    /// Aggregate `k` of writer `writer`.
    pub fn writer_aggregate(writer: u32, k: u64) -> String {
        format!("w{writer}-a{k}")
    }

    /// One acknowledged append, as logged by the child.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Ack {
        /// The batch.
        pub key: BatchKey,
        /// Aggregate it was appended to.
        pub aggregate: String,
        /// `AppendResult::first_position`.
        pub first_position: u64,
        /// `AppendResult::last_position`.
        pub last_position: u64,
        /// `AppendResult::first_version`.
        pub first_version: u64,
        /// Number of events.
        pub count: u32,
    }

    impl Ack {
        /// The ack log line, newline included.
        pub fn line(&self) -> String {
            format!(
                "{ACK} {} {} {} {} {} {} {} {}\n",
                self.key.cycle,
                self.key.writer,
                self.key.batch,
                self.aggregate,
                self.first_position,
                self.last_position,
                self.first_version,
                self.count
            )
        }

        /// Parses a line written by [`Ack::line`] (without its newline).
        pub fn parse(line: &str) -> Result<Ack, String> {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() != 9 || f[0] != ACK {
                return Err(format!("malformed ack line {line:?}"));
            }
            let num = |i: usize| f[i].parse::<u64>().map_err(|e| format!("field {i} of ack line {line:?}: {e}"));
            let small = |i: usize| {
                num(i).and_then(|v| u32::try_from(v).map_err(|e| format!("field {i} of ack line {line:?}: {e}")))
            };
            Ok(Ack {
                key: BatchKey { cycle: small(1)?, writer: small(2)?, batch: small(3)? },
                aggregate: f[4].to_string(),
                first_position: num(5)?,
                last_position: num(6)?,
                first_version: num(7)?,
                count: small(8)?,
            })
        }
    }

    /// An ack log as read back by the checker.
    #[derive(Debug, Default)]
    pub struct AckLog {
        /// Every complete ack line, in order.
        pub acks: Vec<Ack>,
        /// The largest `n` of the `synced <n>` lines (buffered mode).
        pub synced: Option<usize>,
        /// Whether the file ended in an unterminated (torn) line, which is ignored.
        pub torn_line: bool,
    }

    /// Parses an ack log. Only newline-terminated lines count: the child may
    /// have been killed in the middle of writing the last one.
    pub fn parse_ack_log(text: &str) -> Result<AckLog, String> {
        let mut log = AckLog::default();
        let complete = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => "",
        };
        log.torn_line = !text.is_empty() && !text.ends_with('\n');
        if complete.is_empty() {
            return Ok(log);
        }
        for (n, line) in complete.split('\n').enumerate() {
            if let Some(rest) = line.strip_prefix(SYNCED) {
                let synced: usize = rest.trim().parse().map_err(|e| format!("line {}: {line:?}: {e}", n + 1))?;
                if synced > log.acks.len() {
                    return Err(format!("line {}: {line:?} claims more acks than precede it", n + 1));
                }
                log.synced = Some(log.synced.unwrap_or(0).max(synced));
            } else {
                log.acks.push(Ack::parse(line).map_err(|e| format!("line {}: {e}", n + 1))?);
            }
        }
        Ok(log)
    }
}

/// The shared, append-only ack log.
struct AckFile {
    file: File,
    /// Ack lines written so far.
    lines: usize,
    /// Largest `last_position` acknowledged so far.
    max_last_position: Option<u64>,
    /// Fsync after every ack line (`sync` mode).
    fsync_each: bool,
}

impl AckFile {
    fn record(&mut self, ack: &Ack) -> Result<(), String> {
        self.file.write_all(ack.line().as_bytes()).map_err(|e| format!("write ack line: {e}"))?;
        if self.fsync_each {
            self.file.sync_data().map_err(|e| format!("fsync ack log: {e}"))?;
        }
        self.lines += 1;
        self.max_last_position = Some(self.max_last_position.map_or(ack.last_position, |m| m.max(ack.last_position)));
        Ok(())
    }
}

/// Give up if nobody killed us by then (the parent kills within a second).
const LIFETIME: Duration = Duration::from_secs(120);

fn writer_loop(store: Store, acks: Arc<Mutex<AckFile>>, cycle: u32, writer: u32) -> Result<(), String> {
    // The child restarts on an existing store: start from what is stored, which
    // may include batches a previous run wrote but never acknowledged.
    let mut versions: Vec<Option<u64>> =
        (0..spec::AGGREGATES_PER_WRITER).map(|k| store.aggregate_version(&spec::writer_aggregate(writer, k))).collect();
    let started = Instant::now();
    let mut batch = 0u32;
    while started.elapsed() < LIFETIME {
        let key = BatchKey { cycle, writer, batch };
        let keys = if key.pairs_with_next() { vec![key, key.next()] } else { vec![key] };
        let mut parts = Vec::with_capacity(keys.len());
        for key in &keys {
            let aggregate = key.aggregate();
            let k = (0..spec::AGGREGATES_PER_WRITER)
                .find(|k| spec::writer_aggregate(writer, *k) == aggregate)
                .ok_or_else(|| format!("{key:?}: aggregate {aggregate} is not one of writer {writer}'s"))?
                as usize;
            let expected = match versions[k] {
                Some(v) => ExpectedVersion::Exact(v),
                None => ExpectedVersion::NoStream,
            };
            parts.push((*key, aggregate, k, expected));
        }
        let results = if let [(key, aggregate, _, expected)] = &parts[..] {
            vec![store.append(aggregate, *expected, key.events()).map_err(|e| format!("append {key:?}: {e}"))?]
        } else {
            store
                .append_many(parts.iter().map(|(key, aggregate, _, expected)| (aggregate, *expected, key.events())))
                .map_err(|e| format!("append_many {keys:?}: {e}"))?
        };
        for ((key, aggregate, k, expected), r) in parts.into_iter().zip(results) {
            let count = key.count();
            let first_version = versions[k].map_or(0, |v| v + 1);
            let n = u64::from(count);
            if r.deduplicated
                || r.first_version != first_version
                || r.last_version != first_version + n - 1
                || r.last_position != r.first_position + n - 1
            {
                return Err(format!(
                    "append {key:?} of {count} events at expected version {expected}: odd result {r:?}"
                ));
            }
            versions[k] = Some(r.last_version);
            let ack = Ack {
                key,
                aggregate,
                first_position: r.first_position,
                last_position: r.last_position,
                first_version: r.first_version,
                count,
            };
            acks.lock().unwrap_or_else(|p| p.into_inner()).record(&ack)?;
            batch += 1;
        }
    }
    Err(format!("writer {writer} was not killed within {LIFETIME:?}"))
}

/// `buffered` mode: every few milliseconds, sync the store and log how many
/// acks that sync covers. Signals `first_sync` after the first one.
fn sync_loop(store: Store, acks: Arc<Mutex<AckFile>>, first_sync: std::sync::mpsc::Sender<()>) -> Result<(), String> {
    let started = Instant::now();
    while started.elapsed() < LIFETIME {
        std::thread::sleep(Duration::from_millis(10));
        let (lines, max_last) = {
            let a = acks.lock().unwrap_or_else(|p| p.into_inner());
            (a.lines, a.max_last_position)
        };
        if lines == 0 {
            continue;
        }
        store.sync().map_err(|e| format!("sync covering {lines} acks: {e}"))?;
        let durable = store.durable_position();
        if durable < max_last {
            return Err(format!(
                "after sync, durable_position {durable:?} is below acknowledged position {max_last:?}"
            ));
        }
        {
            let mut a = acks.lock().unwrap_or_else(|p| p.into_inner());
            a.file.write_all(format!("{} {lines}\n", spec::SYNCED).as_bytes()).map_err(|e| format!("write: {e}"))?;
            a.file.sync_data().map_err(|e| format!("fsync ack log: {e}"))?;
        }
        let _ = first_sync.send(());
    }
    Err(format!("syncer was not killed within {LIFETIME:?}"))
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        return Err(
            "usage: crash_child <store-dir> <ack-log> <cycle> <writers> <sync|buffered|buffered-large-segments>".into(),
        );
    }
    let dir = PathBuf::from(&args[1]);
    let ack_path = PathBuf::from(&args[2]);
    let cycle: u32 = args[3].parse().map_err(|e| format!("cycle {:?}: {e}", args[3]))?;
    let writers: u32 = args[4].parse().map_err(|e| format!("writers {:?}: {e}", args[4]))?;
    let (buffered, large) = match args[5].as_str() {
        "sync" => (false, false),
        "buffered" => (true, false),
        "buffered-large-segments" => (true, true),
        other => return Err(format!("mode {other:?} is not sync, buffered or buffered-large-segments")),
    };
    if writers == 0 || writers >= spec::PROBE_WRITER {
        return Err(format!("writers {writers} out of range"));
    }
    let durability = if buffered { spec::buffered() } else { Durability::Sync };
    let options = if large { spec::large_segments(spec::options(durability)) } else { spec::options(durability) };
    let store = Store::open(&dir, options).map_err(|e| format!("open {}: {e}", dir.display()))?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&ack_path)
        .map_err(|e| format!("open ack log {}: {e}", ack_path.display()))?;
    let acks = Arc::new(Mutex::new(AckFile { file, lines: 0, max_last_position: None, fsync_each: !buffered }));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    for writer in 0..writers {
        let (store, acks, done) = (store.clone(), Arc::clone(&acks), done_tx.clone());
        std::thread::Builder::new()
            .name(format!("crash-writer-{writer}"))
            .spawn(move || {
                let _ = done.send(writer_loop(store, acks, cycle, writer));
            })
            .map_err(|e| format!("spawn writer: {e}"))?;
    }
    if buffered {
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let (store, acks, done) = (store.clone(), Arc::clone(&acks), done_tx.clone());
        std::thread::Builder::new()
            .name("crash-syncer".into())
            .spawn(move || {
                let _ = done.send(sync_loop(store, acks, first_tx));
            })
            .map_err(|e| format!("spawn syncer: {e}"))?;
        // Be killed only once a sync checkpoint has completed.
        first_rx.recv_timeout(Duration::from_secs(60)).map_err(|e| format!("no first sync: {e}"))?;
    }
    drop(done_tx);
    println!("ready");
    std::io::stdout().flush().map_err(|e| format!("flush stdout: {e}"))?;
    // Every thread runs until the kill; the first one to stop is an error.
    match done_rx.recv() {
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Err("a thread stopped without error".into()),
        Err(_) => Err("every thread is gone".into()),
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("crash_child: {e}");
        std::process::exit(2);
    }
}

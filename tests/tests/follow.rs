//! Read-only stores beside a writer in another process (`follow_child`): the
//! view ends at the writer's published durable watermark and follows it;
//! subscriptions keep delivering; a writer killed with SIGKILL and restarted
//! again and again never makes a follower deliver anything but a prefix of
//! what recovery keeps; a bad `WATERMARK` file is a typed error or ignored,
//! never a panic. It kills only the children it spawned, through their handles.
//!
//! ```text
//! cargo test --release -p factlog-tests --test follow -- --nocapture
//! FACTLOG_FOLLOW_ROUNDS=100 cargo test --release -p factlog-tests --test follow -- --nocapture
//! ```

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use factlog::{Error, EventId, ExpectedVersion, Filter, Options, RecordedEvent, StartFrom, Store, WATERMARK_NAME};
use factlog_tests::{event, small_options};
use rand::{Rng, SeedableRng};

const CHILD: &str = env!("CARGO_BIN_EXE_follow_child");

/// A writer child and the lines it prints, read on a thread.
struct Writer {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// One past the last position it had when it printed `ready`.
    ready_end: u64,
}

impl Writer {
    fn spawn(dir: &Path, round: u64, mode: &str) -> Writer {
        let mut child = Command::new(CHILD)
            .args([dir.to_str().unwrap(), &round.to_string(), mode])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn follow_child");
        let lines = read_lines(child.stdout.take().unwrap());
        let ready = lines.recv_timeout(Duration::from_secs(30)).expect("the writer child says ready");
        let ready_end = ready.strip_prefix("ready ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{ready}"));
        Writer { child, lines, ready_end }
    }

    /// Asks a `stdin` child to append one event; returns its position.
    fn append_one(&mut self) -> u64 {
        self.append_batch(1)
    }

    /// Asks a `stdin` child to append a batch of `n` events; returns the first one's position.
    fn append_batch(&mut self, n: u64) -> u64 {
        writeln!(self.child.stdin.as_mut().unwrap(), "{n}").unwrap();
        let ack = self.lines.recv_timeout(Duration::from_secs(30)).expect("an ack");
        parse_ack(&ack).3
    }

    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the writer child");
        self.child.wait().expect("reap the writer child");
    }
}

fn read_lines(out: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `ack <round> <first n> <count> <first position>`.
fn parse_ack(line: &str) -> (u64, u64, u64, u64) {
    let w: Vec<u64> =
        line.strip_prefix("ack ").unwrap_or_else(|| panic!("{line}")).split(' ').map(|x| x.parse().unwrap()).collect();
    (w[0], w[1], w[2], w[3])
}

/// Every event of the store, recovered by a read-write open.
fn recovered_log(dir: &Path) -> Vec<RecordedEvent> {
    let store = Store::open(dir, small_options()).expect("reopen after the writer's last kill");
    let log = store.read_all_owned(0, usize::MAX).unwrap();
    store.close().unwrap();
    log
}

fn same(a: &RecordedEvent, b: &RecordedEvent) -> bool {
    (a.position, a.event_id, &a.aggregate_id, a.version, &a.data, &a.metadata)
        == (b.position, b.event_id, &b.aggregate_id, b.version, &b.data, &b.metadata)
}

#[test]
fn a_read_only_store_follows_a_writer_process_up_to_its_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::spawn(dir.path(), 1, "stdin");
    for _ in 0..10 {
        writer.append_one();
    }
    let store = Store::open_read_only(dir.path(), small_options()).expect("read-only beside a live writer");
    assert_eq!(store.last_position(), Some(9), "exactly the durable events");
    assert!(matches!(store.append("x", ExpectedVersion::Any, vec![event(0, 0)]), Err(Error::ReadOnly { .. })));
    let mut sub = store.subscribe(StartFrom::Start, Filter::all());
    for p in 0..10 {
        assert_eq!(sub.recv().unwrap().position, p);
    }
    // New appends arrive through the subscription, which waits on its own thread.
    let (tx, rx) = mpsc::channel();
    let subscriber = std::thread::spawn(move || {
        for _ in 10..200 {
            let e = sub.next_timeout(Duration::from_secs(10)).unwrap().expect("the append arrives");
            tx.send((e, Instant::now())).unwrap();
        }
        sub
    });
    let mut latencies = Vec::new();
    for p in 10..200 {
        assert_eq!(writer.append_one(), p);
        // From the writer's ack (as this process read it) to the delivery on the other thread.
        let acked = Instant::now();
        let (e, delivered) = rx.recv_timeout(Duration::from_secs(10)).expect("the append arrives");
        latencies.push(delivered.saturating_duration_since(acked));
        assert_eq!((e.position, e.event_id), (p, event(1, p).event_id));
        assert!(store.durable_position() >= Some(p));
    }
    let mut sub = subscriber.join().unwrap();
    latencies.sort();
    eprintln!(
        "cross-process delivery, writer's ack to subscription: median {:?}, p99 {:?}, max {:?} \
         (0: delivered before this process read the ack)",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
        latencies[latencies.len() - 1]
    );
    // Big batches: the writer rolls to new segments while followed.
    for batch in 0..20 {
        let first = writer.append_batch(50);
        assert_eq!(first, 200 + batch * 50);
    }
    assert_eq!(store.reader().end_position(), 1200);
    let caught_up: Vec<u64> =
        sub.next_batch(5000, Duration::from_secs(10)).unwrap().iter().map(|e| e.position).collect();
    assert_eq!(caught_up.first(), Some(&200));
    assert_eq!(store.refresh().unwrap(), Some(1199));
    assert!(store.stats().segments > 1, "the writer rolled segments while followed");
    let mut rest = caught_up.len() as u64;
    while rest < 1000 {
        rest += sub.next_batch(5000, Duration::from_secs(10)).unwrap().len() as u64;
    }
    assert_eq!(rest, 1000);
    // The view never goes past the watermark: nothing new, nothing delivered.
    assert!(sub.next_timeout(Duration::from_millis(50)).unwrap().is_none());
    writer.kill();
    // The writer is gone: the store keeps its view; a new writer continues it.
    assert_eq!(store.refresh().unwrap(), Some(1199));
    let mut writer = Writer::spawn(dir.path(), 2, "stdin");
    assert_eq!(writer.ready_end, 1200);
    assert_eq!(writer.append_one(), 1200);
    assert_eq!(sub.next_timeout(Duration::from_secs(10)).unwrap().map(|e| e.position), Some(1200));
    writer.kill();
}

/// The kill loop: a writer child appending in `Sync` mode is killed with
/// SIGKILL at random moments and restarted, while this process follows it
/// with a read-only store and a subscription.
#[test]
fn a_follower_of_a_writer_killed_and_restarted_delivers_a_prefix_of_what_survives() {
    let rounds = std::env::var("FACTLOG_FOLLOW_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(40u64);
    let seed = std::env::var("FACTLOG_FOLLOW_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("follow kill loop: {rounds} rounds, FACTLOG_FOLLOW_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::spawn(dir.path(), 0, "loop");
    let store = Store::open_read_only(dir.path(), small_options()).unwrap();
    let delivered = Arc::new(Mutex::new(Vec::<RecordedEvent>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let follower = {
        let (store, delivered, stop) = (store.clone(), Arc::clone(&delivered), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut sub = store.subscribe(StartFrom::Start, Filter::all());
            while !stop.load(Ordering::SeqCst) {
                let batch = sub.next_batch(1000, Duration::from_millis(20)).expect("the subscription keeps going");
                delivered.lock().unwrap().extend(batch);
            }
        })
    };
    let mut acked: Vec<EventId> = Vec::new();
    let collect_acks = |w: &Writer, acked: &mut Vec<EventId>| {
        while let Ok(line) = w.lines.try_recv() {
            let (round, first, count, _) = parse_ack(&line);
            acked.extend((first..first + count).map(|n| event(round, n).event_id));
        }
    };
    for round in 1..=rounds {
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..400)));
        collect_acks(&writer, &mut acked);
        writer.kill();
        collect_acks(&writer, &mut acked);
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..50)));
        // Nothing is published while no writer runs: this is all the follower will see of it.
        let seen = delivered.lock().unwrap().len() as u64;
        writer = Writer::spawn(dir.path(), round, "loop");
        assert!(
            writer.ready_end >= seen,
            "round {round}: recovery ({}) below what was delivered ({seen})",
            writer.ready_end
        );
    }
    // The last writer's acks reach the follower before it is killed too.
    std::thread::sleep(Duration::from_millis(200));
    collect_acks(&writer, &mut acked);
    let last_acked = acked.len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (delivered.lock().unwrap().len()) < last_acked && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    writer.kill();
    stop.store(true, Ordering::SeqCst);
    follower.join().expect("the follower thread");
    drop(store);

    let log = recovered_log(dir.path());
    let delivered = delivered.lock().unwrap();
    assert!(delivered.len() >= last_acked, "the follower kept up: {} of {last_acked} acked", delivered.len());
    assert!(delivered.len() <= log.len(), "delivered {} events, only {} survived", delivered.len(), log.len());
    for (i, (d, l)) in delivered.iter().zip(&log).enumerate() {
        assert_eq!(d.position, i as u64, "no gap, no duplicate");
        assert!(same(d, l), "delivered event {i} is not the recovered one");
    }
    let ids: HashSet<EventId> = log.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), log.len(), "no event stored twice");
    assert!(acked.iter().all(|id| ids.contains(id)), "every acknowledged event survived");
    eprintln!(
        "follow kill loop: {rounds} kills, {} events acked, {} delivered, {} recovered",
        acked.len(),
        delivered.len(),
        log.len()
    );
}

#[test]
fn a_bad_watermark_file_is_a_typed_error_or_ignored_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    for n in 0..5 {
        store.append("a", ExpectedVersion::Any, vec![event(0, n)]).unwrap();
    }
    let path = dir.path().join(WATERMARK_NAME);
    let good = std::fs::read(&path).unwrap();
    assert_eq!(good.len(), 64);
    // A version this build does not know, with a valid checksum.
    let mut v2 = good.clone();
    v2[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32fast::hash(&v2[..60]);
    v2[60..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &v2).unwrap();
    // Beside the live writer (this process's): the error names the file.
    match Store::open_read_only(dir.path(), small_options()) {
        Err(Error::UnsupportedFormat { path: p, found: 2, .. }) => assert_eq!(p, path),
        other => panic!("{other:?}"),
    }
    std::fs::write(&path, [0x5a; 64]).unwrap();
    assert!(matches!(Store::open_read_only(dir.path(), small_options()), Err(Error::Corrupt { .. })));
    // Missing while the writer is live, and it has nothing to publish: Locked (after lock_wait).
    std::fs::remove_file(&path).unwrap();
    let wait = small_options().lock_wait(Duration::from_millis(50));
    assert!(matches!(Store::open_read_only(dir.path(), wait), Err(Error::Locked { .. })));
    // The next writer's open publishes it again (this one writes to the removed file).
    store.close().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    store.append("a", ExpectedVersion::Any, vec![event(0, 5)]).unwrap();
    let reader = Store::open_read_only(dir.path(), small_options()).unwrap();
    assert_eq!(reader.last_position(), Some(5));
    // A follower whose watermark goes bad while the writer is live stops
    // following with that error; its readers keep the view.
    std::fs::write(&path, &v2).unwrap();
    assert!(matches!(reader.refresh(), Err(Error::UnsupportedFormat { .. })));
    assert!(matches!(reader.refresh(), Err(Error::Poisoned { .. })));
    assert_eq!(reader.reader().end_position(), 6);
    drop(reader);
    store.close().unwrap();
    // No live writer: the file serves nobody, so a bad or missing one is ignored.
    for bytes in [&v2[..], &[0x5a; 64][..], &[][..]] {
        std::fs::write(&path, bytes).unwrap();
        let r = Store::open_read_only(dir.path(), small_options()).unwrap();
        assert_eq!(r.last_position(), Some(5));
        assert_eq!(r.refresh().unwrap(), Some(5));
    }
    std::fs::remove_file(&path).unwrap();
    let r = Store::open_read_only(dir.path(), Options::default()).unwrap();
    assert_eq!(r.refresh().unwrap(), Some(5));
}

#[test]
fn a_follower_opened_without_a_writer_follows_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    store.append("a", ExpectedVersion::Any, vec![event(0, 0)]).unwrap();
    store.close().unwrap();
    let reader = Store::open_read_only(dir.path(), small_options()).unwrap();
    let mut sub = reader.subscribe(StartFrom::End, Filter::all());
    let mut writer = Writer::spawn(dir.path(), 3, "stdin");
    assert_eq!(writer.append_one(), 1);
    let e = sub.next_timeout(Duration::from_secs(10)).unwrap().expect("the new writer's event arrives");
    assert_eq!((e.position, e.event_id), (1, event(3, 0).event_id));
    writer.kill();
}

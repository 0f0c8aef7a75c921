//! Criterion micro-benchmarks of factlog's hot paths: record encode +
//! checksum, decode + checksum verify (+ rkyv validation), index lookup,
//! group commit with N concurrent appenders (buffered and sync), segment
//! roll, append→read round trip, and replay of a 100-event aggregate through
//! the zero-copy `Reader`. Each group is kept short (10 samples, a few
//! seconds). Run: `cargo bench -p factlog-benches --bench hot_paths`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: panicking is how it fails

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use factlog::{Direction, Durability, ExpectedVersion, NewEvent, Options, Store};
use factlog_benches::engines::factlog::to_new_event;
use factlog_benches::event::{aggregate_id, EventGen};
use std::hint::black_box;
use std::time::{Duration, Instant};

const PAYLOAD: usize = 200;

fn open(dir: &std::path::Path, durability: Durability) -> Store {
    let options = Options::default().durability(durability);
    Store::open(dir, options).expect("open factlog store in a temp dir")
}

fn bench_dir() -> tempfile::TempDir {
    let parent = std::env::current_dir().expect("current dir").join("target").join("bench-tmp");
    std::fs::create_dir_all(&parent).expect("create target/bench-tmp");
    tempfile::tempdir_in(parent).expect("create a temp dir in target/bench-tmp")
}

fn configure<'a>(c: &'a mut Criterion, name: &str) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g
}

/// Pre-generated events, reused round-robin (ids repeat only after `n`
/// appends, beyond the benchmark's reach when `n` is large enough; appends
/// use `ExpectedVersion::Any` so the events stay valid).
fn event_pool(n: usize, seed: u64) -> Vec<NewEvent> {
    let mut g = EventGen::new(PAYLOAD, seed);
    (0..n).map(|_| to_new_event(&g.event())).collect()
}

/// N threads appending one event per append; one iteration = one append.
fn group_commit(c: &mut Criterion) {
    for (mode, durability) in
        [("buffered", Durability::Buffered { flush_interval_ms: 100 }), ("sync", Durability::Sync)]
    {
        let mut g = configure(c, &format!("group_commit_{mode}"));
        g.throughput(Throughput::Elements(1));
        for writers in [1usize, 4, 16] {
            let dir = bench_dir();
            let store = open(dir.path(), durability);
            let mut generation = 0u64;
            g.bench_with_input(BenchmarkId::from_parameter(writers), &writers, |b, &writers| {
                b.iter_custom(|iters| {
                    generation += 1;
                    let per_thread = iters.div_ceil(writers as u64).max(1);
                    let pools: Vec<Vec<NewEvent>> =
                        (0..writers).map(|t| event_pool(per_thread as usize, generation * 1000 + t as u64)).collect();
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for (t, pool) in pools.into_iter().enumerate() {
                            let store = store.clone();
                            s.spawn(move || {
                                let agg = aggregate_id(t as u64);
                                for ev in pool {
                                    store
                                        .append(&agg, ExpectedVersion::Any, vec![ev])
                                        .expect("append in group-commit bench");
                                }
                            });
                        }
                    });
                    start.elapsed()
                });
            });
            store.close().expect("close store");
        }
        g.finish();
    }
}

/// Append one event (buffered) and read it back through a fresh reader.
fn round_trip(c: &mut Criterion) {
    let mut g = configure(c, "append_read_round_trip");
    let dir = bench_dir();
    let store = open(dir.path(), Durability::Buffered { flush_interval_ms: 100 });
    let mut gen = EventGen::new(PAYLOAD, 7);
    let agg = aggregate_id(1);
    let mut version: Option<u64> = None;
    g.bench_function("buffered", |b| {
        b.iter_batched(
            || to_new_event(&gen.event()),
            |ev| {
                let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                let res = store.append(&agg, expected, vec![ev]).expect("append");
                version = Some(res.last_version);
                let reader = store.reader();
                let got = reader
                    .read_aggregate(&agg, res.last_version, Direction::Forward)
                    .next()
                    .expect("the event just appended is visible")
                    .expect("read");
                black_box(got.data().first().copied());
            },
            criterion::BatchSize::SmallInput,
        );
    });
    g.finish();
    store.close().expect("close store");
}

/// Replay a 100-event aggregate (of 500 interleaved ones) through one Reader.
fn replay(c: &mut Criterion) {
    const AGGS: u64 = 500;
    const PER_AGG: u64 = 100;
    let mut g = configure(c, "replay_aggregate");
    g.throughput(Throughput::Elements(PER_AGG));
    let dir = bench_dir();
    let store = open(dir.path(), Durability::Buffered { flush_interval_ms: 100 });
    let mut gen = EventGen::new(PAYLOAD, 9);
    // Ten rounds of 10-event batches, so aggregates are interleaved in the log.
    for round in 0..PER_AGG / 10 {
        for a in 0..AGGS {
            let expected = if round == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(round * 10 - 1) };
            let batch = (0..10).map(|_| to_new_event(&gen.event())).collect();
            store.append(&aggregate_id(a), expected, batch).expect("load replay store");
        }
    }
    store.sync().expect("sync");
    let reader = store.reader();
    let ids: Vec<String> = (0..AGGS).map(aggregate_id).collect();
    let mut next = 0usize;
    g.bench_function("100_events", |b| {
        b.iter(|| {
            let agg = &ids[next % ids.len()];
            next = next.wrapping_add(7919);
            let mut sum = 0u64;
            let mut n = 0u64;
            for ev in reader.read_aggregate(agg, 0, Direction::Forward) {
                let ev = ev.expect("read");
                sum += u64::from(ev.data().first().copied().unwrap_or(0));
                n += 1;
            }
            assert_eq!(n, PER_AGG);
            black_box(sum)
        });
    });
    g.finish();
    drop(reader);
    store.close().expect("close store");
}

/// One 200-byte-payload event as the writer encodes it, and as a reader
/// decodes it.
fn record_codec(c: &mut Criterion) {
    use factlog::record::{checked_body, encode_frame, parse_header, validate_body, FrameFormat, RecordBody};
    let mut g = configure(c, "record");
    g.throughput(Throughput::Elements(1));
    let data = vec![b'x'; PAYLOAD];
    let body = RecordBody {
        position: 123_456,
        version: 42,
        event_id: [7; 16],
        occurred_at: 1_700_000_000_000_000_000,
        recorded_at: 1_700_000_000_000_000_001,
        event_version: 1,
        causation_id: None,
        correlation_id: Some([9; 16]),
        aggregate_id: "account-000042",
        event_type: "FundsDeposited",
        metadata: b"",
        data: &data,
    };
    let mut buf = rkyv::util::AlignedVec::<16>::with_capacity(4096);
    g.bench_function("encode_and_checksum", |b| {
        b.iter(|| {
            buf.clear();
            black_box(encode_frame(&mut buf, black_box(&body), 1, 0).expect("encode"))
        })
    });
    buf.clear();
    encode_frame(&mut buf, &body, 1, 0).expect("encode");
    let frame = buf.to_vec();
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(&frame);
    g.bench_function("decode_and_verify_checksum", |b| {
        b.iter(|| {
            let h = parse_header(black_box(&aligned), 1 << 22, FrameFormat::CURRENT).expect("header");
            black_box(checked_body(&aligned, &h).expect("checksum").len())
        })
    });
    g.bench_function("decode_verify_and_validate", |b| {
        b.iter(|| {
            let h = parse_header(black_box(&aligned), 1 << 22, FrameFormat::CURRENT).expect("header");
            let body = checked_body(&aligned, &h).expect("checksum");
            black_box(validate_body(body, &h).expect("rkyv validation").version)
        })
    });
    g.finish();
}

/// Per-aggregate index lookups in a store of 10,000 aggregates × 10 events.
fn index_lookup(c: &mut Criterion) {
    const AGGS: u64 = 10_000;
    let mut g = configure(c, "index_lookup");
    g.throughput(Throughput::Elements(1));
    let dir = bench_dir();
    let store = open(dir.path(), Durability::Buffered { flush_interval_ms: 100 });
    let mut gen = EventGen::new(PAYLOAD, 11);
    for a in 0..AGGS {
        let batch = (0..10).map(|_| to_new_event(&gen.event())).collect();
        store.append(&aggregate_id(a), ExpectedVersion::NoStream, batch).expect("load index store");
    }
    store.sync().expect("sync");
    let ids: Vec<String> = (0..AGGS).map(aggregate_id).collect();
    let mut next = 0usize;
    g.bench_function("aggregate_version", |b| {
        b.iter(|| {
            next = next.wrapping_add(7919);
            black_box(store.aggregate_version(&ids[next % ids.len()]))
        })
    });
    let reader = store.reader();
    g.bench_function("seek_version_5_and_view", |b| {
        b.iter(|| {
            next = next.wrapping_add(7919);
            let ev = reader.read_aggregate(&ids[next % ids.len()], 5, Direction::Forward).next();
            black_box(ev.expect("event 5").expect("read").position())
        })
    });
    g.finish();
    drop(reader);
    store.close().expect("close store");
}

/// An append that seals the active segment and starts the next (64 KiB
/// segments, 40 KiB events: every append rolls), against the same append
/// into default 64 MiB segments (a roll every ~1,600 appends). Buffered, so
/// the fsyncs of a roll (sealed segment, its checkpoint, the directory) are
/// the roll's own cost, not the append's.
fn segment_roll(c: &mut Criterion) {
    let mut g = configure(c, "segment_roll");
    g.throughput(Throughput::Elements(1));
    let big = bytes::Bytes::from(vec![b'r'; 40 * 1024]);
    for (name, segment_bytes) in [("append_40k_rolling", 64 * 1024), ("append_40k_64mib_segments", 64 << 20)] {
        let dir = bench_dir();
        let options = Options::default()
            .durability(Durability::Buffered { flush_interval_ms: 100 })
            .segment_bytes(segment_bytes)
            .max_event_bytes(48 * 1024);
        let store = Store::open(dir.path(), options).expect("open roll store");
        let mut n = 0u128;
        g.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                let ev = NewEvent::new(*uuid::Uuid::from_u128(n).as_bytes(), "BlobStored", big.clone());
                black_box(store.append("blobs", ExpectedVersion::Any, vec![ev]).expect("append"))
            })
        });
        store.close().expect("close store");
    }
    g.finish();
}

criterion_group!(hot_paths, record_codec, index_lookup, group_commit, segment_roll, round_trip, replay);
criterion_main!(hot_paths);

//! Live delivery to subscribers: W8 (how soon a subscriber has an event
//! after its append was acknowledged) and W2 with live subscriptions
//! attached (what subscribers cost the writers).
//!
//! **W8.** A fresh durable (`Sync`) store per engine and subscriber count.
//! One writer appends one event per append on a fixed schedule of
//! `--w8-rate` appends per second (2,000 by default): a quarter of
//! `--w8-secs` as warm-up, then `--w8-secs` measured. The writer timestamps
//! each acknowledgement the moment `append` returns, in a table indexed by
//! the event's position (one writer on a fresh store: the i-th append is
//! position i), and every subscriber timestamps every event as it receives
//! it. The latency is receipt − acknowledgement over every (subscriber,
//! measured event) pair; the row reports p50 and p99. factlog's subscribers
//! are [`Subscription`]s draining with the zero-copy `batch`, woken by the
//! durable watermark's condition variable. SQLite and fjall have no
//! subscriptions: their subscribers poll, as applications built on them do,
//! querying for rows past the last position they saw and sleeping
//! [`POLL_INTERVAL`] between queries.
//!
//! NOTE: a factlog subscriber can receive an event before the writer's own
//! thread has returned from `append`: the commit that makes the event
//! durable wakes both, and either may run first. Such a receipt counts as
//! 0 µs, and how many there were is reported (`receipts_before_ack` and its
//! share of all receipts). Because that clamping can hide a slow delivery
//! behind a slow acknowledgement, the row also times each receipt from the
//! moment `append` was called (submit → receipt, beside the append's own
//! submit → ack): never negative, and comparable across engines. Every
//! subscriber must receive every event, once and in order, or the workload
//! fails. An append that falls behind the schedule is made at once, but the
//! schedule keeps no debt: the writer never bursts to catch up.
//!
//! **W2 with subscribers (factlog).** One more W2 phase on the same durable
//! store, with the writer count closest to 16 of `--writers`, while
//! `--w2-subscribers` subscriptions from the end of the log drain it with
//! `batch`. Each must have received every event appended once the writers
//! stop; the row reports how long that took after the last append, and the
//! harness adds its ratio to the plain W2 row of that writer count.

use crate::engines::{self, BenchEngine, Durability, EngineKind, Session};
use crate::event::{aggregate_id, EventGen};
use crate::latency::Samples;
use crate::workloads::{self, logical_event_bytes, Params, Row, Workload, AGGS_PER_WRITER};
use anyhow::{anyhow, bail, Context, Result};
use factlog::{Filter, StartFrom, Subscription};
use indicatif::ProgressBar;
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a polling subscriber (SQLite, fjall) sleeps between queries.
pub const POLL_INTERVAL: Duration = Duration::from_millis(1);

/// Most events a subscription takes per `batch` call.
const BATCH_EVENTS_MAX: usize = 4_096;

/// Longest a subscription waits in one `batch` call before it looks at the
/// stop flag again.
const WAIT_MAX: Duration = Duration::from_millis(20);

/// The writer count of the W2 run with subscribers: the one of `--writers`
/// closest to this.
pub const W2_SUBSCRIBED_WRITERS: usize = 16;

/// W8's append schedule.
#[derive(Clone, Copy, Debug)]
struct Schedule {
    /// Appends before the measured ones.
    warmup: u64,
    /// All appends, warm-up included.
    total: u64,
    /// Time between two scheduled appends.
    period: Duration,
}

impl Schedule {
    fn new(params: &Params) -> Schedule {
        let rate = params.w8_rate.max(1);
        let measured = ((params.w8_duration.as_secs_f64() * rate as f64).round() as u64).max(1);
        let warmup = (measured / 4).max(1);
        Schedule { warmup, total: warmup + measured, period: Duration::from_secs_f64(1.0 / rate as f64) }
    }

    /// How long the whole schedule takes when no append is late.
    fn length(&self) -> Duration {
        Duration::from_nanos((self.period.as_nanos() as u64).saturating_mul(self.total))
    }
}

/// W8 on engine `kind`: a fresh durable store in `dir` (left for the caller
/// to remove), `subscribers` of them.
pub fn live_delivery(kind: EngineKind, dir: &Path, subscribers: usize, params: &Params) -> Result<Row> {
    let engine = engines::open(kind, dir, Durability::Sync)?;
    let row = measure_delivery(engine.as_ref(), subscribers, params);
    let closed = engine.close();
    let row = row?;
    closed?;
    Ok(row)
}

/// What the writer did: appends made, the measured ones' wall time, and
/// each append's own latency.
struct Written {
    appends: u64,
    measured_secs: f64,
    append_latency: Samples,
}

fn measure_delivery(engine: &dyn BenchEngine, subscribers: usize, params: &Params) -> Result<Row> {
    let label = format!("{} W8 subs={subscribers}", engine.kind());
    let plan = Schedule::new(params);
    let stamps = Stamps::new(plan.total);
    let stop = AtomicBool::new(false);
    let receivers = (0..subscribers).map(|_| Receiver::new(engine)).collect::<Result<Vec<_>>>()?;
    let pb = params.progress.timed(&label, plan.length());
    let epoch = Instant::now();

    let (written, receipts) = std::thread::scope(|scope| {
        let handles: Vec<_> = receivers
            .into_iter()
            .map(|receiver| {
                let stop = &stop;
                scope.spawn(move || {
                    let res = receiver.receive(plan.total, epoch, stop);
                    if res.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    res
                })
            })
            .collect();
        let written = paced_writes(engine, plan, epoch, &stamps, &stop, &pb, params);
        if written.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let receipts: Vec<Result<Vec<u64>>> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("subscriber thread panicked"))))
            .collect();
        (written, receipts)
    });
    pb.finish_and_clear();

    let written = written.context(label.clone())?;
    let receipts = receipts.into_iter().collect::<Result<Vec<_>>>().context(label.clone())?;
    if written.appends != plan.total {
        bail!("{label}: the writer stopped after {} of {} appends", written.appends, plan.total);
    }
    for (s, r) in receipts.iter().enumerate() {
        if r.len() as u64 != plan.total {
            bail!("{label}: subscriber {s} received {} of {} events", r.len(), plan.total);
        }
    }

    let measured = plan.total - plan.warmup;
    let pairs_max = (measured as usize).saturating_mul(subscribers);
    let mut latency = Samples::with_capacity(pairs_max);
    let mut from_submit = Samples::with_capacity(pairs_max);
    let mut before_ack = 0u64;
    for r in &receipts {
        let measured_stamps = stamps.submitted.iter().zip(&stamps.acked).zip(r).skip(plan.warmup as usize);
        for ((submitted, acked), &got) in measured_stamps {
            let (submitted, acked) = (submitted.load(Ordering::Relaxed), acked.load(Ordering::Relaxed));
            before_ack += u64::from(got < acked);
            latency.record(Duration::from_nanos(got.saturating_sub(acked)));
            from_submit.record(Duration::from_nanos(got.saturating_sub(submitted)));
        }
    }
    let pairs = latency.len() as u64;

    let mut row = Row::new(Workload::W8, engine.kind(), 1, 1, Durability::Sync);
    row.events = measured;
    row.secs = written.measured_secs;
    row.logical_bytes = measured * logical_event_bytes(params.payload_bytes);
    row.latency = Some(latency.summarize());
    row.set_u64("subscribers", subscribers as u64);
    row.set_u64("target_appends_per_sec", params.w8_rate);
    row.set_u64("receipts_before_ack", before_ack);
    row.set("receipts_before_ack_share", before_ack as f64 / pairs.max(1) as f64);
    let from_submit = from_submit.summarize();
    row.set("submit_to_receipt_p50_us", from_submit.p50_us);
    row.set("submit_to_receipt_p99_us", from_submit.p99_us);
    let append = written.append_latency.summarize();
    row.set("append_p50_us", append.p50_us);
    row.set("append_p99_us", append.p99_us);
    let delivery = if engine.as_factlog().is_some() { "subscription" } else { "poll every 1 ms" };
    row.extra.insert("delivery".into(), delivery.into());
    Ok(row)
}

/// When each W8 append was called and when it returned, in nanoseconds
/// since the run's epoch, indexed by position.
struct Stamps {
    submitted: Vec<AtomicU64>,
    acked: Vec<AtomicU64>,
}

impl Stamps {
    fn new(appends: u64) -> Stamps {
        let zeros = || (0..appends).map(|_| AtomicU64::new(0)).collect();
        Stamps { submitted: zeros(), acked: zeros() }
    }
}

/// The W8 writer: one event per append on `plan`'s schedule, each append's
/// call and return times stored at its position. Stops early, without an
/// error, once `stop` is set (a subscriber failed).
fn paced_writes(
    engine: &dyn BenchEngine,
    plan: Schedule,
    epoch: Instant,
    stamps: &Stamps,
    stop: &AtomicBool,
    pb: &ProgressBar,
    params: &Params,
) -> Result<Written> {
    let mut session = engine.session()?;
    let mut gen = EventGen::new(params.payload_bytes, 8);
    let aggs: Vec<String> = (0..AGGS_PER_WRITER).map(aggregate_id).collect();
    let mut versions: Vec<Option<u64>> = vec![None; aggs.len()];
    let mut append_latency = Samples::with_capacity(plan.total as usize);
    let start = Instant::now();
    let mut due = start;
    let mut measured_from = start;
    let mut appends = 0u64;
    for ((i, submitted), acked) in (0..plan.total).zip(&stamps.submitted).zip(&stamps.acked) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let k = (i % AGGS_PER_WRITER) as usize;
        let events = gen.events(1);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let t = Instant::now();
        if i == plan.warmup {
            measured_from = t;
        }
        submitted.store(nanos_between(epoch, t), Ordering::Relaxed);
        let version = session.append(&aggs[k], versions[k], &events)?;
        let ack = Instant::now();
        acked.store(nanos_between(epoch, ack), Ordering::Relaxed);
        versions[k] = Some(version);
        if i >= plan.warmup {
            append_latency.record(ack - t);
        }
        // A late append makes the next one due at once, not early: no bursts.
        due = (due + plan.period).max(ack);
        appends += 1;
        if i % 256 == 0 {
            pb.set_position(start.elapsed().as_millis() as u64);
        }
    }
    Ok(Written { appends, measured_secs: measured_from.elapsed().as_secs_f64(), append_latency })
}

/// Nanoseconds from `epoch` to `at`.
fn nanos_between(epoch: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(epoch).as_nanos().min(u128::from(u64::MAX)) as u64
}

/// One W8 subscriber: a factlog subscription, or a peer session that polls.
enum Receiver {
    Subscription(Subscription),
    Poller(Box<dyn Session>),
}

impl Receiver {
    /// A subscriber from the start of `engine`'s (empty) log.
    fn new(engine: &dyn BenchEngine) -> Result<Receiver> {
        Ok(match engine.as_factlog() {
            Some(f) => Receiver::Subscription(f.store().subscribe(StartFrom::Start, Filter::all())),
            None => Receiver::Poller(engine.session()?),
        })
    }

    /// Receives positions `0..total` in order; returns each one's receipt
    /// time in nanoseconds since `epoch`, indexed by position (fewer when
    /// `stop` cut it short).
    fn receive(self, total: u64, epoch: Instant, stop: &AtomicBool) -> Result<Vec<u64>> {
        let mut receipts = Vec::with_capacity(total as usize);
        match self {
            Receiver::Subscription(mut sub) => {
                while (receipts.len() as u64) < total && !stop.load(Ordering::Relaxed) {
                    let mut batch = sub.batch(BATCH_EVENTS_MAX, WAIT_MAX).context("factlog: subscription")?;
                    for event in batch.events() {
                        let event = event.context("factlog: subscription")?;
                        black_box(event.data().first());
                        record_receipt(&mut receipts, event.position(), epoch)?;
                    }
                }
            }
            Receiver::Poller(mut session) => {
                while (receipts.len() as u64) < total && !stop.load(Ordering::Relaxed) {
                    let mut out_of_order = None;
                    session.read_from(receipts.len() as u64, &mut |position, data| {
                        black_box(data.first());
                        if out_of_order.is_none() {
                            out_of_order = record_receipt(&mut receipts, position, epoch).err();
                        }
                    })?;
                    if let Some(e) = out_of_order {
                        return Err(e);
                    }
                    std::thread::sleep(POLL_INTERVAL);
                }
            }
        }
        Ok(receipts)
    }
}

/// Records that `position` arrived now; it must be the next one expected.
fn record_receipt(receipts: &mut Vec<u64>, position: u64, epoch: Instant) -> Result<()> {
    let at = nanos_between(epoch, Instant::now());
    if position != receipts.len() as u64 {
        bail!("received position {position}, expected {}", receipts.len());
    }
    receipts.push(at);
    Ok(())
}

/// The writer count of `--writers` closest to [`W2_SUBSCRIBED_WRITERS`]
/// (the larger on a tie).
pub fn subscribed_writer_count(writers: &[usize]) -> Option<usize> {
    writers.iter().copied().min_by_key(|&n| (n.abs_diff(W2_SUBSCRIBED_WRITERS), usize::MAX - n))
}

/// W2 with `subscribers` live subscriptions attached: `writers` writers on
/// factlog's durable `engine`, aggregates numbered from `agg_base`.
pub fn writers_with_subscribers(
    engine: &dyn BenchEngine,
    writers: usize,
    subscribers: usize,
    agg_base: u64,
    params: &Params,
) -> Result<Row> {
    let label = format!("{} W2 n={writers} with {subscribers} subscribers", engine.kind());
    let store = engine.as_factlog().ok_or_else(|| anyhow!("{label}: subscriptions are factlog's"))?.store();
    let subs: Vec<Subscription> = (0..subscribers).map(|_| store.subscribe(StartFrom::End, Filter::all())).collect();
    let first = subs.first().map_or(0, Subscription::position);
    let end = AtomicU64::new(u64::MAX);
    let stop = AtomicBool::new(false);

    let (row, delivered, catch_up) = std::thread::scope(|scope| {
        let handles: Vec<_> = subs
            .into_iter()
            .map(|sub| {
                let (end, stop) = (&end, &stop);
                scope.spawn(move || drain(sub, end, stop))
            })
            .collect();
        let row = workloads::run_writers(engine, Workload::W2, writers, 1, agg_base, params);
        let writers_done = Instant::now();
        match (&row, store.last_position()) {
            (Ok(_), Some(last)) => end.store(last + 1, Ordering::SeqCst),
            (Ok(_), None) => end.store(first, Ordering::SeqCst),
            (Err(_), _) => stop.store(true, Ordering::SeqCst),
        }
        let delivered: Vec<Result<u64>> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("subscriber thread panicked"))))
            .collect();
        (row, delivered, writers_done.elapsed())
    });

    let mut row = row?;
    let expected = end.load(Ordering::SeqCst).saturating_sub(first);
    for (s, n) in delivered.into_iter().enumerate() {
        let n = n.context(label.clone())?;
        if n != expected {
            bail!("{label}: subscriber {s} received {n} of {expected} events");
        }
    }
    row.set_u64("subscribers", subscribers as u64);
    row.set_u64("events_per_subscriber", expected);
    row.set("subscriber_catch_up_ms", catch_up.as_secs_f64() * 1e3);
    Ok(row)
}

/// Drains `sub` until it has passed `end` (set once the writers stop) or
/// `stop` is set; returns how many events it received.
fn drain(mut sub: Subscription, end: &AtomicU64, stop: &AtomicBool) -> Result<u64> {
    let mut received = 0u64;
    let mut checksum = 0u64;
    while sub.position() < end.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
        let mut batch = sub.batch(BATCH_EVENTS_MAX, WAIT_MAX).context("factlog: subscription")?;
        for event in batch.events() {
            let event = event.context("factlog: subscription")?;
            checksum = checksum.wrapping_add(u64::from(event.data().first().copied().unwrap_or(0)));
            received += 1;
        }
    }
    black_box(checksum);
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subscribed_w2_run_takes_the_writer_count_closest_to_16() {
        assert_eq!(subscribed_writer_count(&[4, 16, 64]), Some(16));
        assert_eq!(subscribed_writer_count(&[1, 4]), Some(4));
        assert_eq!(subscribed_writer_count(&[8, 24]), Some(24));
        assert_eq!(subscribed_writer_count(&[]), None);
    }
}

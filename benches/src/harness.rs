//! Runs the selected workloads engine by engine: a durable store for W1–W3
//! and W2m (and factlog's W2 with subscribers), a buffered bulk store for W4–W6 and
//! W9–W10, one for W7 and a fresh durable one per W8 variant, each in its own
//! directory under the run's temporary directory and deleted once the engine
//! is done with it (unless `--keep`). Each finished row is announced on the
//! progress line (stderr, when it is not a terminal). Ratios between rows of
//! the same run (W2m and W2 with subscribers ÷ W2, W9 and W10 ÷ W6) are
//! added here.

use crate::disk;
use crate::engines::{self, Durability, EngineKind};
use crate::report;
use crate::workloads::{self, Params, Row, Workload, AGGS_PER_WRITER};
use crate::{catchup, live};
use anyhow::Result;
use std::path::Path;

/// Runs every selected workload on `kind`, appending rows to `rows`.
/// Stops at the engine's first failure and returns it (rows measured before
/// it are kept).
pub fn run_engine(
    kind: EngineKind,
    base: &Path,
    params: &Params,
    selected: &[Workload],
    keep: bool,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let has = |w: Workload| selected.contains(&w);
    let push = |rows: &mut Vec<Row>, row: Row| {
        params.progress.line(&report::progress_line(&row));
        rows.push(row);
    };

    if has(Workload::W1) || has(Workload::W2) || has(Workload::W2m) || has(Workload::W3) {
        let dir = base.join(format!("{kind}-durable"));
        let engine = engines::open(kind, &dir, params.durability)?;
        let mut next_agg = 0u64;
        // `aggregates` > 1: each call is an `append_many` over that many (W2m).
        let mut phase = |workload: Workload, writers: usize, batch: usize, aggregates: usize| -> Result<Row> {
            let row =
                workloads::run_writers_many(engine.as_ref(), workload, writers, batch, aggregates, next_agg, params)?;
            next_agg += writers as u64 * AGGS_PER_WRITER;
            Ok(row)
        };
        if has(Workload::W1) {
            push(rows, phase(Workload::W1, 1, 1, 1)?);
        }
        if has(Workload::W2) {
            for &n in &params.writers {
                push(rows, phase(Workload::W2, n, 1, 1)?);
            }
        }
        if let (true, Some(&n)) = (has(Workload::W2m), params.writers.iter().max()) {
            let mut row = phase(Workload::W2m, n, 1, params.w2m_aggregates)?;
            let plain = rows.iter().find(|r| {
                r.workload == Workload::W2 && r.engine == kind && r.writers == n && !r.extra.contains_key("subscribers")
            });
            if let Some(plain) = plain.map(Row::events_per_sec).filter(|&v| v > 0.0) {
                row.set("ratio_to_w2", row.events_per_sec() / plain);
            }
            push(rows, row);
        }
        if has(Workload::W3) {
            push(rows, phase(Workload::W3, 1, params.batch, 1)?);
        }
        // On the same store as the plain W2 rows it is compared with.
        let subscribed = live::subscribed_writer_count(&params.writers);
        if let (true, Some(n), Some(_)) =
            (has(Workload::W2) && params.w2_subscribers > 0, subscribed, engine.as_factlog())
        {
            let mut row = live::writers_with_subscribers(engine.as_ref(), n, params.w2_subscribers, next_agg, params)?;
            let plain = rows.iter().find(|r| {
                r.workload == Workload::W2 && r.engine == kind && r.writers == n && !r.extra.contains_key("subscribers")
            });
            if let Some(plain) = plain.map(Row::events_per_sec).filter(|&v| v > 0.0) {
                row.set("ratio_to_w2", row.events_per_sec() / plain);
            }
            push(rows, row);
        }
        engine.close()?;
        if !keep {
            std::fs::remove_dir_all(&dir)?;
        }
    }

    let catch_up = (has(Workload::W9) || has(Workload::W10)) && kind == EngineKind::Factlog;
    if has(Workload::W4) || has(Workload::W5) || has(Workload::W6) || catch_up {
        let dir = base.join(format!("{kind}-bulk"));
        let engine = engines::open(kind, &dir, Durability::Buffered)?;
        let (mut load, counts) = workloads::bulk_load(engine.as_ref(), params)?;
        workloads::add_disk_usage(&mut load, disk::usage(&dir)?);
        let loaded = load.events;
        if has(Workload::W4) {
            push(rows, load);
        }
        if has(Workload::W5) {
            push(rows, workloads::replay(engine.as_ref(), &counts, params)?);
        }
        // W9's and W10's ratios are to the W6 scan of the same run: measured even when W6 is not shown.
        let scan =
            if has(Workload::W6) || catch_up { Some(workloads::scan(engine.as_ref(), loaded, params)?) } else { None };
        let scan_rate = scan.as_ref().map(Row::events_per_sec).filter(|&v| v > 0.0);
        if let (true, Some(scan)) = (has(Workload::W6), scan) {
            push(rows, scan);
        }
        if let (true, Some(factlog)) = (has(Workload::W6) && params.w6_upcasters > 0, engine.as_factlog()) {
            push(rows, crate::upcast::scan_with_upcasters(factlog.store(), loaded, params.w6_upcasters, params)?);
        }
        if let (true, Some(factlog)) = (has(Workload::W9), engine.as_factlog()) {
            let unfiltered = catchup::catch_up(factlog.store(), loaded, false, params)?;
            let mut filtered = catchup::catch_up(factlog.store(), loaded, true, params)?;
            if unfiltered.events_per_sec() > 0.0 {
                filtered.set("ratio_to_unfiltered", filtered.events_per_sec() / unfiltered.events_per_sec());
            }
            for mut row in [unfiltered, filtered] {
                if let Some(w6) = scan_rate {
                    row.set("ratio_to_w6", row.events_per_sec() / w6);
                    row.set("w6_events_per_sec", w6);
                }
                push(rows, row);
            }
        }
        if let (true, Some(factlog)) = (has(Workload::W10), engine.as_factlog()) {
            let mut row = catchup::durable_consumer(factlog.store(), loaded, params)?;
            if let Some(w6) = scan_rate {
                row.set("ratio_to_w6", row.events_per_sec() / w6);
                row.set("w6_events_per_sec", w6);
            }
            push(rows, row);
        }
        engine.close()?;
        if !keep {
            std::fs::remove_dir_all(&dir)?;
        }
    }

    if has(Workload::W7) {
        let dir = base.join(format!("{kind}-w7"));
        std::fs::create_dir_all(&dir)?;
        let mut w7 = Vec::new();
        crate::snapshots::run(kind, &dir, params, &mut w7)?;
        for row in w7 {
            push(rows, row);
        }
        if !keep {
            std::fs::remove_dir_all(&dir)?;
        }
    }

    if has(Workload::W8) {
        for &subscribers in &params.w8_subscribers {
            let dir = base.join(format!("{kind}-w8-{subscribers}"));
            push(rows, live::live_delivery(kind, &dir, subscribers, params)?);
            if !keep {
                std::fs::remove_dir_all(&dir)?;
            }
        }
    }
    Ok(())
}

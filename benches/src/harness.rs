//! Runs the selected workloads engine by engine: a durable store for W1–W3,
//! a buffered bulk store for W4–W6 and one for W7, each in its own directory
//! under the run's temporary directory and deleted once the engine is done
//! with it (unless `--keep`). Each finished row is announced on the progress
//! line (stderr, when it is not a terminal).

use crate::disk;
use crate::engines::{self, Durability, EngineKind};
use crate::report;
use crate::workloads::{self, Params, Row, Workload, AGGS_PER_WRITER};
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

    if has(Workload::W1) || has(Workload::W2) || has(Workload::W3) {
        let dir = base.join(format!("{kind}-durable"));
        let engine = engines::open(kind, &dir, params.durability)?;
        let mut next_agg = 0u64;
        let mut phase = |writers: usize, batch: usize, workload: Workload, rows: &mut Vec<Row>| -> Result<()> {
            let row = workloads::run_writers(engine.as_ref(), workload, writers, batch, next_agg, params)?;
            next_agg += writers as u64 * AGGS_PER_WRITER;
            push(rows, row);
            Ok(())
        };
        if has(Workload::W1) {
            phase(1, 1, Workload::W1, rows)?;
        }
        if has(Workload::W2) {
            for &n in &params.writers {
                phase(n, 1, Workload::W2, rows)?;
            }
        }
        if has(Workload::W3) {
            phase(1, params.batch, Workload::W3, rows)?;
        }
        engine.close()?;
        if !keep {
            std::fs::remove_dir_all(&dir)?;
        }
    }

    if has(Workload::W4) || has(Workload::W5) || has(Workload::W6) {
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
        if has(Workload::W6) {
            push(rows, workloads::scan(engine.as_ref(), loaded, params)?);
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
    Ok(())
}

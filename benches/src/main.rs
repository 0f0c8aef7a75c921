//! `factlog-bench`: parses the command line, creates the temporary run
//! directory, measures the physical limits, runs every selected engine
//! through the selected workloads and prints the table (or JSON).

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use anyhow::{Context, Result};
use clap::Parser;
use factlog_benches::cli::Args;
use factlog_benches::harness;
use factlog_benches::machine::MachineInfo;
use factlog_benches::physical;
use factlog_benches::report::{EngineFailure, Report};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(msg) = args.validate() {
        eprintln!("factlog-bench: {msg}");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("factlog-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--cpu-load`: threads that spin until dropped, so that every workload
/// runs with that many cores kept busy, as in an application that shares
/// its machine with its own work.
struct CpuLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuLoad {
    fn start(n: usize) -> CpuLoad {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..n)
            .filter_map(|i| {
                let stop = std::sync::Arc::clone(&stop);
                std::thread::Builder::new()
                    .name(format!("cpu-load-{i}"))
                    .spawn(move || {
                        let mut x = 0u64;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                        }
                    })
                    .ok()
            })
            .collect();
        CpuLoad { stop, threads }
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Runs everything; `Ok(false)` when some engine failed (its error is in the report).
fn run(args: &Args) -> Result<bool> {
    let started = Instant::now();
    let params = args.params();
    let engines = args.engines();
    let workloads = args.workloads();

    let parent = match &args.dir {
        Some(d) => d.clone(),
        None => {
            std::env::current_dir().context("cannot determine the current directory")?.join("target").join("bench-tmp")
        }
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("factlog-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot create a temporary directory in {}", parent.display()))?;
    let base: PathBuf = tmp.path().to_path_buf();
    if !args.quiet {
        eprintln!("factlog-bench: stores under {}", base.display());
    }

    let machine = MachineInfo::collect(&base);
    let physical = if args.skip_physical {
        None
    } else {
        let measured = physical::measure(
            &base.join("physical"),
            Duration::from_secs_f64(args.fsync_secs),
            args.seq_write_mib,
            &params.progress,
        )
        .context("measuring physical limits")?;
        params.progress.line(&measured.one_line());
        Some(measured)
    };

    if let Some(max_bytes) = args.retention_bytes {
        factlog_benches::engines::factlog::set_retention_bytes(max_bytes);
    }
    let load = CpuLoad::start(args.cpu_load);
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for &kind in &engines {
        if let Err(e) = harness::run_engine(kind, &base, &params, &workloads, args.keep, &mut rows) {
            eprintln!("factlog-bench: {kind} failed: {e:#}");
            errors.push(EngineFailure { engine: kind, error: format!("{e:#}") });
        }
    }
    drop(load);

    let report = Report {
        machine: &machine,
        physical,
        params: &params,
        engines: &engines,
        rows: &rows,
        errors: &errors,
        wall_secs: started.elapsed().as_secs_f64(),
    };
    if args.json {
        let doc = serde_json::to_string_pretty(&report).context("serializing the JSON report")?;
        println!("{doc}");
    } else {
        print!("{}", report.to_table());
    }

    if args.keep {
        let kept = tmp.keep();
        eprintln!("factlog-bench: kept stores in {}", kept.display());
    } else {
        tmp.close().with_context(|| format!("removing {}", base.display()))?;
    }
    Ok(errors.is_empty())
}

//! W11 in CI: the benchmark binary runs its factlog and in-memory parts at
//! small sizes and prints a row for every workload. PostgreSQL is either run
//! (`--features postgres`) or skipped with the reason printed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: panicking is how it fails

#[test]
fn w11_quick_run_prints_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_factlog-cqrs-bench"))
        .args(["--quick", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for workload in ["(a) 1 client", "(b) concurrent clients", "(c) load, replay"] {
        for backend in ["factlog", "in-memory"] {
            let row = stdout.lines().find(|l| l.starts_with(workload) && l.contains(backend));
            let row = row.unwrap_or_else(|| panic!("no {workload} row for {backend}:\n{stdout}"));
            let per_second: f64 =
                row.split_whitespace().nth(workload.split_whitespace().count() + 1).unwrap().parse().unwrap();
            assert!(per_second > 0.0, "{row}");
        }
    }
    assert!(stdout.lines().any(|l| l.starts_with("(c) load, snapshot") && l.contains("factlog")), "{stdout}");
    assert!(stdout.contains("postgres-es: skipped") || stdout.contains("postgres-es: done"), "{stdout}");
    // The stores are removed afterwards.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

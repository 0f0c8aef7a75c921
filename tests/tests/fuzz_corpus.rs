//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) and any saved
//! crash inputs (`fuzz/artifacts/<target>/`) through the same check functions
//! the cargo-fuzz targets call, so CI checks them without a fuzzer.
//!
//! Inputs that reproduced engine bugs found by fuzzing (all fixed) are in the
//! corpora as `regress-…` files (fuzz/README.md, "Findings").
//!
//! Regenerate the seed files: `cargo test --release -p factlog-tests --test
//! fuzz_corpus -- --ignored generate_seed_corpus`. Only that ignored test
//! writes into `fuzz/`; every other test here only reads it.

use std::path::{Path, PathBuf};

use factlog_tests::fuzz_checks::{
    finding_f1_input, finding_f3_input, finding_f6_input, seed_corpus, zeroed_suffix_input, TARGETS,
};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> = rd.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    v.sort();
    v
}

/// Runs every input of `subdirs` for `target`; returns (inputs run, failures).
fn replay(target: &str, subdirs: &[&str]) -> (usize, Vec<String>) {
    let check = TARGETS.iter().find(|t| t.0 == target).expect("known target").1;
    let mut run = 0;
    let mut failed = Vec::new();
    for sub in subdirs {
        for path in inputs(&fuzz_dir().join(sub).join(target)) {
            let data = std::fs::read(&path).unwrap();
            run += 1;
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failed.push(path.display().to_string());
            }
        }
    }
    (run, failed)
}

fn replay_corpus(target: &str) {
    let (run, failed) = replay(target, &["corpus", "artifacts"]);
    assert!(run >= 10, "only {run} corpus inputs for {target}: is fuzz/corpus/{target} there?");
    assert!(failed.is_empty(), "{} of {run} inputs fail the {target} check:\n{}", failed.len(), failed.join("\n"));
}

#[test]
fn record_decode_corpus() {
    replay_corpus("record_decode");
}

#[test]
fn snapshot_decode_corpus() {
    replay_corpus("snapshot_decode");
}

#[test]
fn segment_open_corpus() {
    replay_corpus("segment_open");
}

#[test]
fn ops_corpus() {
    replay_corpus("ops");
}

#[test]
#[ignore = "writes the seed corpora into fuzz/corpus/"]
fn generate_seed_corpus() {
    for (target, check) in TARGETS {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for old in inputs(&dir) {
            if old.file_name().unwrap().to_string_lossy().starts_with("seed-") {
                std::fs::remove_file(old).unwrap();
            }
        }
        for (name, data) in seed_corpus(target) {
            check(&data);
            std::fs::write(dir.join(name), data).unwrap();
        }
    }
    // Inputs of fixed findings (fuzz/README.md) that are built, not fuzzed.
    let corpus = fuzz_dir().join("corpus");
    for (target, name, data) in built_regressions() {
        std::fs::write(corpus.join(target).join(name), data).unwrap();
    }
}

/// The regression inputs built against the current reference store: target,
/// corpus file name, bytes.
fn built_regressions() -> [(&'static str, &'static str, Vec<u8>); 4] {
    [
        ("record_decode", "regress-F1-scan-position-overflow", finding_f1_input()),
        ("segment_open", "regress-F3-checkpoint-offset-to-unvalidated-frame", finding_f3_input()),
        ("segment_open", "regress-F6-read-only-open-drops-batch-of-short-active-segment", finding_f6_input()),
        ("segment_open", "regress-zeroed-suffix-at-batch-boundary", zeroed_suffix_input()),
    ]
}

/// The committed `regress-…` files of the `segment_open` findings address
/// the reference store by file and frame; built afresh, they reproduce their
/// scenario even after the store's construction changed.
#[test]
fn built_regression_inputs() {
    for (target, name, data) in built_regressions() {
        let check = TARGETS.iter().find(|t| t.0 == target).expect("known target").1;
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("the built input {name} fails the {target} check");
        }
    }
}

/// Runs one input through its check: `FACTLOG_FUZZ_INPUT=target:path cargo
/// test --release -p factlog-tests --test fuzz_corpus -- --ignored replay_one
/// --nocapture` (with `FACTLOG_FUZZ_VERBOSE=1` to see what it does).
#[test]
#[ignore = "debugging aid: replays the input named by FACTLOG_FUZZ_INPUT"]
fn replay_one() {
    let spec = std::env::var("FACTLOG_FUZZ_INPUT").expect("FACTLOG_FUZZ_INPUT=target:path");
    let (target, path) = spec.split_once(':').expect("target:path");
    let check = TARGETS.iter().find(|t| t.0 == target).expect("known target").1;
    // Relative paths are taken from the workspace root (cargo runs tests in tests/).
    let path = Path::new(path);
    let path = if path.exists() { path.to_path_buf() } else { fuzz_dir().join("..").join(path) };
    check(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
}

//! The C ABI from C: compiles `tests/abi_test.c` with `cc` against the
//! static library cargo built for this test run (`libfactlog_c.a`, beside
//! the test binary in `deps/`), runs it under valgrind (no leaks,
//! no invalid access), checks that `factlog.h` compiles as C++, and builds
//! and runs the README's C example. With `CI=true` a missing `cc`, `g++` or
//! valgrind fails the test (`bindings/c/ci.sh` installs them); elsewhere
//! the step that needs it is skipped with a printed reason.

// A test: a panic with a message is how it fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Libraries the static library needs besides libc (README, "Bindings").
const LINK_FLAGS: [&str; 3] = ["-lpthread", "-ldl", "-lm"];

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether `tool` runs; with `CI=true` it must.
fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(!in_ci(), "{tool} is missing (CI=true): run bindings/c/ci.sh to install it");
        eprintln!("c_abi: {tool} not found; skipping what needs it (bindings/c/ci.sh installs it)");
    }
    found
}

/// `libfactlog_c.a` of this build. `cargo test` writes it into `deps/`,
/// beside this test binary (only `cargo build` copies it up to the profile
/// directory, where it may be stale).
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let lib = exe.with_file_name("libfactlog_c.a");
    assert!(lib.is_file(), "{} is missing: cargo builds it with this crate (crate-type staticlib)", lib.display());
    lib
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// Compiles one C file against the header and the static library.
fn compile_c(source: &Path, exe: &Path) {
    let include = crate_dir().join("include");
    run(Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", "-I"])
        .arg(&include)
        .arg(source)
        .arg(static_lib())
        .args(LINK_FLAGS)
        .arg("-o")
        .arg(exe));
}

/// Runs `exe args` under valgrind when it is there (`CI=true`: it must be).
fn run_checked(exe: &Path, args: &[&Path]) -> String {
    let out = if have("valgrind") {
        let supp = crate_dir().join("tests/valgrind.supp");
        run(Command::new("valgrind")
            .args(["--error-exitcode=1", "--leak-check=full", "--errors-for-leak-kinds=definite,possible", "-q"])
            .arg(format!("--suppressions={}", supp.display()))
            .arg(exe)
            .args(args))
    } else {
        run(Command::new(exe).args(args))
    };
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_c_test_program_passes_under_valgrind() {
    if !have("cc") {
        return;
    }
    let work = tempfile::tempdir().expect("temp dir");
    let exe = work.path().join("abi_test");
    compile_c(&crate_dir().join("tests/abi_test.c"), &exe);
    let scratch = work.path().join("scratch");
    std::fs::create_dir(&scratch).expect("scratch dir");
    let stdout = run_checked(&exe, &[&scratch]);
    print!("{stdout}");
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(summary.ends_with(" passed, 0 failed") && !summary.starts_with("0 "), "{stdout}");
}

#[test]
fn the_header_compiles_as_cxx() {
    if !have("g++") {
        return;
    }
    let header = crate_dir().join("include/factlog.h");
    run(Command::new("g++")
        .args(["-fsyntax-only", "-x", "c++", "-std=c++11", "-Wall", "-Wextra", "-Werror"])
        .arg(header));
}

/// The C example of README's "Bindings" section, built and run as shown there.
#[test]
fn the_readme_example_builds_and_runs() {
    if !have("cc") {
        return;
    }
    let readme = std::fs::read_to_string(crate_dir().join("../../README.md")).expect("read README.md");
    let section = readme.split("\n### C\n").nth(1).expect("README has a `### C` section");
    let code = section.split("```c\n").nth(1).and_then(|s| s.split("\n```").next()).expect("a ```c block");
    let work = tempfile::tempdir().expect("temp dir");
    let source = work.path().join("example.c");
    std::fs::write(&source, code).expect("write example.c");
    let exe = work.path().join("example");
    compile_c(&source, &exe);
    let store = work.path().join("bank");
    let stdout = run_checked(&exe, &[&store]);
    assert!(stdout.contains("FundsDeposited"), "{stdout}");
}

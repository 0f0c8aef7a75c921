//! `include/factlog.h` is generated from this crate by cbindgen and
//! committed. This test generates it again (cbindgen as a library, with
//! `cbindgen.toml`) and fails when the committed file differs, so the header
//! never drifts from the code. `FACTLOG_BLESS=1` rewrites it instead:
//!
//! ```sh
//! FACTLOG_BLESS=1 cargo test -p factlog-c --test header
//! ```

// A test: a panic with a message is how it fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;

#[test]
fn the_committed_header_is_what_cbindgen_generates() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("read cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("the header is UTF-8");

    let path = crate_dir.join("include/factlog.h");
    if std::env::var_os("FACTLOG_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write include/factlog.h");
        eprintln!("header: wrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let line = committed.lines().zip(generated.lines()).position(|(a, b)| a != b);
        let line = line.unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        let show = |text: &str| text.lines().nth(line).unwrap_or("<end of file>").to_string();
        panic!(
            "bindings/c/include/factlog.h is out of date with the Rust source (first difference at line {}:\n  \
             committed: {}\n  generated: {}).\nRegenerate it with `FACTLOG_BLESS=1 cargo test -p factlog-c --test \
             header` and commit it.",
            line + 1,
            show(&committed),
            show(&generated),
        );
    }
}

//! W6's scan of an existing store, plain and through upcasters that never
//! match, alternating, best of 9 passes each: an A/B of the upcasting read
//! path on the same store files (keep one with `factlog-bench --keep`).
//!
//! `cargo run --release -p factlog-benches --example upcast_scan -- STORE_DIR [UPCASTERS] [PASSES] [plain|upcast|both]`
//!
//! With `PASSES` 1 it suits an instruction count (`valgrind --tool=callgrind`)
//! of one scan of each kind, where a shared machine's timings are too noisy.

use std::time::Instant;

use factlog_benches::upcast::non_matching;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: upcast_scan STORE_DIR [UPCASTERS]")?;
    let n: usize = std::env::args().nth(2).map_or(Ok(8), |s| s.parse())?;
    let passes: usize = std::env::args().nth(3).map_or(Ok(9), |s| s.parse())?;
    let mode = std::env::args().nth(4).unwrap_or_else(|| "both".into());
    let upcasters = non_matching(n)?;
    let store = factlog::Store::open_read_only(&dir, factlog::Options::default())?;
    let reader = store.reader();
    let (mut plain, mut upcast) = (f64::MAX, f64::MAX);
    for _ in 0..passes {
        let mut bytes = 0usize;
        if mode != "upcast" {
            let started = Instant::now();
            for event in reader.read_all(0) {
                bytes += event?.data().len();
            }
            plain = plain.min(started.elapsed().as_secs_f64());
        }
        if mode != "plain" {
            let started = Instant::now();
            for event in upcasters.events(reader.read_all(0)) {
                bytes += event?.data().len();
            }
            upcast = upcast.min(started.elapsed().as_secs_f64());
        }
        std::hint::black_box(bytes);
    }
    let events = reader.end_position() as f64;
    println!(
        "best of {passes}: plain {:.2} M events/s, {n} upcasters {:.2} M events/s, ratio {:.3}",
        events / plain / 1e6,
        events / upcast / 1e6,
        plain / upcast
    );
    Ok(())
}

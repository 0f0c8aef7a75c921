//! Full scan of an existing store in global order through the zero-copy
//! `Reader` (W6 without the load), best of 7 passes: a quick A/B of the read
//! path of two builds on the same store files (keep one with
//! `factlog-bench --keep`).
//!
//! `cargo run --release -p factlog-benches --example scan -- STORE_DIR`

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: scan STORE_DIR")?;
    let store = factlog::Store::open_read_only(&dir, factlog::Options::default())?;
    let reader = store.reader();
    let mut best = f64::MAX;
    for _ in 0..7 {
        let started = Instant::now();
        let mut bytes = 0usize;
        for event in reader.read_all(0) {
            bytes += event?.data().len();
        }
        best = best.min(started.elapsed().as_secs_f64());
        std::hint::black_box(bytes);
    }
    println!("best of 7: {:.2} M events/s", reader.end_position() as f64 / best / 1e6);
    Ok(())
}

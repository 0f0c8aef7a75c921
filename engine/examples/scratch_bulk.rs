use factlog::*;
use std::time::Instant;
fn main() {
    let base = std::env::current_dir().unwrap().join("target/scratch-bulk");
    let _ = std::fs::remove_dir_all(&base);
    let s = Store::open(
        &base,
        Options { durability: Durability::Buffered { flush_interval_ms: 100 }, ..Options::default() },
    )
    .unwrap();
    let payload = bytes::Bytes::from(vec![b'x'; 200]);
    let t = Instant::now();
    let n = 400_000u64;
    for b in 0..n / 100 {
        let evs = (0..100)
            .map(|i| {
                let k = b * 100 + i;
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&k.to_le_bytes());
                NewEvent::new(id, "OrderPlaced1", payload.clone())
            })
            .collect();
        s.append(&format!("agg-{}", b % 3000), ExpectedVersion::Any, evs).unwrap();
    }
    s.sync().unwrap();
    let el = t.elapsed().as_secs_f64();
    println!("W4 {:.0}/s", n as f64 / el);
}

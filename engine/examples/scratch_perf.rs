use factlog::*;
use std::time::Instant;
fn ev(i: u64) -> NewEvent {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&i.to_le_bytes());
    id[8] = 1;
    NewEvent::new(id, "OrderPlaced1", vec![b'x'; 200])
}
fn main() {
    let base = std::env::current_dir().unwrap().join("target/scratch");
    let _ = std::fs::remove_dir_all(&base);
    // W1
    let s = Store::open(base.join("w1"), Options::default()).unwrap();
    let t = Instant::now();
    for i in 0..2000u64 {
        s.append("a", ExpectedVersion::Any, vec![ev(i)]).unwrap();
    }
    println!("W1 {:.0}/s", 2000.0 / t.elapsed().as_secs_f64());
    for writers in [16u64, 64] {
        let t = Instant::now();
        let per = 200u64;
        let hs: Vec<_> = (0..writers)
            .map(|w| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..per {
                        s.append(
                            &format!("w{writers}-{w}"),
                            ExpectedVersion::Any,
                            vec![ev(1_000_000 * (w + 1) + writers * 100_000 + i)],
                        )
                        .unwrap();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let st = s.stats();
        println!(
            "W2 x{writers} {:.0}/s groups {} fsyncs {}",
            (writers * per) as f64 / t.elapsed().as_secs_f64(),
            st.group_commits,
            st.fsyncs
        );
    }
    let t = Instant::now();
    for b in 0..100u64 {
        s.append("batch", ExpectedVersion::Any, (0..100).map(|i| ev(50_000_000 + b * 100 + i)).collect()).unwrap();
    }
    println!("W3 {:.0}/s", 10000.0 / t.elapsed().as_secs_f64());
    s.close().unwrap();
    let s = Store::open(
        base.join("w4"),
        Options { durability: Durability::Buffered { flush_interval_ms: 100 }, ..Options::default() },
    )
    .unwrap();
    let t = Instant::now();
    let n = 300_000u64;
    for b in 0..n / 100 {
        s.append(&format!("agg-{}", b % 3000), ExpectedVersion::Any, (0..100).map(|i| ev(b * 100 + i)).collect())
            .unwrap();
    }
    s.sync().unwrap();
    let el = t.elapsed().as_secs_f64();
    let st = s.stats();
    println!("W4 {:.0}/s {:.0} MB/s bytes/event {}", n as f64 / el, st.log_bytes as f64 / el / 1e6, st.log_bytes / n);
    let r = s.reader();
    let t = Instant::now();
    let mut sum = 0u64;
    let mut cnt = 0u64;
    for e in r.read_all(0) {
        let e = e.unwrap();
        sum += e.data()[0] as u64;
        cnt += 1;
    }
    let el = t.elapsed().as_secs_f64();
    println!("W6 {:.0} ev/s {:.2} GB/s {sum}", cnt as f64 / el, st.log_bytes as f64 / el / 1e9);
    let t = Instant::now();
    let mut c = 0;
    for i in 0..3000u64 {
        for e in r.read_aggregate(&format!("agg-{}", (i * 7919) % 3000), 0, Direction::Forward) {
            c += e.unwrap().data().len();
        }
    }
    println!("W5 {:.1} us per 100-event aggregate {c}", t.elapsed().as_secs_f64() * 1e6 / 3000.0);
    println!("index bytes/event {:.1}", st.index_bytes as f64 / n as f64);
}

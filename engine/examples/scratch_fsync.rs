use std::os::unix::fs::FileExt;
use std::time::Instant;
fn main() {
    let p = std::env::current_dir().unwrap().join("target/scratch-fsync");
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&p).unwrap();
    let z = vec![0u8; 1 << 20];
    for i in 0..64 {
        f.write_all_at(&z, i << 20).unwrap();
    }
    f.sync_all().unwrap();
    let buf = vec![7u8; 384];
    for mode in ["overwrite4k", "append384"] {
        let t = Instant::now();
        let n = 2000u64;
        for i in 0..n {
            if mode == "overwrite4k" {
                f.write_all_at(&vec![1u8; 4096], 0).unwrap();
            } else {
                f.write_all_at(&buf, 4096 + i * 384).unwrap();
            }
            f.sync_data().unwrap();
        }
        println!("{mode} {:.0}/s", n as f64 / t.elapsed().as_secs_f64());
    }
}

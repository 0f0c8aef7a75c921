//! The power-cut file system's own semantics, on a real FUSE mount: what a
//! cut keeps and loses, armed cuts, EIO while off, and the calls the engine
//! needs (mmap after pwrite, record locks, flock, set_len).
//!
//! Each test mounts at its own fixed path under the target's temp dir (so a
//! mount left by a killed run is detached at the next start) and runs its
//! body under a timeout, so a stuck mount fails the test instead of hanging it.

// A test: a panic is how it fails, in its helpers too (clippy.toml only
// exempts the `#[test]` functions themselves).
#![allow(clippy::unwrap_used)]

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use factlog_powercut::{mount_or_skip, within, CutMode, PowerCutMount, SECTOR_BYTES};

const LIMIT: Duration = Duration::from_secs(15);

/// Mounts at this test's path and runs `body` under [`LIMIT`]; prints a skip
/// reason instead when this machine cannot mount (a failure under `CI=true`).
fn on_mount(name: &str, body: impl FnOnce(&PowerCutMount) + Send + 'static) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("powercut-{name}"));
    fs::create_dir_all(&dir).unwrap();
    let Some(mount) = mount_or_skip(&dir) else { return };
    within(LIMIT, name, move || {
        body(&mount);
        drop(mount);
    })
    .unwrap();
}

fn sync_dir(dir: &Path) {
    File::open(dir).unwrap().sync_all().unwrap();
}

fn is_eio(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EIO)
}

/// Creates `name` with `data`, synced, and its directory entry synced.
fn durable_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    let f = File::create(&path).unwrap();
    f.write_all_at(data, 0).unwrap();
    f.sync_data().unwrap();
    sync_dir(dir);
    path
}

#[test]
fn unsynced_write_is_lost_and_synced_write_kept() {
    on_mount("write", |m| {
        let path = durable_file(m.path(), "a", b"synced");
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"+unsynced", 6).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"synced+unsynced", "visible before the cut");
        m.cut(CutMode::Now);
        drop(f);
        m.power_on();
        assert_eq!(fs::read(&path).unwrap(), b"synced");
        assert_eq!(m.stats().dropped_writes, 1);
    });
}

#[test]
fn every_call_fails_with_eio_between_cut_and_power_on() {
    on_mount("eio", |m| {
        let path = durable_file(m.path(), "a", b"x");
        let f = File::open(&path).unwrap();
        m.cut(CutMode::Now);
        assert!(is_eio(&fs::metadata(&path).unwrap_err()));
        assert!(is_eio(&File::open(&path).unwrap_err()));
        assert!(is_eio(&File::create(m.path().join("b")).unwrap_err()));
        assert!(is_eio(&fs::read_dir(m.path()).and_then(|mut d| d.next().transpose()).unwrap_err()));
        let mut buf = [0u8; 1];
        assert!(f.read_at(&mut buf, 0).is_err(), "a handle from before the cut is dead");
        assert!(is_eio(&f.sync_all().unwrap_err()), "no sync is reported done after the power is gone");
        m.power_on();
        assert_eq!(fs::read(&path).unwrap(), b"x");
    });
}

#[test]
fn unsynced_create_is_undone_even_if_the_file_was_synced() {
    on_mount("create", |m| {
        let path = m.path().join("new");
        let f = File::create(&path).unwrap();
        f.write_all_at(b"data", 0).unwrap();
        f.sync_all().unwrap();
        m.cut(CutMode::Now);
        m.power_on();
        assert_eq!(fs::metadata(&path).unwrap_err().kind(), ErrorKind::NotFound);
    });
}

#[test]
fn rename_is_undone_without_a_directory_fsync_and_kept_with_one() {
    on_mount("rename", |m| {
        let dir = m.path();
        let tmp = durable_file(dir, "tmp", b"new");
        let target = durable_file(dir, "target", b"old");
        fs::rename(&tmp, &target).unwrap();
        m.cut(CutMode::Now);
        m.power_on();
        assert_eq!(fs::read(&tmp).unwrap(), b"new", "source back");
        assert_eq!(fs::read(&target).unwrap(), b"old", "target as it was");

        fs::rename(&tmp, &target).unwrap();
        sync_dir(dir);
        m.cut(CutMode::Now);
        m.power_on();
        assert_eq!(fs::metadata(&tmp).unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(fs::read(&target).unwrap(), b"new");
    });
}

#[test]
fn renames_and_unlinks_in_a_subdirectory_need_that_directory_synced() {
    on_mount("subdir", |m| {
        let sub = m.path().join("sub");
        fs::create_dir(&sub).unwrap();
        sync_dir(m.path());
        let a = durable_file(&sub, "a", b"1");
        sync_dir(m.path()); // the parent, not `sub`: does not cover the unlink
        fs::remove_file(&a).unwrap();
        sync_dir(m.path());
        m.cut(CutMode::Now);
        m.power_on();
        assert_eq!(fs::read(&a).unwrap(), b"1", "unlink undone");
        fs::remove_file(&a).unwrap();
        sync_dir(&sub);
        m.cut(CutMode::Now);
        m.power_on();
        assert!(!a.exists());
    });
}

#[test]
fn o_dsync_writes_are_durable_at_once() {
    on_mount("dsync", |m| {
        let path = durable_file(m.path(), "a", b"");
        let f = OpenOptions::new().write(true).custom_flags(libc::O_DSYNC).open(&path).unwrap();
        f.write_all_at(b"durable", 0).unwrap();
        m.cut(CutMode::Now);
        m.power_on();
        assert_eq!(fs::read(&path).unwrap(), b"durable");
    });
}

#[test]
fn set_len_is_durable_only_after_fsync() {
    on_mount("setlen", |m| {
        let path = durable_file(m.path(), "a", &[7u8; 10_000]);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(100).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 100);
        m.cut(CutMode::Now);
        m.power_on();
        assert_eq!(fs::metadata(&path).unwrap().len(), 10_000);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(65_536).unwrap();
        f.sync_data().unwrap();
        m.cut(CutMode::Now);
        m.power_on();
        let data = fs::read(&path).unwrap();
        assert_eq!(data.len(), 65_536);
        assert!(data[..10_000].iter().all(|b| *b == 7) && data[10_000..].iter().all(|b| *b == 0));
    });
}

const WRITES: usize = 12;
/// Not a multiple of the sector size, so writes share sectors and tears
/// must follow the file's sector boundaries, not the writes'.
const WRITE_BYTES: usize = 1000;

/// Writes [`WRITES`] unsynced writes over a synced zero file, cuts with
/// `mode`, and returns, for each sector piece of each write in the order they
/// were written, whether it survived. Asserts each piece is whole or absent.
fn kept_pieces(m: &PowerCutMount, mode: CutMode) -> Vec<bool> {
    let path = durable_file(m.path(), "torn", &vec![0u8; WRITES * WRITE_BYTES]);
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    for i in 0..WRITES {
        f.write_all_at(&[i as u8 + 1; WRITE_BYTES], (i * WRITE_BYTES) as u64).unwrap();
    }
    m.cut(mode);
    drop(f);
    m.power_on();
    let data = fs::read(&path).unwrap();
    assert_eq!(data.len(), WRITES * WRITE_BYTES, "the size was synced");
    let sector = SECTOR_BYTES as usize;
    let mut kept = Vec::new();
    for i in 0..WRITES {
        let (start, end) = (i * WRITE_BYTES, (i + 1) * WRITE_BYTES);
        let mut at = start;
        while at < end {
            let piece_end = ((at / sector + 1) * sector).min(end);
            let piece = &data[at..piece_end];
            let whole = piece.iter().all(|b| *b == i as u8 + 1);
            assert!(whole || piece.iter().all(|b| *b == 0), "{mode:?}: write {i} torn inside a sector at {at}");
            kept.push(whole);
            at = piece_end;
        }
    }
    kept
}

#[test]
fn prefix_cut_keeps_an_ordered_prefix_torn_at_sector_boundaries() {
    on_mount("prefix", |m| {
        let mut lengths = std::collections::BTreeSet::new();
        for seed in 0..24 {
            let kept = kept_pieces(m, CutMode::Prefix(seed));
            let prefix = kept.iter().take_while(|k| **k).count();
            assert!(kept[prefix..].iter().all(|k| !k), "seed {seed}: not a prefix: {kept:?}");
            lengths.insert(prefix);
        }
        assert!(lengths.len() > 5, "prefix lengths vary with the seed: {lengths:?}");
        assert!(m.stats().torn_writes > 0, "some cut tore a write");
    });
}

#[test]
fn subset_cut_keeps_random_sectors_of_random_writes() {
    on_mount("subset", |m| {
        let mut kept_any_after_a_gap = false;
        for seed in 0..8 {
            let kept = kept_pieces(m, CutMode::Subset(seed));
            let first_gap = kept.iter().position(|k| !k).unwrap_or(kept.len());
            kept_any_after_a_gap |= kept[first_gap..].iter().any(|k| *k);
        }
        assert!(kept_any_after_a_gap, "a subset is not just a prefix");
    });
}

#[test]
fn armed_cut_fails_the_nth_call_with_eio_and_cuts() {
    on_mount("armed", |m| {
        let path = durable_file(m.path(), "a", b"");
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        m.arm(3, CutMode::Now);
        f.write_all_at(b"one", 0).unwrap();
        f.write_all_at(b"two", 3).unwrap();
        assert!(is_eio(&f.sync_data().unwrap_err()), "the third mutating call fails");
        assert!(!m.powered());
        assert_eq!(m.stats().armed_fired, 1);
        m.power_on();
        assert_eq!(fs::read(&path).unwrap(), b"", "the sync never happened");
    });
}

#[test]
fn shared_mmap_sees_pwrite() {
    on_mount("mmap", |m| {
        let path = m.path().join("seg");
        let f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        f.set_len(16_384).unwrap();
        let reader = File::open(&path).unwrap();
        #[expect(unsafe_code, reason = "a read-only shared map, as the engine's segment readers use")]
        // SAFETY: the file is not truncated while mapped, and the map is
        // dropped before the mount.
        let map = unsafe { memmap2::Mmap::map(&reader) }.unwrap();
        assert!(map[..].iter().all(|b| *b == 0));
        f.write_all_at(b"frame", 8_190).unwrap();
        assert_eq!(&map[8_190..8_195], b"frame", "the map sees the pwrite");
        f.sync_data().unwrap();
        assert_eq!(&map[8_190..8_195], b"frame");
    });
}

#[test]
fn fcntl_record_locks_and_flock_work_on_the_mount() {
    use nix::fcntl::{fcntl, FcntlArg, Flock, FlockArg};
    on_mount("locks", |m| {
        let path = durable_file(m.path(), "LOCK", b"");
        let lock = |kind: i32, at: i64| libc::flock {
            l_type: kind as i16,
            l_whence: libc::SEEK_SET as i16,
            l_start: at,
            l_len: 1,
            l_pid: 0,
        };
        let holder = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        fcntl(&holder, FcntlArg::F_SETLK(&lock(libc::F_WRLCK, 0))).unwrap();
        // An open file description lock conflicts with a process's record
        // lock even in the same process, so this sees the lock from here.
        let prober = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let mut probe = lock(libc::F_WRLCK, 0);
        fcntl(&prober, FcntlArg::F_OFD_GETLK(&mut probe)).unwrap();
        assert_eq!(probe.l_type, libc::F_WRLCK as i16, "byte 0 is locked");
        assert_eq!(probe.l_pid, std::process::id() as i32);
        let mut free = lock(libc::F_WRLCK, 1);
        fcntl(&prober, FcntlArg::F_OFD_GETLK(&mut free)).unwrap();
        assert_eq!(free.l_type, libc::F_UNLCK as i16, "byte 1 is free");
        assert!(fcntl(&prober, FcntlArg::F_OFD_SETLK(&lock(libc::F_RDLCK, 0))).is_err());
        fcntl(&holder, FcntlArg::F_SETLK(&lock(libc::F_UNLCK, 0))).unwrap();
        fcntl(&prober, FcntlArg::F_OFD_SETLK(&lock(libc::F_RDLCK, 0))).unwrap();

        let first = Flock::lock(File::open(&path).unwrap(), FlockArg::LockExclusiveNonblock).unwrap();
        let second = Flock::lock(File::open(&path).unwrap(), FlockArg::LockExclusiveNonblock);
        assert!(second.is_err(), "flock excludes a second open file description");
        drop(first);
        assert!(Flock::lock(File::open(&path).unwrap(), FlockArg::LockExclusiveNonblock).is_ok());
    });
}

#[test]
fn control_file_cuts_and_powers_on_from_any_process() {
    on_mount("control", |m| {
        let path = durable_file(m.path(), "a", b"synced");
        OpenOptions::new().write(true).open(&path).unwrap().write_all_at(b"!", 0).unwrap();
        let control = m.control_path();
        fs::write(&control, "cut prefix 3\n").unwrap();
        let mut status = String::new();
        File::open(&control).unwrap().read_to_string(&mut status).unwrap();
        assert!(status.contains("power off"), "{status}");
        assert!(is_eio(&fs::metadata(&path).unwrap_err()));
        fs::write(&control, "on").unwrap();
        assert!(m.powered());
        assert!(fs::write(&control, "cut tomorrow").is_err(), "an unknown command is refused");
        let names: Vec<_> = fs::read_dir(m.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["a"], "the control file is hidden");
    });
}

#[test]
fn cut_and_kill_fires_an_armed_cut_in_a_child_and_powers_on() {
    use factlog_powercut::{Outcome, Plan};
    on_mount("plan", |m| {
        let path = m.path().join("appended");
        let script = format!("while :; do echo x >> '{}'; done", path.display());
        let mut child =
            std::process::Command::new("sh").args(["-c", &script]).stderr(std::process::Stdio::null()).spawn().unwrap();
        let outcome = m.cut_and_kill(Plan::Arm(5, CutMode::Now), &mut child).unwrap();
        assert_eq!(outcome, Outcome::ArmedFired);
        assert!(child.try_wait().unwrap().is_some(), "the child is reaped");
        assert!(m.powered(), "power is back on");
        assert_eq!(m.stats().armed_fired, 1);
        assert!(!path.exists(), "nothing was synced, so the file's creation is undone");

        let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        assert_eq!(m.cut_and_kill(Plan::Cut(CutMode::Bytes(1)), &mut child).unwrap(), Outcome::Cut);
        assert!(child.try_wait().unwrap().is_some());
    });
}

#[test]
fn bytes_cut_tears_at_most_one_write_per_file_at_any_byte() {
    const SLOT: usize = 36;
    on_mount("bytes", |m| {
        let mut torn_inside_a_sector = 0;
        for seed in 0..16 {
            // Two files, each written as the consumer checkpoint is: small
            // writes alternating between offsets 0 and 512, none synced.
            let files: Vec<PathBuf> =
                ["x", "y"].iter().map(|n| durable_file(m.path(), &format!("{n}{seed}"), &[0u8; 1024])).collect();
            let handles: Vec<File> = files.iter().map(|p| OpenOptions::new().write(true).open(p).unwrap()).collect();
            for round in 1..=6u8 {
                for f in &handles {
                    f.write_all_at(&[round; SLOT], u64::from(round % 2) * SECTOR_BYTES).unwrap();
                }
            }
            m.cut(CutMode::Bytes(seed));
            drop(handles);
            m.power_on();
            for path in &files {
                let data = fs::read(path).unwrap();
                let mut torn = 0;
                for at in [0, SECTOR_BYTES as usize] {
                    let slot = &data[at..at + SLOT];
                    let written = slot.iter().take_while(|b| **b == slot[0]).count();
                    assert!(slot[written..].iter().all(|b| *b == 0 || *b + 2 == slot[0]), "{seed}: {slot:?}");
                    torn += usize::from(written < SLOT);
                }
                let outside = data[SLOT..SECTOR_BYTES as usize].iter().chain(&data[SECTOR_BYTES as usize + SLOT..]);
                assert!(outside.into_iter().all(|b| *b == 0), "seed {seed}: a byte no write touched changed");
                assert!(torn <= 1, "seed {seed}: both slots of {} torn: {data:?}", path.display());
                torn_inside_a_sector += torn;
            }
        }
        assert!(torn_inside_a_sector > 0, "some seed tore a 36-byte write");
    });
}

//! The store's lock: a child process spawned while a store is open must not
//! keep it locked after its owner closed it; a second writer in one process
//! names the other handle; read-only opens and a writer share the store (a
//! repair has it alone); `Options::lock_wait` waits for the holder. These
//! tests only lock their own temp stores.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use factlog::{Error, LockHolder, Store};
use factlog_tests::small_options;

/// Spawns `true` in a thread with a child that sleeps `hold` between `fork`
/// and `exec`, the window in which it holds copies of every descriptor of
/// this process. Returns once the child has forked.
fn spawn_slow_child(hold: Duration) -> std::thread::JoinHandle<()> {
    let (forked_tx, forked_rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        let mut cmd = Command::new("true");
        // SAFETY: the closure runs in the forked child before `exec`; it only
        // sleeps (nanosleep is async-signal-safe) and allocates nothing.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || {
                std::thread::sleep(hold);
                Ok(())
            });
        }
        forked_tx.send(()).unwrap();
        cmd.status().unwrap();
    });
    forked_rx.recv().unwrap();
    t
}

#[test]
fn a_child_forked_while_the_store_was_open_does_not_keep_it_locked() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let store = Store::open(dir.path(), small_options()).unwrap();
        let child = spawn_slow_child(Duration::from_millis(600));
        // Let the fork happen while the store is open.
        std::thread::sleep(Duration::from_millis(150));
        store.close().unwrap();
        // The child still holds copies of this process's descriptors; with an
        // flock-based lock this open failed with `Locked`.
        let again = Store::open(dir.path(), small_options());
        assert!(again.is_ok(), "round {round}: {again:?}");
        drop(again);
        child.join().unwrap();
    }
}

#[test]
fn a_second_open_in_the_same_process_names_the_other_handle() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    match Store::open(dir.path(), small_options()) {
        Err(e @ Error::Locked { holder: LockHolder::ThisProcess, .. }) => {
            assert!(e.to_string().contains("clone"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // A repair needs the store to itself.
    let repair = small_options().repair(true);
    assert!(matches!(
        Store::open(dir.path(), repair.clone()),
        Err(Error::Locked { holder: LockHolder::ThisProcess, .. })
    ));
    drop(store);
    // Read-only handles share the lock; a writer opens beside them, a repair does not.
    let r1 = Store::open_read_only(dir.path(), small_options()).unwrap();
    let r2 = Store::open_read_only(dir.path(), small_options()).unwrap();
    assert!(matches!(
        Store::open(dir.path(), repair.clone()),
        Err(Error::Locked { holder: LockHolder::ThisProcess, .. })
    ));
    let writer = Store::open(dir.path(), small_options()).unwrap();
    drop(r1);
    assert!(matches!(Store::open(dir.path(), small_options()), Err(Error::Locked { .. })));
    drop(writer);
    drop(r2);
    Store::open(dir.path(), repair).unwrap();
}

#[test]
fn read_only_opens_and_a_writer_do_not_exclude_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    store.append("a", factlog::ExpectedVersion::Any, vec![factlog_tests::event(0, 0)]).unwrap();
    // Beside a live writer of this process: the view ends at its watermark, and follows it.
    let reader = Store::open_read_only(dir.path(), small_options()).unwrap();
    assert_eq!(reader.last_position(), Some(0));
    store.append("a", factlog::ExpectedVersion::Any, vec![factlog_tests::event(0, 1)]).unwrap();
    assert_eq!(reader.reader().end_position(), 2);
    // A repair dry run reads past the watermark: not beside a live writer.
    let dry = small_options().repair(true);
    assert!(matches!(Store::open_read_only(dir.path(), dry.clone()), Err(Error::Locked { .. })));
    // The writer closes and reopens while the reader stays open.
    store.close().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    store.append("a", factlog::ExpectedVersion::Any, vec![factlog_tests::event(0, 2)]).unwrap();
    assert_eq!(reader.refresh().unwrap(), Some(2));
    drop(store);
    Store::open_read_only(dir.path(), dry).unwrap();
}

#[test]
fn lock_wait_waits_for_the_holder_and_gives_up_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    let started = Instant::now();
    let short = small_options().lock_wait(Duration::from_millis(100));
    assert!(matches!(Store::open(dir.path(), short), Err(Error::Locked { .. })));
    assert!(started.elapsed() >= Duration::from_millis(100));

    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        store.close().unwrap();
    });
    let long = small_options().lock_wait(Duration::from_secs(30));
    let store = Store::open(dir.path(), long).expect("the lock is free once the holder closes");
    closer.join().unwrap();
    drop(store);
}

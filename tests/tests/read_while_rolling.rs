//! Readers racing the writer across segment rolls: a `Reader` made at any
//! moment must read every event below its watermark, in the new segment
//! too. Uses its own temp store only.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use factlog::{ExpectedVersion, Store};
use factlog_tests::{event, small_options};

#[test]
fn a_reader_made_right_after_a_roll_sees_every_visible_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options().first_segment_bytes(64 << 10)).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, done) = (store.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut checks = 0u64;
            while !done.load(Ordering::Relaxed) {
                let r = store.reader();
                let end = r.end_position();
                // The last visible event is the one most likely in a brand-new segment.
                if let Some(last) = end.checked_sub(1) {
                    let ev = r.event_at_position(last).unwrap_or_else(|e| panic!("position {last} of {end}: {e}"));
                    assert_eq!(ev.position(), last);
                    checks += 1;
                }
            }
            checks
        })
    };
    for n in 0..3000u64 {
        store.append("a", ExpectedVersion::Any, vec![event(1, n)]).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
            .count()
            > 10
    );
}

//! The `extern "C"` functions of `factlog.h`. Each one runs in [`guard`] (a
//! panic becomes `FACTLOG_PANIC`), turns every pointer argument into a
//! checked reference with `boundary` before it does anything (so a NULL out
//! pointer never comes after a write), calls one engine method, and writes
//! its outputs. `#[no_mangle]` and the pointer reads are why this module
//! allows `unsafe`; each block says why it holds.
//!
//! Every function here is `unsafe` to call from Rust for the same reason:
//! its pointer arguments must follow the rules at the top of `factlog.h`
//! (each pointer NULL or valid for the call; handles live, from this
//! library, not freed). That is each function's `# Safety` contract.

use std::mem::MaybeUninit;
use std::os::raw::c_char;
use std::ptr;
use std::time::Duration;

use factlog::{EventId, Filter, SchemaVersion, Store};

use crate::boundary::{
    append_part, c_str, c_strs, handle, handle_mut, into_handle, new_event, out, out_opt, out_slice_opt, slice,
    take_handle,
};
use crate::convert;
use crate::handles::{factlog_iter, factlog_store, factlog_subscription};
use crate::status::factlog_status::{self, *};
use crate::status::{guard, with_last_error, Failure};
use crate::types::*;

/// Fills `options` with the defaults (the engine's `Options::default()`).
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_options_default(options: *mut factlog_options) -> factlog_status {
    guard(|| {
        // SAFETY: `options` is NULL (checked by `out`) or writable for the call (contract).
        unsafe { out(options, "options") }?.write(convert::default_options());
        Ok(FACTLOG_OK)
    })
}

/// Opens (read-write: creates if missing or empty) the store in the
/// directory `path`, with `options` (NULL: the defaults). Sets `*store` to
/// the new handle, or to NULL on failure.
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_open(
    path: *const c_char,
    options: *const factlog_options,
    store: *mut *mut factlog_store,
) -> factlog_status {
    guard(|| {
        // SAFETY: `store` is NULL (checked by `out`) or writable for the call (contract).
        let slot = unsafe { out(store, "store") }?;
        slot.write(ptr::null_mut());
        // SAFETY: `path` is NULL (checked by `c_str`) or a string, `options` NULL (allowed:
        // `as_ref` gives None) or a struct, both live for the call (contract).
        let (path, c_options) = unsafe { (c_str(path, "path")?, options.as_ref()) };
        let c_options = c_options.copied().unwrap_or_else(convert::default_options);
        let options = convert::options(&c_options)?;
        let opened =
            if c_options.read_only { Store::open_read_only(path, options) } else { Store::open(path, options) };
        slot.write(into_handle(factlog_store { store: opened? }));
        Ok(FACTLOG_OK)
    })
}

/// Closes the store: syncs everything written, stops the writer and frees
/// the handle (NULL: does nothing). The handle is invalid afterwards, even
/// when this fails; no other call may use it meanwhile. Iterators and
/// subscriptions still open stay valid: iterators keep reading what they
/// saw, subscriptions report `FACTLOG_CLOSED`. A read-write store's lock is
/// released here (the store can be opened again at once); a read-only
/// store's when the last of its iterators and subscriptions is freed.
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_close(store: *mut factlog_store) -> factlog_status {
    guard(|| {
        // SAFETY: NULL or a live handle from `factlog_open`, not in use elsewhere (contract).
        match unsafe { take_handle(store) } {
            Some(handle) => handle.store.close().map(|()| FACTLOG_OK).map_err(Failure::from),
            None => Ok(FACTLOG_OK),
        }
    })
}

/// Appends `events_len` events to `aggregate_id` as one atomic batch, if the
/// aggregate's version matches `expected_kind` (a `FACTLOG_EXPECTED_*` value;
/// `expected_version` is read for `FACTLOG_EXPECTED_EXACT` only). Returns
/// once the batch is durable (`FACTLOG_DURABILITY_SYNC`) or written
/// (`_BUFFERED`); the bytes are copied, so the arrays may be reused at once.
/// `result` (may be NULL) receives the versions and positions written.
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_append(
    store: *const factlog_store,
    aggregate_id: *const c_char,
    expected_kind: factlog_expected,
    expected_version: u64,
    events: *const factlog_new_event,
    events_len: usize,
    result: *mut factlog_append_result,
) -> factlog_status {
    guard(|| {
        // SAFETY: each pointer is NULL or valid for the call (contract); the helpers check NULL
        // and lengths, and a NULL `result` is allowed.
        let (handle, id, c_events, result) = unsafe {
            (
                handle(store, "store")?,
                c_str(aggregate_id, "aggregate_id")?,
                slice(events, events_len, "events")?,
                out_opt(result),
            )
        };
        let expected = convert::expected(expected_kind, expected_version)?;
        let each = c_events.iter().enumerate().map(|(i, e)| {
            // SAFETY: each event's pointers are NULL or valid for the call (contract).
            unsafe { new_event(e, i) }
        });
        let batch = each.collect::<Result<Vec<_>, Failure>>()?;
        let written = handle.store.append(id, expected, batch)?;
        write_if_asked(result, convert::append_result(&written));
        Ok(FACTLOG_OK)
    })
}

/// Appends one batch to each of `parts_len` aggregates as **one** atomic
/// batch: all of them or none, in one group commit and one acknowledgement
/// (a multi-aggregate transaction, as process managers and sagas need). Each
/// part has its own expected version, as in `factlog_append`; if any does not
/// match, nothing is written and the status is
/// `FACTLOG_WRONG_EXPECTED_VERSION`, its message naming that aggregate and
/// its actual version. The parts get consecutive positions in the order
/// given. Each aggregate may appear once, every part needs at least one
/// event, and all the events together count against `max_batch_events`;
/// otherwise `FACTLOG_INVALID_INPUT`. Re-appending the same parts (same
/// event ids) is an idempotent retry: the original results, with
/// `deduplicated` set. Returns once the batch is durable or written, as
/// `factlog_append` does; the bytes are copied. `results` (may be NULL) is
/// an array of `parts_len` results, filled in order on `FACTLOG_OK`.
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_append_many(
    store: *const factlog_store,
    parts: *const factlog_append_part,
    parts_len: usize,
    results: *mut factlog_append_result,
) -> factlog_status {
    guard(|| {
        // SAFETY: each pointer is NULL or valid for the call (contract): `results` for
        // `parts_len` results; the helpers check NULL and lengths, and a NULL `results` is allowed.
        let (handle, c_parts, results) = unsafe {
            (handle(store, "store")?, slice(parts, parts_len, "parts")?, out_slice_opt(results, parts_len, "results")?)
        };
        let mut batches = Vec::with_capacity(c_parts.len());
        for (j, p) in c_parts.iter().enumerate() {
            let within = |f: Failure| f.within(&format!("parts[{j}]"));
            // SAFETY: each part's pointers are NULL or valid for the call (contract).
            let (id, events) = unsafe { append_part(p) }.map_err(within)?;
            let expected = convert::expected(p.expected_kind, p.expected_version)
                .map_err(|f| Failure::new(f.status, format!("parts[{j}]: {}", f.message)))?;
            batches.push((id, expected, events));
        }
        let written = handle.store.append_many(batches)?;
        if let Some(results) = results {
            for (slot, w) in results.iter_mut().zip(&written) {
                slot.write(convert::append_result(w));
            }
        }
        Ok(FACTLOG_OK)
    })
}

/// Starts a zero-copy read of the whole log from `from_position` on, in
/// global order, over the events visible now. Sets `*iter` (NULL on
/// failure); read it with `factlog_iter_next`, free it with `factlog_iter_free`.
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_read_all(
    store: *const factlog_store,
    from_position: u64,
    iter: *mut *mut factlog_iter,
) -> factlog_status {
    guard(|| {
        // SAFETY: `iter` is NULL (checked by `out`) or writable for the call (contract).
        let slot = unsafe { out(iter, "iter") }?;
        slot.write(ptr::null_mut());
        // SAFETY: NULL or a live handle for the call (contract); `handle` checks NULL.
        let handle = unsafe { handle(store, "store") }?;
        slot.write(into_handle(factlog_iter::read_all(handle.store.reader(), from_position)));
        Ok(FACTLOG_OK)
    })
}

/// Starts a zero-copy read of one aggregate's events from `from_version`,
/// forwards or backwards (`FACTLOG_DIRECTION_*`; backwards from `UINT64_MAX`
/// reads from the last event). An aggregate with no events reads as empty.
/// Sets `*iter` (NULL on failure).
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_read_aggregate(
    store: *const factlog_store,
    aggregate_id: *const c_char,
    from_version: u64,
    direction: factlog_direction,
    iter: *mut *mut factlog_iter,
) -> factlog_status {
    guard(|| {
        // SAFETY: `iter` is NULL (checked by `out`) or writable for the call (contract).
        let slot = unsafe { out(iter, "iter") }?;
        slot.write(ptr::null_mut());
        // SAFETY: both pointers are NULL or valid for the call (contract); the helpers check NULL.
        let (handle, id) = unsafe { (handle(store, "store")?, c_str(aggregate_id, "aggregate_id")?) };
        let direction = convert::direction(direction)?;
        let reader = handle.store.reader();
        slot.write(into_handle(factlog_iter::read_aggregate(reader, id, from_version, direction)));
        Ok(FACTLOG_OK)
    })
}

/// Fills `*event` with the iterator's next event and returns `FACTLOG_OK`,
/// or returns `FACTLOG_END` when there is none (or an error, e.g.
/// `FACTLOG_CORRUPT`, after which the iterator ends). The view's pointers
/// point into the store's memory maps: valid until the next call on this
/// iterator or its free, no copy made.
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_iter_next(iter: *mut factlog_iter, event: *mut factlog_event_view) -> factlog_status {
    guard(|| {
        // SAFETY: each pointer is NULL or valid for the call, the iterator not in use
        // elsewhere (contract); the helpers check NULL.
        let (it, slot) = unsafe { (handle_mut(iter, "iter")?, out(event, "event")?) };
        Ok(deliver(it.next_view()?, slot, FACTLOG_END))
    })
}

/// Frees an iterator (NULL: does nothing). Views it filled are invalid afterwards.
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_iter_free(iter: *mut factlog_iter) {
    guard(|| {
        // SAFETY: NULL or a live handle from this library, not in use elsewhere (contract).
        drop(unsafe { take_handle(iter) });
        Ok(FACTLOG_OK)
    });
}

/// Saves a snapshot of `aggregate_id`'s state as of `version` (events
/// `0..=version` folded), with the caller's `schema_version`; `state` is
/// copied and zstd-compressed. Fails with `FACTLOG_SNAPSHOT_AHEAD` if the
/// aggregate has not reached `version`. `info` (may be NULL) receives the sizes.
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_save_snapshot(
    store: *const factlog_store,
    aggregate_id: *const c_char,
    version: u64,
    schema_version: u32,
    state: *const u8,
    state_len: usize,
    info: *mut factlog_snapshot_info,
) -> factlog_status {
    guard(|| {
        // SAFETY: each pointer is NULL or valid for the call (contract); the helpers check
        // NULL and the length, and a NULL `info` is allowed.
        let (handle, id, state, info) = unsafe {
            (
                handle(store, "store")?,
                c_str(aggregate_id, "aggregate_id")?,
                slice(state, state_len, "state")?,
                out_opt(info),
            )
        };
        let saved = handle.store.save_snapshot(id, version, SchemaVersion(schema_version), state)?;
        write_if_asked(info, convert::snapshot_info(&saved));
        Ok(FACTLOG_OK)
    })
}

/// Loads `aggregate_id` for rehydration: `*loaded` gets its newest snapshot
/// (if any) and `*events` an iterator over the events after it (all of them
/// without a snapshot). `loaded->state` points into that iterator: valid
/// until `factlog_iter_free(*events)`. `*events` is NULL on failure.
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_load(
    store: *const factlog_store,
    aggregate_id: *const c_char,
    loaded: *mut factlog_loaded,
    events: *mut *mut factlog_iter,
) -> factlog_status {
    // SAFETY: the same arguments with the same contract, and a point that names nothing extra.
    unsafe { load(store, aggregate_id, None, loaded, events) }
}

/// Loads `aggregate_id` as it stood at a past point (`as_of_kind` a
/// `FACTLOG_AS_OF_*` value; `as_of` a position or version, not negative,
/// or unix nanoseconds of `recorded_at`): the newest kept snapshot at or
/// before that point and the events after it up to that point, as
/// `factlog_load` gives them.
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_load_as_of(
    store: *const factlog_store,
    aggregate_id: *const c_char,
    as_of_kind: factlog_as_of,
    as_of: i64,
    loaded: *mut factlog_loaded,
    events: *mut *mut factlog_iter,
) -> factlog_status {
    // SAFETY: the same arguments with the same contract.
    unsafe { load(store, aggregate_id, Some((as_of_kind, as_of)), loaded, events) }
}

/// `factlog_load` (`as_of` None) and `factlog_load_as_of`.
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
unsafe fn load(
    store: *const factlog_store,
    aggregate_id: *const c_char,
    as_of: Option<(factlog_as_of, i64)>,
    loaded: *mut factlog_loaded,
    events: *mut *mut factlog_iter,
) -> factlog_status {
    guard(|| {
        // SAFETY: `events` is NULL (checked by `out`) or writable for the call (contract).
        let slot = unsafe { out(events, "events") }?;
        slot.write(ptr::null_mut());
        // SAFETY: each pointer is NULL or valid for the call (contract); the helpers check NULL.
        let (handle, id, loaded_slot) =
            unsafe { (handle(store, "store")?, c_str(aggregate_id, "aggregate_id")?, out(loaded, "loaded")?) };
        let found = match as_of {
            None => handle.store.load(id)?,
            Some((kind, value)) => handle.store.load_as_of(id, convert::as_of(kind, value)?)?,
        };
        let (iter, view) = factlog_iter::loaded(found);
        loaded_slot.write(view);
        slot.write(into_handle(iter));
        Ok(FACTLOG_OK)
    })
}

/// Fills `*stats` with the store's counters and sizes.
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_stats(store: *const factlog_store, stats: *mut factlog_store_stats) -> factlog_status {
    guard(|| {
        // SAFETY: both pointers are NULL or valid for the call (contract); the helpers check NULL.
        let (handle, slot) = unsafe { (handle(store, "store")?, out(stats, "stats")?) };
        slot.write(convert::stats(&handle.store.stats()));
        Ok(FACTLOG_OK)
    })
}

/// Checks every record, index entry, checkpoint and snapshot of the store
/// (appends go on meanwhile) and fills `*report`. Returns `FACTLOG_CORRUPT`
/// when it finds problems, with a message naming each one's file and offset
/// (`report` is filled then too).
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_verify(
    store: *const factlog_store,
    report: *mut factlog_verify_report,
) -> factlog_status {
    guard(|| {
        // SAFETY: both pointers are NULL or valid for the call (contract); the helpers check NULL.
        let (handle, slot) = unsafe { (handle(store, "store")?, out(report, "report")?) };
        let found = handle.store.verify(&mut |_, _| {})?;
        slot.write(convert::verify_report(&found));
        if found.problems.is_empty() {
            return Ok(FACTLOG_OK);
        }
        Err(Failure::new(FACTLOG_CORRUPT, convert::verify_problems(&found)))
    })
}

/// Forces an `fdatasync` of everything written (useful with `FACTLOG_DURABILITY_BUFFERED`).
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_sync(store: *const factlog_store) -> factlog_status {
    guard(|| {
        // SAFETY: NULL or a live handle for the call (contract); `handle` checks NULL.
        let handle = unsafe { handle(store, "store") }?;
        handle.store.sync()?;
        Ok(FACTLOG_OK)
    })
}

/// Subscribes to the whole log from `start` (`FACTLOG_START_*`; `position`
/// is read for `FACTLOG_START_AT`), delivering in global order the durable
/// events whose type is one of `event_types` (none given: any type) and
/// whose aggregate id starts with one of `aggregate_prefixes` (none: any):
/// first those already in the log, then each new one as it becomes durable.
/// Sets `*subscription` (NULL on failure).
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_subscribe(
    store: *const factlog_store,
    start: factlog_start,
    position: u64,
    event_types: *const *const c_char,
    event_types_len: usize,
    aggregate_prefixes: *const *const c_char,
    aggregate_prefixes_len: usize,
    subscription: *mut *mut factlog_subscription,
) -> factlog_status {
    guard(|| {
        // SAFETY: `subscription` is NULL (checked by `out`) or writable for the call (contract).
        let slot = unsafe { out(subscription, "subscription") }?;
        slot.write(ptr::null_mut());
        // SAFETY: each pointer is NULL or valid for the call (contract); the helpers check
        // NULL and lengths.
        let (handle, types, prefixes) = unsafe {
            (
                handle(store, "store")?,
                c_strs(event_types, event_types_len, "event_types")?,
                c_strs(aggregate_prefixes, aggregate_prefixes_len, "aggregate_prefixes")?,
            )
        };
        let filter = Filter::all().event_types(types).aggregate_prefixes(prefixes);
        let sub = handle.store.subscribe(convert::start(start, position)?, filter);
        slot.write(into_handle(factlog_subscription::new(sub)));
        Ok(FACTLOG_OK)
    })
}

/// Subscribes to one aggregate's durable events in version order, from
/// `start` (`FACTLOG_START_AT`: from `version`). Sets `*subscription` (NULL on failure).
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_subscribe_aggregate(
    store: *const factlog_store,
    aggregate_id: *const c_char,
    start: factlog_start,
    version: u64,
    subscription: *mut *mut factlog_subscription,
) -> factlog_status {
    guard(|| {
        // SAFETY: `subscription` is NULL (checked by `out`) or writable for the call (contract).
        let slot = unsafe { out(subscription, "subscription") }?;
        slot.write(ptr::null_mut());
        // SAFETY: both pointers are NULL or valid for the call (contract); the helpers check NULL.
        let (handle, id) = unsafe { (handle(store, "store")?, c_str(aggregate_id, "aggregate_id")?) };
        let sub = handle.store.subscribe_aggregate(id, convert::start(start, version)?);
        slot.write(into_handle(factlog_subscription::new(sub)));
        Ok(FACTLOG_OK)
    })
}

/// Waits up to `timeout_ms` milliseconds (0: do not wait; `UINT64_MAX`:
/// forever) for the subscription's next event. `FACTLOG_OK`: `*event` is
/// filled, its pointers valid until the next call on this subscription or
/// its free (the event is copied once, out of the map, into the handle).
/// `FACTLOG_TIMEOUT`: nothing came in time. `FACTLOG_CLOSED`: the store was closed.
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_subscription_next(
    subscription: *mut factlog_subscription,
    timeout_ms: u64,
    event: *mut factlog_event_view,
) -> factlog_status {
    guard(|| {
        // SAFETY: each pointer is NULL or valid for the call, the subscription not in use
        // elsewhere (contract); the helpers check NULL.
        let (sub, slot) = unsafe { (handle_mut(subscription, "subscription")?, out(event, "event")?) };
        Ok(deliver(sub.next_view(Duration::from_millis(timeout_ms))?, slot, FACTLOG_TIMEOUT))
    })
}

/// Sets `*position` to the next global position (for one aggregate: the
/// next version) the subscription will look at: the checkpoint to keep to
/// resume it later with `FACTLOG_START_AT`.
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_subscription_position(
    subscription: *const factlog_subscription,
    position: *mut u64,
) -> factlog_status {
    guard(|| {
        // SAFETY: both pointers are NULL or valid for the call (contract); the helpers check NULL.
        let (sub, slot) = unsafe { (handle(subscription, "subscription")?, out(position, "position")?) };
        slot.write(sub.subscription.position());
        Ok(FACTLOG_OK)
    })
}

/// Frees a subscription (NULL: does nothing). Views it filled are invalid afterwards.
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_subscription_free(subscription: *mut factlog_subscription) {
    guard(|| {
        // SAFETY: NULL or a live handle from this library, not in use elsewhere (contract).
        drop(unsafe { take_handle(subscription) });
        Ok(FACTLOG_OK)
    });
}

/// The message of the last error status returned on the calling thread
/// (`""` before any): the engine's text, naming the aggregate, version,
/// file or offset involved. Calls that succeed leave it as it is. Valid
/// until the next failing call on this thread; never NULL.
#[no_mangle]
pub extern "C" fn factlog_last_error_message() -> *const c_char {
    // The pointer is into this thread's message, which only a later failure on this thread replaces.
    with_last_error(|m| m.as_ptr())
}

/// The name of a status (`"FACTLOG_OK"`), or `"FACTLOG_UNKNOWN_STATUS"` for a
/// value that is none. A static string; never NULL.
#[no_mangle]
pub extern "C" fn factlog_status_name(status: i32) -> *const c_char {
    factlog_status::from_i32(status).map_or(c"FACTLOG_UNKNOWN_STATUS", factlog_status::name).as_ptr()
}

/// Writes a new time-ordered (UUID version 7) event id into the 16 bytes at `id`.
///
/// # Safety
/// Pointer arguments follow the rules at the top of factlog.h.
#[no_mangle]
pub unsafe extern "C" fn factlog_event_id_new(id: *mut u8) -> factlog_status {
    guard(|| {
        // SAFETY: `id` is NULL (checked by `out`) or 16 writable bytes (contract); an array
        // of bytes has alignment 1.
        let slot = unsafe { out(id.cast::<[u8; FACTLOG_ID_BYTES]>(), "id") }?;
        slot.write(EventId::new_v7().0);
        Ok(FACTLOG_OK)
    })
}

/// The current time as unix nanoseconds (what `occurred_at` usually is).
#[no_mangle]
pub extern "C" fn factlog_now_nanos() -> i64 {
    factlog::now_nanos()
}

/// Writes an optional out-parameter the caller passed (not NULL).
fn write_if_asked<T>(slot: Option<&mut MaybeUninit<T>>, value: T) {
    if let Some(slot) = slot {
        slot.write(value);
    }
}

/// An event for `*slot` and `FACTLOG_OK`, or `none` (`FACTLOG_END`,
/// `FACTLOG_TIMEOUT`) when there is none; the slot is then left as it was.
fn deliver(
    view: Option<factlog_event_view>,
    slot: &mut MaybeUninit<factlog_event_view>,
    none: factlog_status,
) -> factlog_status {
    match view {
        Some(view) => {
            slot.write(view);
            FACTLOG_OK
        }
        None => none,
    }
}

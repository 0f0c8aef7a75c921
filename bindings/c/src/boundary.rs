//! Raw C pointers to checked Rust references: the only place, with
//! `exports`, that holds `unsafe`. Each function checks what can be checked
//! (NULL, UTF-8, a length that no allocation can have) and turns it into a
//! `Failure`; what cannot be checked (that a non-NULL pointer points at live
//! memory of the right size) is the caller's contract, stated in each
//! `# Safety` section and, for C callers, at the top of `factlog.h`.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::raw::c_char;

use factlog::{EventId, NewEvent};

use crate::status::factlog_status::{FACTLOG_INVALID_UTF8, FACTLOG_NULL_POINTER, FACTLOG_OUT_OF_RANGE};
use crate::status::Failure;
use crate::types::{factlog_append_part, factlog_new_event};

/// A NULL pointer argument named `what`.
fn null(what: &str) -> Failure {
    Failure::new(FACTLOG_NULL_POINTER, format!("{what} is NULL"))
}

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `ptr` is NULL or points at a NUL-terminated string that stays live and
/// unchanged for `'a`.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(null(what));
    }
    // SAFETY: not NULL (checked above); NUL-terminated and live for 'a by this function's contract.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes.to_str().map_err(|e| {
        let at = e.valid_up_to();
        Failure::new(FACTLOG_INVALID_UTF8, format!("{what} is not valid UTF-8 (bad byte at offset {at})"))
    })
}

/// An array argument of `len` elements; NULL is accepted when `len` is 0.
///
/// # Safety
/// `ptr` is NULL or points at `len` initialized, properly aligned `T`s that
/// stay live and unchanged for `'a`.
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, len: usize, what: &str) -> Result<&'a [T], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(null(what));
    }
    // No allocation is larger than isize::MAX bytes: a longer length is a caller's mistake.
    if len.checked_mul(size_of::<T>()).is_none_or(|bytes| bytes > isize::MAX as usize) {
        return Err(Failure::new(FACTLOG_OUT_OF_RANGE, format!("{what} length {len} is larger than any array")));
    }
    // SAFETY: not NULL, `len * size_of::<T>()` fits in isize (checked above); valid, aligned,
    // initialized and live for 'a by this function's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// An array of `len` NUL-terminated UTF-8 strings; NULL is accepted when `len` is 0.
///
/// # Safety
/// `ptr` is NULL or points at `len` pointers, each NULL or a NUL-terminated
/// string, all live and unchanged for `'a`.
pub(crate) unsafe fn c_strs<'a>(ptr: *const *const c_char, len: usize, what: &str) -> Result<Vec<&'a str>, Failure> {
    // SAFETY: this function's contract is `slice`'s for the array of pointers.
    let ptrs = unsafe { slice(ptr, len, what) }?;
    let each = ptrs.iter().enumerate().map(|(i, p)| {
        // SAFETY: each pointer is NULL or a live NUL-terminated string (contract).
        unsafe { c_str(*p, &format!("{what}[{i}]")) }
    });
    each.collect()
}

/// The event `e` describes, its strings and bytes copied into the engine's
/// types (`index`: its place in the batch, for messages).
///
/// # Safety
/// `e.event_type` is NULL or a NUL-terminated string; `e.metadata` and
/// `e.data` are NULL or point at `metadata_len` and `data_len` bytes; all
/// live and unchanged for the call.
pub(crate) unsafe fn new_event(e: &factlog_new_event, index: usize) -> Result<NewEvent, Failure> {
    let within = |f: Failure| f.within(&format!("events[{index}]"));
    // SAFETY: the three pointers are what this function's contract says, as `c_str` and `slice` need.
    let (event_type, metadata, data) = unsafe {
        (
            c_str(e.event_type, "event_type").map_err(within)?,
            slice(e.metadata, e.metadata_len, "metadata").map_err(within)?,
            slice(e.data, e.data_len, "data").map_err(within)?,
        )
    };
    let mut event = NewEvent::new(EventId(e.event_id), event_type, data)
        .with_event_version(e.event_version)
        .with_occurred_at(e.occurred_at)
        .with_metadata(metadata);
    if e.has_causation_id {
        event = event.with_causation_id(EventId(e.causation_id));
    }
    if e.has_correlation_id {
        event = event.with_correlation_id(EventId(e.correlation_id));
    }
    Ok(event)
}

/// The aggregate id and events of one `factlog_append_part`, copied into
/// the engine's types (its expected version is plain data: `convert::expected`).
///
/// # Safety
/// `p.aggregate_id` is NULL or a NUL-terminated string; `p.events` is NULL
/// or points at `p.events_len` events, each as [`new_event`] requires; all
/// live and unchanged for `'a`.
pub(crate) unsafe fn append_part<'a>(p: &factlog_append_part) -> Result<(&'a str, Vec<NewEvent>), Failure> {
    // SAFETY: the two pointers are what this function's contract says, as `c_str` and `slice` need.
    let (id, c_events) = unsafe { (c_str(p.aggregate_id, "aggregate_id")?, slice(p.events, p.events_len, "events")?) };
    let each = c_events.iter().enumerate().map(|(i, e)| {
        // SAFETY: each event's pointers are NULL or valid for the call (contract).
        unsafe { new_event(e, i) }
    });
    Ok((id, each.collect::<Result<Vec<_>, Failure>>()?))
}

/// A handle argument (or any other `const` object pointer).
///
/// # Safety
/// `ptr` is NULL or points at a live `T` (for a handle: one this library
/// returned and that was not freed) that nothing mutates for `'a`.
pub(crate) unsafe fn handle<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, Failure> {
    // SAFETY: `as_ref` checks NULL; the rest is this function's contract.
    unsafe { ptr.as_ref() }.ok_or_else(|| null(what))
}

/// A handle argument used exclusively (an iterator or a subscription).
///
/// # Safety
/// `ptr` is NULL or points at a live `T` this library returned, not freed,
/// and not used by any other thread or call for `'a`.
pub(crate) unsafe fn handle_mut<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: `as_mut` checks NULL; exclusivity and liveness are this function's contract.
    unsafe { ptr.as_mut() }.ok_or_else(|| null(what))
}

/// An out-parameter. Seen as `MaybeUninit`, so the caller's memory may hold
/// anything (a C struct left uninitialized) and writing it is safe.
///
/// # Safety
/// `ptr` is NULL or points at writable, properly aligned memory for a `T`
/// that nothing else uses for `'a`.
pub(crate) unsafe fn out<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut MaybeUninit<T>, Failure> {
    // SAFETY: `MaybeUninit<T>` has the layout of `T` and no validity invariant, so any
    // memory the contract describes is a valid `MaybeUninit<T>`; `as_mut` checks NULL.
    unsafe { ptr.cast::<MaybeUninit<T>>().as_mut() }.ok_or_else(|| null(what))
}

/// An optional out-parameter: `None` for NULL.
///
/// # Safety
/// As [`out`].
pub(crate) unsafe fn out_opt<'a, T>(ptr: *mut T) -> Option<&'a mut MaybeUninit<T>> {
    // SAFETY: as in `out`, by this function's contract.
    unsafe { ptr.cast::<MaybeUninit<T>>().as_mut() }
}

/// An optional out-array of `len` elements: `None` for NULL. Seen as
/// `MaybeUninit`, as in [`out`].
///
/// # Safety
/// `ptr` is NULL or points at `len` writable, properly aligned `T`s that
/// nothing else uses for `'a`.
pub(crate) unsafe fn out_slice_opt<'a, T>(
    ptr: *mut T,
    len: usize,
    what: &str,
) -> Result<Option<&'a mut [MaybeUninit<T>]>, Failure> {
    if ptr.is_null() || len == 0 {
        return Ok(None);
    }
    // No allocation is larger than isize::MAX bytes: a longer length is a caller's mistake.
    if len.checked_mul(size_of::<T>()).is_none_or(|bytes| bytes > isize::MAX as usize) {
        return Err(Failure::new(FACTLOG_OUT_OF_RANGE, format!("{what} length {len} is larger than any array")));
    }
    // SAFETY: not NULL, the length fits in isize (checked above); `MaybeUninit<T>` has the
    // layout of `T` and no validity invariant, and the memory is writable, aligned and
    // exclusive for 'a by this function's contract.
    Ok(Some(unsafe { std::slice::from_raw_parts_mut(ptr.cast::<MaybeUninit<T>>(), len) }))
}

/// Gives a handle to C: a heap object C sees as an opaque pointer.
pub(crate) fn into_handle<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes a handle back from C to drop it; `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or a pointer [`into_handle`] returned for a `T`, not freed
/// before, and not in use by any other call (it is invalid afterwards).
pub(crate) unsafe fn take_handle<T>(ptr: *mut T) -> Option<Box<T>> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: `ptr` came from `Box::into_raw` in `into_handle` and is not freed yet (contract).
    Some(unsafe { Box::from_raw(ptr) })
}

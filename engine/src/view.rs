//! Zero-copy views of record bodies that already passed validation. This is
//! one of the two modules allowed to use `unsafe` (the other is `mmap`): it
//! skips rkyv's structural check for bodies this process has already checked
//! or written itself. It must never be called on bytes that have not passed
//! both the frame checksum and, once in this process, `record::validate_body`.

use crate::record::{ArchivedRecordBody, FrameError};

/// Views a body that this process validated earlier (or wrote itself) and
/// whose checksum was verified again just now.
///
/// `trusted` is the caller's promise that those two things hold; it is
/// enforced by construction in `segment::Segment`, which only calls this for
/// offsets below its validated watermark.
pub(crate) fn trusted_body(body: &[u8]) -> Result<&ArchivedRecordBody<'static>, FrameError> {
    let need = std::mem::size_of::<ArchivedRecordBody<'static>>();
    let align = std::mem::align_of::<ArchivedRecordBody<'static>>();
    if body.len() < need || !(body.as_ptr() as usize).is_multiple_of(align) {
        return Err(FrameError::Invalid("record body too short or misaligned".into()));
    }
    // SAFETY: `access_unchecked` requires that `body` holds a valid archive of
    // `ArchivedRecordBody` whose root sits at the end. The callers (only
    // `segment::Segment::event_at`) pass bytes that (1) were written by this
    // process's writer through `record::encode_frame`, or were checked by
    // `record::validate_body` (rkyv bytecheck: every relative pointer in range,
    // strings UTF-8, options well-formed) earlier in this process, and (2)
    // passed the frame's CRC32 again just before this call, so they are
    // byte-for-byte what was validated. Segment files are never shrunk or
    // rewritten while mapped (the directory lock keeps other factlog processes
    // out), so the bytes cannot change between the check and the use. Length
    // and alignment were checked above.
    Ok(unsafe { rkyv::access_unchecked::<ArchivedRecordBody<'static>>(body) })
}

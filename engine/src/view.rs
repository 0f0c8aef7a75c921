//! Zero-copy views of record envelopes that already passed validation. This
//! is one of the two modules allowed to use `unsafe` (the other is `mmap`):
//! it skips rkyv's structural check for envelopes this process has already
//! checked or written itself. Its one function is `unsafe`: callers promise
//! the bytes passed the frame's envelope checksum and, once in this process,
//! `record::validate_body`. (The payload of a format 2 frame lies outside
//! the envelope's archive; it is plain bytes, checked by its own checksum
//! before it is handed out.)

use crate::record::{ArchivedRecordBody, FrameError};

/// Views a record envelope (the archive `record::checked_envelope` returns)
/// without rkyv's structural check.
///
/// # Safety
///
/// `body` must be byte-for-byte a body that, in this process, was either
/// written by the writer through `record::encode_frame_slot` or passed
/// `record::validate_body` (rkyv bytecheck: every relative pointer in range,
/// strings UTF-8, options well formed), and whose frame's envelope checksum
/// (which covers every byte of the archive) was verified
/// again since it was last possibly changed (segment files are never
/// rewritten while mapped, so a checksum verified just before the call
/// proves the bytes are the validated ones; a writer in another process
/// only appends past the durable end a read-only store follows, and a
/// repair, which rewrites, never runs beside a reader: see `mmap`).
/// `segment::Segment::frame_at` and `segment::Segment::trusted_envelope` are
/// the only callers; they uphold this with `Check::Trusted`.
#[inline]
pub(crate) unsafe fn trusted_body(body: &[u8]) -> Result<&ArchivedRecordBody<'static>, FrameError> {
    let need = std::mem::size_of::<ArchivedRecordBody<'static>>();
    let align = std::mem::align_of::<ArchivedRecordBody<'static>>();
    if body.len() < need || !(body.as_ptr() as usize).is_multiple_of(align) {
        return Err(FrameError::Invalid("record body too short or misaligned".into()));
    }
    // SAFETY: `access_unchecked` requires that `body` holds a valid archive of
    // `ArchivedRecordBody` whose root sits at the end. The caller's contract
    // (see `# Safety`) is that these exact bytes were produced by the writer's
    // encoder or passed rkyv's bytecheck in this process, and their checksum
    // was verified again just before this call. Length and alignment were
    // checked above, so even a broken promise cannot read out of bounds of
    // the root itself.
    Ok(unsafe { rkyv::access_unchecked::<ArchivedRecordBody<'static>>(body) })
}

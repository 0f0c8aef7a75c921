//! Little-endian fixed-width fields: the only way the on-disk formats
//! (segment header, record frame, index checkpoint, and the snapshot file
//! header, frame, `.sidx` checkpoint and `.zdict` dictionary) turn integers
//! into bytes and back. Readers take bytes a file may have supplied,
//! so they return `None` past the end instead of panicking; writers only ever
//! see buffers this crate sized itself. Never host-endian, never `usize`.

/// The little-endian `u32` at `at`, or `None` if `b` is too short.
pub(crate) fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    bytes.try_into().ok().map(u32::from_le_bytes)
}

/// The little-endian `u64` at `at`, or `None` if `b` is too short.
pub(crate) fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    let bytes = b.get(at..at.checked_add(8)?)?;
    bytes.try_into().ok().map(u64::from_le_bytes)
}

/// The little-endian `u32` at the constant offset `at` of a fixed-size header
/// (`at + 4 <= N` holds for every offset the formats name; checked in debug builds).
pub(crate) fn fixed_u32<const N: usize>(h: &[u8; N], at: usize) -> u32 {
    debug_assert!(at + 4 <= N, "u32 field at {at} outside a {N}-byte header");
    le_u32(h, at).unwrap_or_default()
}

/// The little-endian `u64` at the constant offset `at` of a fixed-size header.
pub(crate) fn fixed_u64<const N: usize>(h: &[u8; N], at: usize) -> u64 {
    debug_assert!(at + 8 <= N, "u64 field at {at} outside a {N}-byte header");
    le_u64(h, at).unwrap_or_default()
}

/// Writes `v` little-endian at `at` of a buffer the caller sized.
pub(crate) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    debug_assert!(at + 4 <= b.len(), "u32 field at {at} outside a {}-byte buffer", b.len());
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes `v` little-endian at `at` of a buffer the caller sized.
pub(crate) fn put_u64(b: &mut [u8], at: usize, v: u64) {
    debug_assert!(at + 8 <= b.len(), "u64 field at {at} outside a {}-byte buffer", b.len());
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_round_trip_and_refuse_short_slices() {
        let mut b = [0u8; 12];
        put_u32(&mut b, 0, 0xDEAD_BEEF);
        put_u64(&mut b, 4, u64::MAX - 1);
        assert_eq!(le_u32(&b, 0), Some(0xDEAD_BEEF));
        assert_eq!(le_u64(&b, 4), Some(u64::MAX - 1));
        assert_eq!(le_u32(&b, 9), None);
        assert_eq!(le_u64(&b, 5), None);
        assert_eq!(le_u32(&b, usize::MAX - 1), None);
    }
}

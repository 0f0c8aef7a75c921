//! Deterministic randomness for the tests: seeded streams (`rand`'s
//! `StdRng`), incompressible filler bytes, and seeds derived from names. The
//! same inputs give the same bytes in every process of one build, so a
//! child process and its checker, or a store and its model, agree without
//! sharing state. Nothing here draws from the clock or the OS: a test that
//! wants a fresh seed draws one itself and prints it, so the run can be
//! replayed.
//!
//! `StdRng`'s algorithm is fixed within a `rand` release series (Cargo.lock
//! pins it). The reference store of the `segment_open` fuzz target is built
//! from these streams, so after a `rand` upgrade that changes them,
//! regenerate the seed corpus (fuzz/README.md).

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// The random stream determined by `words` (at most four; missing words
/// count as zero): equal words give equal streams.
pub fn rng(words: &[u64]) -> StdRng {
    assert!(words.len() <= 4, "a seed holds at most four words, not {}", words.len());
    let mut seed = [0u8; 32];
    for (chunk, w) in seed.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    StdRng::from_seed(seed)
}

/// `len` incompressible bytes determined by `words` (see [`rng`]).
pub fn noise(words: &[u64], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    rng(words).fill_bytes(&mut out);
    out
}

/// A seed word derived from a name (its CRC32), to seed per-name streams.
pub fn name_seed(name: &str) -> u64 {
    u64::from(crc32fast::hash(name.as_bytes()))
}

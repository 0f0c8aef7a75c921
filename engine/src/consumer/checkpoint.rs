//! A durable consumer's checkpoint file, `consumers/<name>.checkpoint`: the
//! next position the consumer has not handled yet (every position below it
//! is handled), in two alternating slots so that a write torn by a crash
//! leaves the previous checkpoint readable. It owns this byte layout and its
//! writes; it never decides when to commit (module `consumer`).
//!
//! Layout: two slots of [`SLOT_BYTES`], at offsets 0 and [`SLOT_STRIDE`]
//! (different disk sectors), each little-endian:
//!
//! | offset | field |
//! |---|---|
//! | 0 | magic `FLCP` |
//! | 4 | format version ([`CHECKPOINT_VERSION`]) |
//! | 8 | sequence (the slot with the higher one is current) |
//! | 16 | next position |
//! | 24 | committed at, unix nanoseconds |
//! | 32 | CRC32 of bytes 0..32 |
//!
//! Commit `n` writes slot `n % 2`. A slot that fails its checksum is a write
//! the crash tore: the other slot holds the commit before it. Both slots bad,
//! or an unknown version, is [`Error::Corrupt`] / [`Error::UnsupportedFormat`]
//! naming the file: never a silent reset to the start.

use std::fs::{File, OpenOptions};

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::le::{fixed_u32, fixed_u64, put_u32, put_u64};

/// Magic at the start of each slot.
const MAGIC: &[u8; 4] = b"FLCP";
/// The checkpoint format this build writes and reads.
pub(crate) const CHECKPOINT_VERSION: u32 = 1;
/// Bytes of one slot.
const SLOT_BYTES: usize = 36;
/// Distance between the slots: a torn sector holds only one of them.
const SLOT_STRIDE: u64 = 512;
const OFF_VERSION: usize = 4;
const OFF_SEQUENCE: usize = 8;
const OFF_NEXT: usize = 16;
const OFF_AT: usize = 24;
const OFF_CRC: usize = 32;
const _: () = assert!(OFF_CRC + 4 == SLOT_BYTES && SLOT_BYTES as u64 <= SLOT_STRIDE);

/// A checkpoint as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored {
    /// The next position to handle.
    pub next: u64,
    /// When it was committed, unix nanoseconds.
    pub at: i64,
    sequence: u64,
}

/// An open checkpoint file, for the consumer that holds its lock.
pub(crate) struct CheckpointFile {
    file: File,
    path: PathBuf,
    last: Stored,
}

impl CheckpointFile {
    /// Creates the file `dir/name` with `next` as its first checkpoint,
    /// crash-safely (it appears whole or not at all), and opens it.
    pub(crate) fn create(dir: &Path, name: &str, next: u64) -> Result<CheckpointFile> {
        let first = Stored { next, at: crate::event::now_nanos(), sequence: 1 };
        let mut image = vec![0u8; 2 * SLOT_STRIDE as usize];
        let at = (first.sequence % 2 * SLOT_STRIDE) as usize;
        image[at..at + SLOT_BYTES].copy_from_slice(&encode(&first));
        let path = crate::durable::write_file(dir, name, &[&image], "create consumer checkpoint")?;
        CheckpointFile::open(&path)
    }

    /// Opens an existing checkpoint file and reads its current checkpoint.
    pub(crate) fn open(path: &Path) -> Result<CheckpointFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io("open consumer checkpoint", path, e))?;
        let last = read_file(&file, path)?;
        Ok(CheckpointFile { file, path: path.to_path_buf(), last })
    }

    /// The current checkpoint.
    pub(crate) fn current(&self) -> Stored {
        self.last
    }

    /// Writes `next` into the older slot; with `sync`, `fdatasync`s it before
    /// returning. Without, a kill loses nothing (the page cache survives) and
    /// a power cut at worst brings back an earlier checkpoint.
    pub(crate) fn store(&mut self, next: u64, sync: bool) -> Result<()> {
        let sequence = self.last.sequence.checked_add(1).ok_or_else(|| {
            Error::corrupt(&self.path, 0, "consumer checkpoint sequence is exhausted (a crafted file?)")
        })?;
        let stored = Stored { next, at: crate::event::now_nanos(), sequence };
        let slot = encode(&stored);
        let at = (stored.sequence % 2) * SLOT_STRIDE;
        self.file.write_all_at(&slot, at).map_err(|e| Error::io("write consumer checkpoint", &self.path, e))?;
        if sync {
            self.sync()?;
        }
        self.last = stored;
        Ok(())
    }

    /// Makes every checkpoint written so far durable.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io("fsync consumer checkpoint", &self.path, e))
    }
}

/// Reads the current checkpoint of the file at `path` without opening it
/// for writing (listing consumers, possibly while their owner commits).
pub(crate) fn read(path: &Path) -> Result<Stored> {
    let file = File::open(path).map_err(|e| Error::io("open consumer checkpoint", path, e))?;
    read_file(&file, path)
}

fn read_file(file: &File, path: &Path) -> Result<Stored> {
    let mut slots = [[0u8; SLOT_BYTES]; 2];
    let mut found = [None, None];
    let mut problem = None;
    for (i, slot) in slots.iter_mut().enumerate() {
        let at = i as u64 * SLOT_STRIDE;
        match file.read_exact_at(slot, at) {
            Ok(()) => match decode(slot) {
                Ok(s) => found[i] = Some(s),
                Err(Bad::Version(v)) => {
                    return Err(Error::UnsupportedFormat {
                        path: path.to_path_buf(),
                        found: v,
                        supported: CHECKPOINT_VERSION,
                    })
                }
                Err(Bad::Corrupt(why)) => problem = Some((at, why)),
            },
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                problem = Some((at, "file ends inside the slot"))
            }
            Err(e) => return Err(Error::io("read consumer checkpoint", path, e)),
        }
    }
    match found {
        [Some(a), Some(b)] => Ok(if a.sequence > b.sequence { a } else { b }),
        [Some(s), None] | [None, Some(s)] => Ok(s),
        [None, None] => {
            let (offset, why) = problem.unwrap_or((0, "no valid slot"));
            Err(Error::corrupt(path, offset, format!("consumer checkpoint: {why} and the other slot is bad too")))
        }
    }
}

/// Why a slot was refused.
enum Bad {
    Version(u32),
    Corrupt(&'static str),
}

fn encode(s: &Stored) -> [u8; SLOT_BYTES] {
    let mut b = [0u8; SLOT_BYTES];
    b[..4].copy_from_slice(MAGIC);
    put_u32(&mut b, OFF_VERSION, CHECKPOINT_VERSION);
    put_u64(&mut b, OFF_SEQUENCE, s.sequence);
    put_u64(&mut b, OFF_NEXT, s.next);
    put_u64(&mut b, OFF_AT, s.at as u64);
    let crc = crc32fast::hash(&b[..OFF_CRC]);
    put_u32(&mut b, OFF_CRC, crc);
    b
}

fn decode(b: &[u8; SLOT_BYTES]) -> std::result::Result<Stored, Bad> {
    if &b[..4] != MAGIC {
        return Err(Bad::Corrupt(if b.iter().all(|x| *x == 0) { "slot is empty" } else { "bad magic" }));
    }
    if crc32fast::hash(&b[..OFF_CRC]) != fixed_u32(b, OFF_CRC) {
        return Err(Bad::Corrupt("checksum mismatch"));
    }
    let version = fixed_u32(b, OFF_VERSION);
    if version != CHECKPOINT_VERSION {
        return Err(Bad::Version(version));
    }
    Ok(Stored { sequence: fixed_u64(b, OFF_SEQUENCE), next: fixed_u64(b, OFF_NEXT), at: fixed_u64(b, OFF_AT) as i64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternating_slots_survive_a_torn_write_of_either() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.checkpoint");
        let mut cp = CheckpointFile::create(dir.path(), "c.checkpoint", 5).unwrap();
        cp.store(9, true).unwrap();
        cp.store(12, true).unwrap();
        assert_eq!(read(&path).unwrap().next, 12);
        // Tear the newest slot (sequence 3 lives in slot 1): the one before it remains.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xFF; 3], SLOT_STRIDE + OFF_NEXT as u64).unwrap();
        assert_eq!(read(&path).unwrap().next, 9);
        let mut cp = CheckpointFile::open(&path).unwrap();
        cp.store(20, true).unwrap();
        assert_eq!(read(&path).unwrap().next, 20);
    }

    #[test]
    fn every_single_byte_flip_is_caught_or_falls_back_never_invents_a_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.checkpoint");
        let mut cp = CheckpointFile::create(dir.path(), "c.checkpoint", 100).unwrap();
        cp.store(200, true).unwrap();
        let pristine = std::fs::read(&path).unwrap();
        for at in 0..pristine.len() {
            let mut bytes = pristine.clone();
            bytes[at] ^= 0x5A;
            std::fs::write(&path, &bytes).unwrap();
            match read(&path) {
                Ok(s) => assert!(s.next == 100 || s.next == 200, "byte {at}: {s:?}"),
                Err(Error::Corrupt { .. } | Error::UnsupportedFormat { .. }) => {}
                Err(e) => panic!("byte {at}: {e}"),
            }
        }
    }

    #[test]
    fn both_slots_bad_or_a_short_file_is_corrupt_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.checkpoint");
        for contents in [&b""[..], &b"FLCP"[..], &[0u8; 1024][..], &[7u8; 1024][..]] {
            std::fs::write(&path, contents).unwrap();
            match read(&path) {
                Err(Error::Corrupt { path: p, .. }) => assert_eq!(p, path),
                other => panic!("{contents:?}: {other:?}"),
            }
        }
    }
}

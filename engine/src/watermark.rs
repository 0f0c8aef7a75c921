//! The `WATERMARK` file: how a writer process tells read-only stores in other
//! processes how far the log is durable. It owns the file's 64-byte layout,
//! the writer's overwrite ([`WatermarkFile::publish`], one `pwrite`, no
//! fsync) and the readers' read ([`read`], which retries a torn read).
//!
//! It must never be trusted beyond the live writer's word: it is not synced,
//! so after a machine crash it may be stale or missing, and readers use it
//! only while a writer holds the store (or to follow one that may come). A
//! published end only ever covers bytes that were `fdatasync`ed, and the
//! writer never rewrites a byte below it, so a stale watermark is still a
//! safe (short) view. It never reads or writes segments.
//!
//! Layout (little-endian):
//! ```text
//! offset size field
//!      0    8 magic            b"FLOGWMK\x1a"
//!      8    4 format_version   1
//!     12    4 writer_pid       process id of the writer that published it
//!     16    8 generation       changes at every read-write open (open time, unix nanos)
//!     24    8 durable_end      one past the last durable position
//!     32    8 segment_first    first position of the writer's active segment
//!     40    8 end_offset       byte offset in that segment where the durable log ends
//!     48    8 published_at     unix nanos of this publish
//!     56    4 reserved         0
//!     60    4 crc32            of bytes 0..60
//! ```

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::le::{fixed_u32, fixed_u64, put_u32, put_u64};

/// Name of the watermark file in the store directory.
pub const WATERMARK_NAME: &str = "WATERMARK";
/// Magic number of the watermark file.
const MAGIC: [u8; 8] = *b"FLOGWMK\x1a";
/// The watermark format version this build writes and reads.
pub const WATERMARK_VERSION: u32 = 1;
/// Bytes of the watermark record (the whole file).
pub const WATERMARK_BYTES: usize = 64;

// Field offsets, each derived from the one before (see the module doc).
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + 8;
const PID_AT: usize = VERSION_AT + 4;
const GENERATION_AT: usize = PID_AT + 4;
const DURABLE_END_AT: usize = GENERATION_AT + 8;
const SEGMENT_FIRST_AT: usize = DURABLE_END_AT + 8;
const END_OFFSET_AT: usize = SEGMENT_FIRST_AT + 8;
const PUBLISHED_AT_AT: usize = END_OFFSET_AT + 8;
const RESERVED_AT: usize = PUBLISHED_AT_AT + 8;
const CRC_AT: usize = RESERVED_AT + 4;

const _: () = assert!(CRC_AT + 4 == WATERMARK_BYTES);
// One record lies inside one 4 KiB page, so the kernel copies it in one piece
// in the common case; a torn read is still caught by the checksum.
const _: () = assert!(WATERMARK_BYTES <= 4096);

/// How many times [`read`] re-reads a record that fails its checksum (a read
/// that raced the writer's overwrite) before calling it corrupt.
const TORN_RETRIES: u32 = 50;
/// Pause between those re-reads.
const TORN_RETRY_PAUSE: Duration = Duration::from_micros(200);

/// What a writer published: the log is durable up to `durable_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Watermark {
    /// The writer's process id.
    pub writer_pid: u32,
    /// Changes at every read-write open.
    pub generation: u64,
    /// One past the last durable position.
    pub durable_end: u64,
    /// First position of the writer's active segment.
    pub segment_first: u64,
    /// Offset in that segment where the durable log ends.
    pub end_offset: u64,
    /// When it was published, unix nanos.
    pub published_at: i64,
}

impl Watermark {
    /// The 64-byte record.
    pub(crate) fn encode(&self) -> [u8; WATERMARK_BYTES] {
        let mut b = [0u8; WATERMARK_BYTES];
        b[MAGIC_AT..VERSION_AT].copy_from_slice(&MAGIC);
        put_u32(&mut b, VERSION_AT, WATERMARK_VERSION);
        put_u32(&mut b, PID_AT, self.writer_pid);
        put_u64(&mut b, GENERATION_AT, self.generation);
        put_u64(&mut b, DURABLE_END_AT, self.durable_end);
        put_u64(&mut b, SEGMENT_FIRST_AT, self.segment_first);
        put_u64(&mut b, END_OFFSET_AT, self.end_offset);
        put_u64(&mut b, PUBLISHED_AT_AT, self.published_at as u64);
        let crc = crc32fast::hash(&b[..CRC_AT]);
        put_u32(&mut b, CRC_AT, crc);
        b
    }

    /// Decodes a record read from `path`. `Ok(None)`: the checksum (or the
    /// length) is wrong, which a read racing the writer can produce: read again.
    fn decode(path: &Path, bytes: &[u8]) -> Result<Option<Watermark>> {
        let Ok(b) = <&[u8; WATERMARK_BYTES]>::try_from(bytes) else { return Ok(None) };
        if crc32fast::hash(&b[..CRC_AT]) != fixed_u32(b, CRC_AT) {
            return Ok(None);
        }
        if b[MAGIC_AT..VERSION_AT] != MAGIC {
            return Err(Error::corrupt(path, 0, "bad watermark magic (not a factlog WATERMARK file)"));
        }
        let version = fixed_u32(b, VERSION_AT);
        if version != WATERMARK_VERSION {
            return Err(Error::UnsupportedFormat {
                path: path.to_path_buf(),
                found: version,
                supported: WATERMARK_VERSION,
            });
        }
        let w = Watermark {
            writer_pid: fixed_u32(b, PID_AT),
            generation: fixed_u64(b, GENERATION_AT),
            durable_end: fixed_u64(b, DURABLE_END_AT),
            segment_first: fixed_u64(b, SEGMENT_FIRST_AT),
            end_offset: fixed_u64(b, END_OFFSET_AT),
            published_at: fixed_u64(b, PUBLISHED_AT_AT) as i64,
        };
        if w.segment_first > w.durable_end || w.end_offset < crate::segment::HEADER_BYTES {
            return Err(Error::corrupt(
                path,
                0,
                "watermark fields disagree (segment after the end, or offset in the header)",
            ));
        }
        Ok(Some(w))
    }
}

/// The writer's handle on the watermark file.
pub(crate) struct WatermarkFile {
    file: File,
    path: PathBuf,
    pid: u32,
    generation: u64,
}

impl WatermarkFile {
    /// Opens (creating) the watermark file of the store in `dir` for a writer
    /// whose open is `generation`. Not synced, nor is the directory: the file
    /// serves live followers only, and each writer republishes at open.
    pub(crate) fn open(dir: &Path, generation: u64) -> Result<WatermarkFile> {
        let path = dir.join(WATERMARK_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open watermark file", &path, e))?;
        Ok(WatermarkFile { file, path, pid: std::process::id(), generation })
    }

    /// Overwrites the record: the log is durable up to `durable_end`, which
    /// ends at `end_offset` of the segment starting at `segment_first`. One
    /// `pwrite`, no fsync. The caller has made every byte below that durable.
    pub(crate) fn publish(&self, durable_end: u64, segment_first: u64, end_offset: u64) -> Result<()> {
        let w = Watermark {
            writer_pid: self.pid,
            generation: self.generation,
            durable_end,
            segment_first,
            end_offset,
            published_at: crate::event::now_nanos(),
        };
        let bytes = w.encode();
        debug_assert!(matches!(Watermark::decode(&self.path, &bytes), Ok(Some(d)) if d == w), "a record reads back");
        self.file.write_all_at(&bytes, 0).map_err(|e| Error::io("write watermark", &self.path, e))
    }
}

/// A reader's handle on the watermark file: kept open, so each look is one `pread`.
pub(crate) struct WatermarkReader {
    path: PathBuf,
    file: Option<File>,
}

impl WatermarkReader {
    /// A reader of the watermark of the store in `dir` (the file may not exist yet).
    pub(crate) fn new(dir: &Path) -> WatermarkReader {
        WatermarkReader { path: dir.join(WATERMARK_NAME), file: None }
    }

    /// The raw record as it is now (`None`: no file, or a short one), for
    /// telling whether anything was published between two looks.
    pub(crate) fn raw(&mut self) -> Result<Option<[u8; WATERMARK_BYTES]>> {
        let Some(file) = self.file()? else { return Ok(None) };
        let mut buf = [0u8; WATERMARK_BYTES];
        let mut got = 0;
        while got < buf.len() {
            let Some(rest) = buf.get_mut(got..) else { break };
            match file.read_at(rest, got as u64) {
                Ok(0) => return Ok(None),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read watermark", &self.path, e)),
            }
        }
        Ok(Some(buf))
    }

    /// The published watermark; `Ok(None)` if none was ever published. A
    /// record that fails its checksum is read again (it may have raced the
    /// writer's overwrite) and, if it keeps failing, is [`Error::Corrupt`];
    /// an unknown version is [`Error::UnsupportedFormat`].
    pub(crate) fn read(&mut self) -> Result<Option<Watermark>> {
        for _ in 0..TORN_RETRIES {
            let Some(raw) = self.raw()? else { return Ok(None) };
            if let Some(w) = Watermark::decode(&self.path, &raw)? {
                return Ok(Some(w));
            }
            std::thread::sleep(TORN_RETRY_PAUSE);
        }
        Err(Error::corrupt(&self.path, 0, "watermark checksum mismatch (read again and again)"))
    }

    fn file(&mut self) -> Result<Option<&File>> {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(f) => self.file = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io("open watermark file", &self.path, e)),
            }
        }
        Ok(self.file.as_ref())
    }
}

/// Removes the watermark file of the store in `dir` (a repair, before it
/// cuts the log below what the old record may claim). Missing is fine.
pub(crate) fn remove(dir: &Path) -> Result<()> {
    let path = dir.join(WATERMARK_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove watermark file", &path, e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Watermark {
        Watermark {
            writer_pid: 4242,
            generation: 7,
            durable_end: 1000,
            segment_first: 900,
            end_offset: 8192,
            published_at: 1_700_000_000,
        }
    }

    #[test]
    fn a_record_round_trips_and_every_flipped_bit_is_caught() {
        let p = Path::new("WATERMARK");
        let bytes = sample().encode();
        assert_eq!(Watermark::decode(p, &bytes).unwrap(), Some(sample()));
        for bit in 0..WATERMARK_BYTES * 8 {
            let mut b = bytes;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(matches!(Watermark::decode(p, &b), Ok(None)), "bit {bit}");
        }
        assert!(matches!(Watermark::decode(p, &bytes[..40]), Ok(None)));
    }

    #[test]
    fn an_unknown_version_or_magic_is_a_typed_error_naming_the_file() {
        let p = Path::new("/s/WATERMARK");
        let mut b = sample().encode();
        put_u32(&mut b, VERSION_AT, 9);
        let crc = crc32fast::hash(&b[..CRC_AT]);
        put_u32(&mut b, CRC_AT, crc);
        match Watermark::decode(p, &b) {
            Err(Error::UnsupportedFormat { path, found: 9, supported: 1 }) => assert_eq!(path, p),
            other => panic!("{other:?}"),
        }
        let mut b = sample().encode();
        b[0] = b'X';
        let crc = crc32fast::hash(&b[..CRC_AT]);
        put_u32(&mut b, CRC_AT, crc);
        assert!(matches!(Watermark::decode(p, &b), Err(Error::Corrupt { .. })));
    }

    /// The writer-side cost of a publish next to the `fdatasync` it follows
    /// (README, "Read-only opens beside a writer"):
    /// `cargo test --release -p factlog --lib publish_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn publish_cost() {
        use std::time::Instant;
        // Beside the sources, not in /tmp (often tmpfs, where fdatasync costs nothing).
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let file = WatermarkFile::open(dir.path(), 1).unwrap();
        const N: u64 = 200_000;
        let started = Instant::now();
        for i in 0..N {
            file.publish(i + 1, 0, 64 + i).unwrap();
        }
        let publish_ns = started.elapsed().as_nanos() as f64 / N as f64;
        let data = File::create(dir.path().join("data")).unwrap();
        const SYNCS: u64 = 200;
        let started = Instant::now();
        for i in 0..SYNCS {
            data.write_all_at(&[1u8; 512], i * 512).unwrap();
            data.sync_data().unwrap();
        }
        let sync_ns = started.elapsed().as_nanos() as f64 / SYNCS as f64;
        eprintln!("watermark publish: {publish_ns:.0} ns; 512-byte write + fdatasync: {sync_ns:.0} ns");
    }

    #[test]
    fn publish_then_read_and_missing_or_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut reader = WatermarkReader::new(dir.path());
        assert_eq!(reader.read().unwrap(), None, "no file yet");
        let file = WatermarkFile::open(dir.path(), 99).unwrap();
        file.publish(10, 0, 640).unwrap();
        let w = reader.read().unwrap().unwrap();
        assert_eq!((w.durable_end, w.segment_first, w.end_offset, w.generation), (10, 0, 640, 99));
        assert_eq!(w.writer_pid, std::process::id());
        file.publish(12, 0, 800).unwrap();
        assert_eq!(reader.read().unwrap().unwrap().durable_end, 12, "the open reader sees the overwrite");
        // Garbage that never passes its checksum: corrupt after the retries.
        std::fs::write(dir.path().join(WATERMARK_NAME), [7u8; WATERMARK_BYTES]).unwrap();
        let mut fresh = WatermarkReader::new(dir.path());
        assert!(matches!(fresh.read(), Err(Error::Corrupt { .. })));
        remove(dir.path()).unwrap();
        remove(dir.path()).unwrap();
        assert_eq!(WatermarkReader::new(dir.path()).read().unwrap(), None);
    }
}

//! Trained zstd dictionaries for snapshots: their file format
//! (`snapshots/<id>.zdict`), training, durable writing and the prepared
//! compressors and decompressors built from them. A dictionary applies to the
//! aggregates whose id starts with its prefix (the longest prefix wins, then
//! the newest dictionary). A dictionary is never changed once installed:
//! every snapshot compressed with one names it by id. It is removed only by
//! `Snapshots::forget`, which first *retires* it (later saves stop using it,
//! while it stays in memory for readers of files being rewritten), then
//! rewrites every record that names it, and only then removes its file
//! ([`remove`]). This module never touches snapshot or event files, and never
//! takes a store lock: the snapshot store decides when a dictionary is
//! written, when it becomes visible and when it goes.
//!
//! File layout:
//! ```text
//!  0  8 magic "FLOGDICT"         8  4 format version (1)
//! 12  4 id (1, 2, ...)          16  4 prefix length
//! 20  4 dictionary length       24  8 created at, unix nanos
//! 32 28 reserved (0)            60  4 CRC32 of 0..60 ++ prefix ++ dictionary
//! 64 .. prefix (UTF-8), then the zstd dictionary bytes
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use zstd::dict::{DecoderDictionary, EncoderDictionary};

use super::error::SnapshotFormatError;
use crate::durable;
use crate::error::{Error, Result};
use crate::le::{le_u32, put_u32, put_u64};

const MAGIC: [u8; 8] = *b"FLOGDICT";
const VERSION: u32 = 1;
/// Suffix of a dictionary file.
pub(crate) const DICT_SUFFIX: &str = ".zdict";

const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + MAGIC.len();
const ID_AT: usize = VERSION_AT + 4;
const PREFIX_LEN_AT: usize = ID_AT + 4;
const DICT_LEN_AT: usize = PREFIX_LEN_AT + 4;
const CREATED_AT: usize = DICT_LEN_AT + 4;
const RESERVED_AT: usize = CREATED_AT + 8;
const RESERVED_BYTES: usize = 28;
const CRC_AT: usize = RESERVED_AT + RESERVED_BYTES;
const HEADER_BYTES: usize = CRC_AT + 4;
const _: () = assert!(HEADER_BYTES == 64, "the dictionary header is 64 bytes on disk");
const _: () = assert!(CRC_AT.is_multiple_of(4) && CREATED_AT.is_multiple_of(8), "header fields are naturally aligned");

/// Smallest dictionary size `train` accepts, bytes.
pub const DICT_BYTES_MIN: usize = 256;
/// Largest dictionary size `train` accepts, bytes.
pub const DICT_BYTES_MAX: usize = 1 << 20;
const _: () = assert!(DICT_BYTES_MIN < DICT_BYTES_MAX && DICT_BYTES_MAX <= u32::MAX as usize);

/// What [`crate::Store::train_snapshot_dictionary`] installed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DictionaryInfo {
    /// The id snapshots compressed with it carry (1, 2, …).
    pub id: u32,
    /// The aggregate id prefix it applies to.
    pub prefix: String,
    /// Size of the trained dictionary, bytes.
    pub bytes: usize,
}

/// One installed dictionary, prepared for both directions.
pub(crate) struct Dictionary {
    pub prefix: String,
    encoder: EncoderDictionary<'static>,
    decoder: DecoderDictionary<'static>,
}

/// Every dictionary of a store, by id.
#[derive(Default)]
pub(crate) struct Dictionaries {
    /// The installed dictionaries, which saves use.
    by_id: BTreeMap<u32, Arc<Dictionary>>,
    /// Dictionaries retired by `Snapshots::forget` since the store opened:
    /// no save uses them, but a reader holding the handle of a file rewritten
    /// since may still meet a frame naming one. Memory only: after a reopen
    /// no record names them (their files go only after every such record
    /// was rewritten). `true` once the file is removed.
    retired: BTreeMap<u32, (Arc<Dictionary>, bool)>,
}

fn file_name(id: u32) -> String {
    format!("{id:010}{DICT_SUFFIX}")
}

fn checksum(header: &[u8], rest: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&header[..CRC_AT]);
    h.update(rest);
    h.finalize()
}

/// Parses a dictionary file: `(id, prefix, dictionary bytes)`, or why not.
fn decode(bytes: &[u8]) -> std::result::Result<(u32, String, &[u8]), SnapshotFormatError> {
    let h = bytes.get(..HEADER_BYTES).ok_or(SnapshotFormatError::DictionaryShort)?;
    if h[MAGIC_AT..VERSION_AT] != MAGIC {
        return Err(SnapshotFormatError::DictionaryMagic);
    }
    let field = |at| le_u32(h, at).ok_or(SnapshotFormatError::DictionaryShort);
    let found = field(VERSION_AT)?;
    if found != VERSION {
        return Err(SnapshotFormatError::DictionaryVersion { found, supported: VERSION });
    }
    let (id, prefix_len, dict_len) = (field(ID_AT)?, field(PREFIX_LEN_AT)? as usize, field(DICT_LEN_AT)? as usize);
    let fits = HEADER_BYTES.checked_add(prefix_len).and_then(|n| n.checked_add(dict_len)) == Some(bytes.len());
    if !fits || id == 0 || h[RESERVED_AT..CRC_AT].iter().any(|b| *b != 0) {
        return Err(SnapshotFormatError::DictionaryFields);
    }
    let rest = &bytes[HEADER_BYTES..];
    if checksum(h, rest) != field(CRC_AT)? {
        return Err(SnapshotFormatError::DictionaryChecksum);
    }
    let (prefix, dict) = rest.split_at(prefix_len);
    let prefix = std::str::from_utf8(prefix).map_err(|_| SnapshotFormatError::DictionaryPrefixUtf8)?;
    debug_assert_eq!(dict.len(), dict_len, "a decoded dictionary has its declared length");
    Ok((id, prefix.to_string(), dict))
}

fn encode(id: u32, prefix: &str, dict: &[u8]) -> Vec<u8> {
    debug_assert!(id != 0 && u32::try_from(prefix.len()).is_ok() && u32::try_from(dict.len()).is_ok());
    let mut f = vec![0u8; HEADER_BYTES];
    f[MAGIC_AT..VERSION_AT].copy_from_slice(&MAGIC);
    put_u32(&mut f, VERSION_AT, VERSION);
    put_u32(&mut f, ID_AT, id);
    put_u32(&mut f, PREFIX_LEN_AT, prefix.len() as u32);
    put_u32(&mut f, DICT_LEN_AT, dict.len() as u32);
    put_u64(&mut f, CREATED_AT, crate::event::now_nanos() as u64);
    f.extend_from_slice(prefix.as_bytes());
    f.extend_from_slice(dict);
    let crc = checksum(&f[..HEADER_BYTES], &f[HEADER_BYTES..]);
    put_u32(&mut f, CRC_AT, crc);
    f
}

impl Dictionaries {
    /// Loads every `*.zdict` file of the snapshot directory `dir`. A damaged
    /// one fails the open: snapshots that name it could not be read.
    pub(crate) fn load(dir: &Path, level: i32) -> Result<Dictionaries> {
        let mut d = Dictionaries::default();
        if !dir.exists() {
            return Ok(d);
        }
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io("list snapshot directory", dir, e))? {
            let path = entry.map_err(|e| Error::io("list snapshot directory", dir, e))?.path();
            let Some(name_id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(DICT_SUFFIX))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let bytes = std::fs::read(&path).map_err(|e| Error::io("read snapshot dictionary", &path, e))?;
            let (id, prefix, dict) = decode(&bytes).map_err(|r| r.at(&path, 0))?;
            if id != name_id {
                let reason = format!("dictionary id {id} does not match its file name");
                return Err(Error::corrupt(&path, ID_AT as u64, reason));
            }
            let prepared = Dictionary::prepare(prefix, dict, level).map_err(|r| r.at(&path, HEADER_BYTES as u64))?;
            d.by_id.insert(id, Arc::new(prepared));
        }
        Ok(d)
    }

    /// The dictionary with this id, retired or not (for decompression).
    pub(crate) fn get(&self, id: u32) -> Option<&Arc<Dictionary>> {
        self.by_id.get(&id).or_else(|| self.retired.get(&id).map(|(d, _)| d))
    }

    /// Retires every installed dictionary whose prefix covers one of
    /// `aggregate_ids` (it may have been trained on their states): later
    /// saves stop using it; [`Dictionaries::get`] still finds it.
    pub(crate) fn retire_covering(&mut self, aggregate_ids: &HashSet<String>) {
        let covering: Vec<u32> = self
            .by_id
            .iter()
            .filter(|(_, d)| aggregate_ids.iter().any(|a| a.starts_with(d.prefix.as_str())))
            .map(|(id, _)| *id)
            .collect();
        for id in covering {
            if let Some(d) = self.by_id.remove(&id) {
                self.retired.insert(id, (d, false));
            }
        }
    }

    /// The retired dictionaries whose files are still on disk: `(id, prefix)`.
    pub(crate) fn pending_removal(&self) -> Vec<(u32, String)> {
        self.retired.iter().filter(|(_, (_, gone))| !gone).map(|(id, (d, _))| (*id, d.prefix.clone())).collect()
    }

    /// Notes that the retired dictionary `id`'s file was removed.
    pub(crate) fn file_removed(&mut self, id: u32) {
        debug_assert!(self.retired.contains_key(&id), "dictionary {id} removed without being retired");
        if let Some((_, gone)) = self.retired.get_mut(&id) {
            *gone = true;
        }
    }

    /// The dictionary a snapshot of `aggregate_id` is compressed with: the
    /// longest matching prefix, the newest of those.
    pub(crate) fn for_aggregate(&self, aggregate_id: &str) -> Option<(u32, &Arc<Dictionary>)> {
        self.by_id
            .iter()
            .filter(|(_, d)| aggregate_id.starts_with(d.prefix.as_str()))
            .max_by_key(|(id, d)| (d.prefix.len(), **id))
            .map(|(id, d)| (*id, d))
    }

    /// Number of installed (not retired) dictionaries.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The id the next installed dictionary gets: above every installed or
    /// retired one, so a frame a reader still holds never names a newer one.
    pub(crate) fn next_id(&self) -> Result<u32> {
        self.by_id
            .keys()
            .next_back()
            .max(self.retired.keys().next_back())
            .map_or(Some(1), |last| last.checked_add(1))
            .ok_or_else(|| Error::InvalidInput("the store has used every dictionary id".into()))
    }

    /// Makes a dictionary that [`persist`] wrote usable by later saves.
    pub(crate) fn insert(&mut self, id: u32, dict: Dictionary) {
        debug_assert!(!self.by_id.contains_key(&id), "dictionary {id} installed twice");
        self.by_id.insert(id, Arc::new(dict));
    }

    /// Trains a dictionary on `samples`: the slow part, run without any lock
    /// held, then given to [`persist`].
    pub(crate) fn train(prefix: &str, samples: &[&[u8]], max_bytes: usize) -> Result<Vec<u8>> {
        if !(DICT_BYTES_MIN..=DICT_BYTES_MAX).contains(&max_bytes) {
            return Err(Error::InvalidInput(format!(
                "dictionary size {max_bytes} is outside {DICT_BYTES_MIN}..={DICT_BYTES_MAX} bytes"
            )));
        }
        if samples.len() < 8 || samples.iter().all(|s| s.is_empty()) {
            return Err(Error::InvalidInput(format!(
                "training a dictionary for prefix {prefix:?} needs at least 8 non-empty samples, got {}",
                samples.len()
            )));
        }
        zstd::dict::from_samples(samples, max_bytes)
            .map_err(|e| Error::InvalidInput(format!("zstd could not train a dictionary for prefix {prefix:?}: {e}")))
    }
}

/// Writes a trained dictionary durably as `id` in the snapshot directory
/// `dir` (after a crash it is either wholly there or absent) and returns it
/// prepared, for [`Dictionaries::insert`]. The caller serializes installs.
pub(crate) fn persist(dir: &Path, id: u32, prefix: &str, dict: &[u8], level: i32) -> Result<Dictionary> {
    // Checked before it is written: a dictionary zstd trained but cannot
    // load must never reach the disk (it would make the store unopenable).
    let prepared = Dictionary::prepare(prefix.to_string(), dict, level)
        .map_err(|r| Error::InvalidInput(format!("trained dictionary for prefix {prefix:?}: {r}")))?;
    durable::write_file(dir, &file_name(id), &[&encode(id, prefix, dict)], "install snapshot dictionary")?;
    Ok(prepared)
}

/// Removes the file of the retired dictionary `id` from the snapshot
/// directory `dir`, durably (directory synced); returns its size (0 if it
/// was already gone). The caller has rewritten every record that named it.
pub(crate) fn remove(dir: &Path, id: u32) -> Result<u64> {
    let path = dir.join(file_name(id));
    let bytes = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("stat retired snapshot dictionary", &path, e)),
    };
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("remove retired snapshot dictionary", &path, e)),
    }
    // IMPORTANT: the removal is durable before `forget` reports it.
    durable::sync_dir(dir)?;
    Ok(bytes)
}

impl Dictionary {
    /// Prepares `dict` for both directions, or says why zstd cannot load it.
    /// zstd's own constructors panic on a dictionary it refuses (a crafted
    /// file with a valid checksum can be one), so it is tried fallibly first.
    fn prepare(prefix: String, dict: &[u8], level: i32) -> std::result::Result<Dictionary, SnapshotFormatError> {
        use zstd::zstd_safe::{CDict, DDict};
        if DDict::try_create(dict).is_none() || CDict::try_create(dict, level).is_none() {
            return Err(SnapshotFormatError::DictionaryUnloadable);
        }
        Ok(Dictionary { prefix, encoder: EncoderDictionary::copy(dict, level), decoder: DecoderDictionary::copy(dict) })
    }

    /// Compresses `data` with this dictionary.
    pub(crate) fn compress(&self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        zstd::bulk::Compressor::with_prepared_dictionary(&self.encoder)?.compress(data)
    }

    /// Decompresses `payload` into at most `capacity` bytes.
    pub(crate) fn decompress(&self, payload: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
        zstd::bulk::Decompressor::with_prepared_dictionary(&self.decoder)?.decompress(payload, capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trips_and_any_damage_is_refused() {
        let f = encode(3, "account-", b"dictionary bytes");
        let (id, prefix, dict) = decode(&f).unwrap();
        assert_eq!((id, prefix.as_str(), dict), (3, "account-", &b"dictionary bytes"[..]));
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 0x10;
            assert!(decode(&g).is_err(), "flip at {i} accepted");
        }
        for cut in 0..f.len() {
            assert!(decode(&f[..cut]).is_err(), "cut at {cut} accepted");
        }
    }

    #[test]
    fn a_dictionary_zstd_cannot_load_is_an_error_not_a_panic() {
        // zstd's dictionary magic followed by entropy tables that do not parse:
        // a crafted (checksum-valid) .zdict file can carry exactly this.
        let mut bad = vec![0x37, 0xA4, 0x30, 0xEC, 1, 0, 0, 0];
        bad.extend(std::iter::repeat_n(0xFF, 200));
        assert!(Dictionary::prepare("acct-".into(), &bad, 1).is_err());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file_name(1)), encode(1, "acct-", &bad)).unwrap();
        match Dictionaries::load(dir.path(), 1) {
            Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("zstd"), "{reason}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("an unloadable dictionary was accepted"),
        }
    }

    #[test]
    fn persist_leaves_the_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        // Bytes without zstd's dictionary magic are a raw-content dictionary.
        let dict = b"{\"balance\":0,\"owner\":\"\"}".repeat(16);
        persist(dir.path(), 1, "acct-", &dict, 1).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(file_name(1))]);
        let loaded = Dictionaries::load(dir.path(), 1).unwrap();
        assert_eq!((loaded.len(), loaded.next_id().unwrap()), (1, 2));
        assert!(loaded.for_aggregate("acct-7").is_some() && loaded.for_aggregate("user-7").is_none());
    }
}

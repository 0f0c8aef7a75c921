//! Trained zstd dictionaries for snapshots: their file format
//! (`snapshots/<id>.zdict`), training, durable installation and the prepared
//! compressors and decompressors built from them. A dictionary applies to the
//! aggregates whose id starts with its prefix (the longest prefix wins, then
//! the newest dictionary). Dictionaries are never removed or changed once
//! installed: every snapshot compressed with one names it by id, so it must
//! stay readable for as long as the store exists. This module never touches
//! snapshot or event files.
//!
//! File layout: a 64-byte header (magic `b"FLOGDICT"`, format version u32,
//! id u32, prefix length u32, dictionary length u32, created at i64, 28
//! reserved zero bytes, CRC32 at 60 of bytes 0..60, the prefix and the
//! dictionary), then the prefix (UTF-8) and the zstd dictionary bytes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zstd::dict::{DecoderDictionary, EncoderDictionary};

use crate::error::{Error, Result};
use crate::segment::sync_dir;
use crate::snapshot::u32_at;

const MAGIC: [u8; 8] = *b"FLOGDICT";
const VERSION: u32 = 1;
const HEADER: usize = 64;
/// Smallest dictionary size `train` accepts, bytes.
pub const DICT_BYTES_MIN: usize = 256;
/// Largest dictionary size `train` accepts, bytes.
pub const DICT_BYTES_MAX: usize = 1 << 20;

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
    by_id: BTreeMap<u32, Arc<Dictionary>>,
}

fn file_name(id: u32) -> String {
    format!("{id:010}.zdict")
}

fn checksum(header: &[u8], rest: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&header[..60]);
    h.update(rest);
    h.finalize()
}

/// Parses a dictionary file: `(id, prefix, dictionary bytes)`, or why not.
fn decode(bytes: &[u8]) -> std::result::Result<(u32, String, &[u8]), String> {
    let h = bytes.get(..HEADER).ok_or("dictionary file shorter than its header")?;
    if h[..8] != MAGIC {
        return Err("not a factlog dictionary file (bad magic)".into());
    }
    if u32_at(h, 8) != VERSION {
        return Err(format!("dictionary format version {} (this build reads {VERSION})", u32_at(h, 8)));
    }
    let (id, prefix_len, dict_len) = (u32_at(h, 12), u32_at(h, 16) as usize, u32_at(h, 20) as usize);
    if HEADER + prefix_len + dict_len != bytes.len() || id == 0 || h[32..60].iter().any(|b| *b != 0) {
        return Err("dictionary header fields inconsistent with the file".into());
    }
    if checksum(h, &bytes[HEADER..]) != u32_at(h, 60) {
        return Err("dictionary checksum mismatch".into());
    }
    let prefix = std::str::from_utf8(&bytes[HEADER..HEADER + prefix_len]).map_err(|_| "prefix not UTF-8")?;
    Ok((id, prefix.to_string(), &bytes[HEADER + prefix_len..]))
}

fn encode(id: u32, prefix: &str, dict: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; HEADER];
    f[..8].copy_from_slice(&MAGIC);
    f[8..12].copy_from_slice(&VERSION.to_le_bytes());
    f[12..16].copy_from_slice(&id.to_le_bytes());
    f[16..20].copy_from_slice(&(prefix.len() as u32).to_le_bytes());
    f[20..24].copy_from_slice(&(dict.len() as u32).to_le_bytes());
    f[24..32].copy_from_slice(&crate::event::now_nanos().to_le_bytes());
    f.extend_from_slice(prefix.as_bytes());
    f.extend_from_slice(dict);
    let crc = checksum(&f[..HEADER], &f[HEADER..]);
    f[60..64].copy_from_slice(&crc.to_le_bytes());
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
                .and_then(|n| n.strip_suffix(".zdict"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let bytes = std::fs::read(&path).map_err(|e| Error::io("read snapshot dictionary", &path, e))?;
            let (id, prefix, dict) = decode(&bytes).map_err(|r| Error::corrupt(&path, 0, r))?;
            if id != name_id {
                return Err(Error::corrupt(&path, 12, format!("dictionary id {id} does not match its file name")));
            }
            let prepared = Dictionary::prepare(prefix, dict, level).map_err(|r| Error::corrupt(&path, 64, r))?;
            d.by_id.insert(id, Arc::new(prepared));
        }
        Ok(d)
    }

    /// The dictionary with this id.
    pub(crate) fn get(&self, id: u32) -> Option<&Arc<Dictionary>> {
        self.by_id.get(&id)
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

    /// Number of dictionaries.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Trains a dictionary on `samples`: the slow part, run without any lock
    /// held, then given to [`Dictionaries::install`].
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

    /// Installs a trained dictionary durably under the next id (written to a
    /// temporary file, synced, renamed, directory synced: after a crash it is
    /// either wholly there or absent).
    pub(crate) fn install(&mut self, dir: &Path, prefix: &str, dict: &[u8], level: i32) -> Result<DictionaryInfo> {
        let id = self
            .by_id
            .keys()
            .next_back()
            .map_or(Some(1), |last| last.checked_add(1))
            .ok_or_else(|| Error::InvalidInput("the store has used every dictionary id".into()))?;
        // Checked before it is written: a dictionary zstd trained but cannot
        // load must never reach the disk (it would make the store unopenable).
        let prepared = Dictionary::prepare(prefix.to_string(), dict, level)
            .map_err(|r| Error::InvalidInput(format!("trained dictionary for prefix {prefix:?}: {r}")))?;
        let path = dir.join(file_name(id));
        let tmp: PathBuf = dir.join(format!("{}.tmp", file_name(id)));
        let bytes = encode(id, prefix, dict);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()
        };
        write().map_err(|e| Error::io("write snapshot dictionary", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("install snapshot dictionary", &path, e))?;
        sync_dir(dir)?;
        self.by_id.insert(id, Arc::new(prepared));
        Ok(DictionaryInfo { id, prefix: prefix.to_string(), bytes: dict.len() })
    }
}

impl Dictionary {
    /// Prepares `dict` for both directions, or says why zstd cannot load it.
    /// zstd's own constructors panic on a dictionary it refuses (a crafted
    /// file with a valid checksum can be one), so it is tried fallibly first.
    fn prepare(prefix: String, dict: &[u8], level: i32) -> std::result::Result<Dictionary, String> {
        use zstd::zstd_safe::{CDict, DDict};
        if DDict::try_create(dict).is_none() || CDict::try_create(dict, level).is_none() {
            return Err("zstd cannot load this dictionary".into());
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
}

//! fjall 2 peer: one keyspace with two partitions, `by_agg` (aggregate id,
//! 0x00, big-endian version → event) and `by_pos` (big-endian global position
//! → event), written together by one atomic `Batch` per append.
//!
//! The event is stored in full in both partitions so that replaying an
//! aggregate and scanning the global log are both plain ordered range scans
//! (fjall's documented access pattern); that doubles what fjall writes, which
//! is the honest price of clustering the data both ways in an LSM tree.
//! Positions and the expected-version check are serialized by one mutex that
//! is held across the batch commit — fjall already holds its journal lock
//! across the commit's fsync, so this costs no concurrency and keeps the
//! visible order equal to the position order. Durable runs commit with
//! `PersistMode::SyncData`, buffered runs with `PersistMode::Buffer`; all
//! other settings are fjall's defaults.

use super::{BenchEngine, Durability, EngineKind, EngineStats, ManyPart, Session};
use crate::event::Ev;
use anyhow::{anyhow, bail, Context, Result};
use fjall::{Config, Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Sequencing state guarded by one mutex.
#[derive(Default)]
struct Sequencer {
    next_position: u64,
    versions: HashMap<String, u64>,
}

struct Shared {
    keyspace: Keyspace,
    by_agg: PartitionHandle,
    by_pos: PartitionHandle,
    persist: PersistMode,
    seq: Mutex<Sequencer>,
}

/// An open fjall store.
pub struct FjallEngine {
    shared: Arc<Shared>,
}

impl FjallEngine {
    /// Creates the keyspace and both partitions in `dir`.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self> {
        let keyspace = Config::new(dir).open().context("fjall: opening keyspace")?;
        let by_agg =
            keyspace.open_partition("by_agg", PartitionCreateOptions::default()).context("fjall: opening by_agg")?;
        let by_pos =
            keyspace.open_partition("by_pos", PartitionCreateOptions::default()).context("fjall: opening by_pos")?;
        let persist = match durability {
            Durability::Sync => PersistMode::SyncData,
            Durability::Buffered => PersistMode::Buffer,
        };
        Ok(FjallEngine {
            shared: Arc::new(Shared { keyspace, by_agg, by_pos, persist, seq: Mutex::new(Sequencer::default()) }),
        })
    }
}

impl BenchEngine for FjallEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Fjall
    }

    fn session(&self) -> Result<Box<dyn Session>> {
        Ok(Box::new(FjallSession {
            shared: Arc::clone(&self.shared),
            key: Vec::with_capacity(32),
            value: Vec::with_capacity(512),
        }))
    }

    fn sync(&self) -> Result<()> {
        self.shared.keyspace.persist(PersistMode::SyncAll).context("fjall: persist")
    }

    fn stats(&self) -> EngineStats {
        EngineStats { used_bytes: Some(self.shared.keyspace.disk_space()), ..EngineStats::default() }
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.sync()?;
        // Dropping the last handle stops fjall's background workers.
        drop(self);
        Ok(())
    }
}

/// One thread's handle (fjall handles are shareable; this only owns buffers).
struct FjallSession {
    shared: Arc<Shared>,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// `agg ++ 0x00 ++ version_be`.
fn agg_key(buf: &mut Vec<u8>, agg: &str, version: u64) {
    buf.clear();
    buf.extend_from_slice(agg.as_bytes());
    buf.push(0);
    buf.extend_from_slice(&version.to_be_bytes());
}

/// Value layout: id(16) ts(8) version(8) agg_len(1) agg type_len(1) type payload.
fn encode(buf: &mut Vec<u8>, agg: &str, version: u64, ev: &Ev) {
    buf.clear();
    buf.extend_from_slice(&ev.id);
    buf.extend_from_slice(&ev.occurred_at.to_le_bytes());
    buf.extend_from_slice(&version.to_le_bytes());
    buf.push(agg.len().min(255) as u8);
    buf.extend_from_slice(&agg.as_bytes()[..agg.len().min(255)]);
    buf.push(ev.event_type.len().min(255) as u8);
    buf.extend_from_slice(&ev.event_type.as_bytes()[..ev.event_type.len().min(255)]);
    buf.extend_from_slice(&ev.payload);
}

/// The payload part of an encoded value.
fn payload_of(value: &[u8]) -> Result<&[u8]> {
    let corrupt = || anyhow!("fjall: malformed stored event");
    let agg_len = *value.get(32).ok_or_else(corrupt)? as usize;
    let type_at = 33 + agg_len;
    let type_len = *value.get(type_at).ok_or_else(corrupt)? as usize;
    value.get(type_at + 1 + type_len..).ok_or_else(corrupt)
}

impl FjallSession {
    /// Checks every part's expected version, then writes all their events
    /// (both partitions) in one atomic `Batch`, under the sequencer lock;
    /// returns each part's new last version.
    fn append_in_one_batch(&mut self, parts: &[ManyPart<'_>]) -> Result<Vec<u64>> {
        let sh = &*self.shared;
        let mut seq = sh.seq.lock().map_err(|_| anyhow!("fjall sequencer poisoned"))?;
        for &(agg, expected, _) in parts {
            let current = seq.versions.get(agg).copied();
            if current != expected {
                bail!("fjall: wrong expected version for {agg}: expected {expected:?}, actual {current:?}");
            }
        }
        let mut batch = sh.keyspace.batch().durability(Some(sh.persist));
        let mut position = seq.next_position;
        let mut last_versions = Vec::with_capacity(parts.len());
        for &(agg, expected, events) in parts {
            let first_version = expected.map_or(0, |v| v + 1);
            for (i, ev) in events.iter().enumerate() {
                let version = first_version + i as u64;
                encode(&mut self.value, agg, version, ev);
                agg_key(&mut self.key, agg, version);
                batch.insert(&sh.by_agg, self.key.as_slice(), self.value.as_slice());
                batch.insert(&sh.by_pos, position.to_be_bytes(), self.value.as_slice());
                position += 1;
            }
            last_versions.push(first_version + (events.len() as u64).saturating_sub(1));
        }
        batch.commit().context("fjall: batch commit")?;
        seq.next_position = position;
        for (&(agg, _, _), &last) in parts.iter().zip(&last_versions) {
            seq.versions.insert(agg.to_owned(), last);
        }
        Ok(last_versions)
    }
}

impl Session for FjallSession {
    fn append(&mut self, agg: &str, expected: Option<u64>, events: &[Ev]) -> Result<u64> {
        let versions = self.append_in_one_batch(&[(agg, expected, events)])?;
        versions.first().copied().ok_or_else(|| anyhow!("fjall: no version for {agg}"))
    }

    fn append_many(&mut self, batches: &[ManyPart<'_>]) -> Result<Vec<u64>> {
        self.append_in_one_batch(batches)
    }

    fn replay(&mut self, agg: &str, visit: &mut dyn FnMut(&[u8])) -> Result<u64> {
        self.key.clear();
        self.key.extend_from_slice(agg.as_bytes());
        self.key.push(0);
        let mut n = 0;
        for kv in self.shared.by_agg.prefix(self.key.as_slice()) {
            let (_, value) = kv.context("fjall: prefix scan")?;
            visit(payload_of(&value)?);
            n += 1;
        }
        Ok(n)
    }

    fn scan(&mut self, visit: &mut dyn FnMut(&[u8])) -> Result<u64> {
        let mut n = 0;
        for value in self.shared.by_pos.values() {
            let value = value.context("fjall: scan")?;
            visit(payload_of(&value)?);
            n += 1;
        }
        Ok(n)
    }

    fn read_from(&mut self, from: u64, visit: &mut dyn FnMut(u64, &[u8])) -> Result<u64> {
        let mut n = 0;
        for kv in self.shared.by_pos.range(from.to_be_bytes()..) {
            let (key, value) = kv.context("fjall: range scan")?;
            let position: [u8; 8] = key.as_ref().try_into().map_err(|_| anyhow!("fjall: malformed position key"))?;
            visit(u64::from_be_bytes(position), payload_of(&value)?);
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventGen;

    #[test]
    fn encode_round_trips_payload() {
        let mut g = EventGen::new(50, 1);
        let ev = g.event();
        let mut buf = Vec::new();
        encode(&mut buf, "agg-000001", 7, &ev);
        assert_eq!(payload_of(&buf).expect("decodes"), &ev.payload[..]);
    }
}

//! What can be wrong with bytes in one of the snapshot formats: one variant
//! per check that the frame, checkpoint and dictionary decoders make, so a
//! caller (or a test) can match on the reason. Decoders know no paths or
//! offsets; the store adds them at its edge with [`SnapshotFormatError::at`],
//! turning the reason into [`Error::Corrupt`] (or [`Error::UnsupportedFormat`]
//! for a file version this build does not read). This module never does I/O.

use std::path::PathBuf;

use crate::error::Error;

/// Why bytes are not a valid snapshot file header, record frame, payload,
/// checkpoint or dictionary file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotFormatError {
    /// The file does not start with the snapshot file magic.
    #[error("not a factlog snapshot file (bad magic)")]
    FileMagic,
    /// The snapshot file has a format version this build does not read.
    #[error("snapshot file format version {found} (this build reads {supported})")]
    FileVersion {
        /// Version in the header.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// The file header's checksum fails or it names another file number.
    #[error("snapshot file header checksum or number mismatch")]
    FileHeader,
    /// Fewer bytes than a frame header, and not all zero.
    #[error("truncated snapshot frame header")]
    FrameTruncated,
    /// The frame does not start with the frame magic.
    #[error("bad snapshot frame magic")]
    FrameMagic,
    /// Body length too small, or reserved header bytes not zero.
    #[error("snapshot frame header invalid")]
    FrameHeader,
    /// The declared body runs past the bytes available.
    #[error("snapshot frame runs past end of file")]
    FramePastEnd,
    /// The frame's CRC32 does not match.
    #[error("snapshot frame checksum mismatch")]
    FrameChecksum,
    /// Reserved body bytes are not zero.
    #[error("snapshot frame reserved bytes not zero")]
    FrameReserved,
    /// An unknown codec, or a dictionary id that does not fit the codec.
    #[error("snapshot frame codec {codec} with dictionary id {dict_id}")]
    FrameCodec {
        /// The codec byte.
        codec: u8,
        /// The dictionary id field.
        dict_id: u32,
    },
    /// Aggregate id and payload lengths do not add up to the body length.
    #[error("snapshot frame lengths inconsistent")]
    FrameLengths,
    /// The aggregate id is not UTF-8.
    #[error("aggregate id not UTF-8")]
    AggregateIdUtf8,
    /// The declared uncompressed size is over the configured limit.
    #[error("snapshot declares {declared} bytes, over the limit of {max}")]
    OverLimit {
        /// Declared uncompressed length.
        declared: u32,
        /// The limit.
        max: u32,
    },
    /// zstd refused the payload.
    #[error("zstd: {0}")]
    Zstd(String),
    /// zstd refused the payload compressed with a trained dictionary.
    #[error("zstd with dictionary: {0}")]
    ZstdDictionary(String),
    /// The payload needs a dictionary the store does not have.
    #[error("snapshot needs dictionary {0}, which the store does not have")]
    MissingDictionary(u32),
    /// Decompression produced another size than declared.
    #[error("snapshot decompressed to {got} bytes, declared {declared}")]
    SizeMismatch {
        /// Bytes produced.
        got: u64,
        /// Declared uncompressed length.
        declared: u32,
    },
    /// The checkpoint file could not be read.
    #[error("cannot read snapshot checkpoint: {0}")]
    CheckpointUnreadable(std::io::ErrorKind),
    /// The checkpoint is shorter than its header or has the wrong magic.
    #[error("bad checkpoint header")]
    CheckpointHeader,
    /// The checkpoint's CRC32 does not match its entries.
    #[error("checkpoint checksum mismatch")]
    CheckpointChecksum,
    /// The checkpoint ends inside an entry.
    #[error("checkpoint truncated")]
    CheckpointTruncated,
    /// A checkpoint entry's aggregate id is not UTF-8.
    #[error("checkpoint aggregate id not UTF-8")]
    CheckpointIdUtf8,
    /// A checkpoint entry points outside the records of its file.
    #[error("checkpoint entry outside its file")]
    CheckpointEntryOutside,
    /// Bytes after the declared number of entries.
    #[error("checkpoint has trailing bytes")]
    CheckpointTrailing,
    /// The dictionary file is shorter than its header.
    #[error("dictionary file shorter than its header")]
    DictionaryShort,
    /// The dictionary file does not start with the dictionary magic.
    #[error("not a factlog dictionary file (bad magic)")]
    DictionaryMagic,
    /// The dictionary file has a format version this build does not read.
    #[error("dictionary format version {found} (this build reads {supported})")]
    DictionaryVersion {
        /// Version in the header.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// Header lengths disagree with the file, id zero, or reserved bytes set.
    #[error("dictionary header fields inconsistent with the file")]
    DictionaryFields,
    /// The dictionary file's CRC32 does not match.
    #[error("dictionary checksum mismatch")]
    DictionaryChecksum,
    /// The dictionary's aggregate id prefix is not UTF-8.
    #[error("prefix not UTF-8")]
    DictionaryPrefixUtf8,
    /// zstd cannot load the dictionary bytes.
    #[error("zstd cannot load this dictionary")]
    DictionaryUnloadable,
}

impl SnapshotFormatError {
    /// The crate error for this reason found in `path` at `offset`.
    pub(crate) fn at(self, path: impl Into<PathBuf>, offset: u64) -> Error {
        match self {
            SnapshotFormatError::FileVersion { found, supported } => {
                Error::UnsupportedFormat { path: path.into(), found, supported }
            }
            other => Error::corrupt(path, offset, other.to_string()),
        }
    }
}

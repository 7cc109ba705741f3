use thiserror::Error;

/// Everything that can be wrong with bytes that claim to be a cairn object.
#[derive(Debug, Error)]
pub enum Error {
    /// The bytes do not start with the magic of the expected record kind.
    #[error("not a cairn {expected} record (bad magic)")]
    BadMagic {
        /// What the caller expected to read.
        expected: &'static str,
    },
    /// The record was written by a newer cairn.
    #[error("{kind} record has format version {found}, this cairn reads up to {supported}; upgrade cairn")]
    UnsupportedVersion {
        /// Record kind.
        kind: &'static str,
        /// Version found in the record.
        found: u16,
        /// Highest version this build reads.
        supported: u16,
    },
    /// The record body does not decode.
    #[error("{kind} record is malformed: {reason}")]
    Malformed {
        /// Record kind.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The bytes end before the structure does.
    #[error("{what} is truncated")]
    Truncated {
        /// What was being read.
        what: &'static str,
    },
    /// A size field exceeds what the format allows.
    #[error("{what} is {len} bytes, more than the {max} the format allows")]
    TooLarge {
        /// What was being read.
        what: &'static str,
        /// Claimed size.
        len: u64,
        /// Limit.
        max: u64,
    },
    /// Decompression failed or produced the wrong length.
    #[error("compressed frame is damaged: {0}")]
    Decompress(String),
    /// An age envelope could not be opened.
    #[error(transparent)]
    Envelope(#[from] crate::envelope::EnvelopeError),
    /// A key or identity string is invalid.
    #[error("invalid key material: {0}")]
    Key(String),
}

impl Error {
    /// Whether the record was written by a newer cairn (nothing is wrong with it).
    pub fn is_newer_format(&self) -> bool {
        matches!(self, Error::UnsupportedVersion { .. })
    }

    pub(crate) fn malformed(kind: &'static str, reason: impl Into<String>) -> Self {
        Error::Malformed {
            kind,
            reason: reason.into(),
        }
    }
}

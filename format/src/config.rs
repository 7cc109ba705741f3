//! The plaintext `config` object: what any reader needs before it holds a key.

use crate::chunker::ChunkerParams;
use crate::record::{self, RecordKind};
use crate::{Error, Id};
use serde::{Deserialize, Serialize};

/// Repository parameters. Plaintext: holds no secret (the chunker seed lives in the keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Random id naming this repository; keys and write keys are bound to it.
    pub repo_id: Id,
    /// Creation time, seconds since the Unix epoch (UTC).
    pub created_unix: i64,
    /// Content-defined chunking parameters for general files.
    pub chunker: ChunkerParams,
    /// Target size of a pack's plaintext, in bytes.
    pub pack_size: u32,
    /// zstd level used for new blobs.
    pub zstd_level: i32,
}

impl RepoConfig {
    /// Default pack target: 16 MiB.
    pub const DEFAULT_PACK_SIZE: u32 = 16 << 20;

    /// Encode as the `config` object.
    pub fn encode(&self) -> Vec<u8> {
        record::encode(RecordKind::Config, self)
    }

    /// Decode and validate a `config` object.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let cfg: RepoConfig = record::decode(RecordKind::Config, bytes)?;
        cfg.chunker.validate()?;
        if !(1 << 20..=256 << 20).contains(&cfg.pack_size) {
            return Err(Error::malformed(
                "config",
                format!("pack size {} outside 1 MiB..256 MiB", cfg.pack_size),
            ));
        }
        if !(-7..=22).contains(&cfg.zstd_level) {
            return Err(Error::malformed(
                "config",
                format!("zstd level {} outside -7..22", cfg.zstd_level),
            ));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_validation() {
        let cfg = RepoConfig {
            repo_id: Id([7; 32]),
            created_unix: 1_700_000_000,
            chunker: ChunkerParams::default(),
            pack_size: RepoConfig::DEFAULT_PACK_SIZE,
            zstd_level: 3,
        };
        assert_eq!(RepoConfig::decode(&cfg.encode()).unwrap(), cfg);
        let bad = RepoConfig {
            pack_size: 10,
            ..cfg.clone()
        };
        assert!(RepoConfig::decode(&bad.encode()).is_err());
    }
}

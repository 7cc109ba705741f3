//! Repository secrets and the two key roles.
//!
//! `keys/<id>` objects hold a [`KeyRecord`] encrypted to the master recipients (or to a
//! passphrase). The identity holder decrypts data packs with their own identity; the
//! **write key** is the same record without any master identity, exported as text: it can
//! write and read metadata, never file content.

use crate::record::{self, RecordKind};
use crate::{ChunkIdKey, Error, Id};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Repository secrets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The repository these secrets belong to (matches `config`).
    pub repo_id: Id,
    /// Key for blob ids.
    pub chunk_key: [u8; 32],
    /// Secret FastCDC gear seed.
    pub chunker_seed: u64,
    /// age X25519 identity that opens metadata (trees, index, snapshots).
    pub meta_identity: String,
    /// age X25519 recipients every object is encrypted to (`age1…`).
    pub master_recipients: Vec<String>,
    /// Present only in passphrase-protected key objects: the master identity itself.
    pub master_identity: Option<String>,
}

impl fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRecord")
            .field("repo_id", &self.repo_id)
            .field("master_recipients", &self.master_recipients)
            .finish_non_exhaustive()
    }
}

impl KeyRecord {
    /// The blob id key.
    pub fn chunk_id_key(&self) -> ChunkIdKey {
        ChunkIdKey(self.chunk_key)
    }

    /// Encode (plaintext; the caller encrypts it).
    pub fn encode(&self) -> Vec<u8> {
        record::encode(RecordKind::Keys, self)
    }

    /// Decode and check every key string parses.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let rec: KeyRecord = record::decode(RecordKind::Keys, bytes)?;
        crate::envelope::parse_identity(&rec.meta_identity)?;
        if rec.master_recipients.is_empty() {
            return Err(Error::malformed("keys", "no master recipient"));
        }
        for r in &rec.master_recipients {
            crate::envelope::parse_recipient(r)?;
        }
        if let Some(m) = &rec.master_identity {
            crate::envelope::parse_identity(m)?;
        }
        Ok(rec)
    }

    /// This record without the master identity: what a write key holds.
    pub fn to_write_key(&self) -> KeyRecord {
        KeyRecord {
            master_identity: None,
            ..self.clone()
        }
    }
}

const WRITE_KEY_PREFIX: &str = "CAIRN-WRITE-KEY-1:";
const LABEL_PREFIX: &str = "CAIRN-WRITE-KEY-LABEL:";
/// Longest write key label.
pub const MAX_LABEL_LEN: usize = 64;

/// Is `label` usable as a write key label (1 to 64 of `A-Z a-z 0-9 . _ -`)?
pub fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Text form of a write key file, with an optional label (a name for the host holding it,
/// recorded in every snapshot it writes; not an authentication — see SPEC §5).
pub fn write_key_to_text(rec: &KeyRecord, label: Option<&str>) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(rec.to_write_key().encode());
    let label = label.map_or(String::new(), |l| format!("{LABEL_PREFIX}{l}\n"));
    format!(
        "# cairn write key for repository {}\n\
         # It can back up, list snapshots and file names, and check structure, but cannot\n\
         # decrypt file contents. Keep it as secret as the host's other credentials.\n\
         {label}{WRITE_KEY_PREFIX}{body}\n",
        rec.repo_id
    )
}

/// The label of a write key file, if it has one.
pub fn write_key_label(text: &str) -> Result<Option<String>, Error> {
    let Some(label) = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(LABEL_PREFIX))
    else {
        return Ok(None);
    };
    let label = label.trim();
    if !valid_label(label) {
        return Err(Error::Key(format!(
            "write key label {label:?} is not 1 to {MAX_LABEL_LEN} letters, digits, '.', '_' or '-'"
        )));
    }
    Ok(Some(label.to_string()))
}

/// Parse a write key file. Comment lines (`#`) and blank lines are ignored.
pub fn write_key_from_text(text: &str) -> Result<KeyRecord, Error> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(WRITE_KEY_PREFIX))
        .ok_or_else(|| Error::Key(format!("no line starting with {WRITE_KEY_PREFIX}")))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&line[WRITE_KEY_PREFIX.len()..])
        .map_err(|e| Error::Key(format!("write key is not valid base64: {e}")))?;
    let rec = KeyRecord::decode(&bytes)?;
    if rec.master_identity.is_some() {
        return Err(Error::Key(
            "a write key must not contain the master identity".into(),
        ));
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::identity_to_string;

    fn sample() -> KeyRecord {
        let meta = age::x25519::Identity::generate();
        let master = age::x25519::Identity::generate();
        KeyRecord {
            repo_id: Id([9; 32]),
            chunk_key: [1; 32],
            chunker_seed: 77,
            meta_identity: identity_to_string(&meta),
            master_recipients: vec![master.to_public().to_string()],
            master_identity: Some(identity_to_string(&master)),
        }
    }

    #[test]
    fn write_key_text_round_trip_drops_master() {
        let rec = sample();
        let text = write_key_to_text(&rec, None);
        assert!(!text.contains("AGE-SECRET-KEY"));
        assert_eq!(write_key_label(&text).unwrap(), None);
        let labelled = write_key_to_text(&rec, Some("master-0"));
        assert_eq!(
            write_key_label(&labelled).unwrap().as_deref(),
            Some("master-0")
        );
        assert_eq!(write_key_from_text(&labelled).unwrap(), rec.to_write_key());
        assert!(write_key_label("CAIRN-WRITE-KEY-LABEL:a b\n").is_err());
        let back = write_key_from_text(&text).unwrap();
        assert_eq!(back, rec.to_write_key());
        assert!(back.master_identity.is_none());
        assert!(write_key_from_text("nothing here").is_err());
        assert!(format!("{rec:?}").find("AGE-SECRET").is_none());
    }

    #[test]
    fn record_round_trip() {
        let rec = sample();
        assert_eq!(KeyRecord::decode(&rec.encode()).unwrap(), rec);
    }
}

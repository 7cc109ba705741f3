//! Repository secrets and the two key roles.
//!
//! `keys/<id>` objects hold a [`KeyRecord`] encrypted to the master recipients (or to a
//! passphrase). The identity holder decrypts data packs with their own identity; the
//! **write key** is the same record without any master identity, exported as text: it can
//! write and read metadata, never file content.
//!
//! Version 1 of the keys record is the secrets alone; version 2 appends a [`KeyInfo`]
//! (label, creation time) describing the key object. Key objects are written at version 2,
//! write keys (which carry no [`KeyInfo`]) at version 1; both versions are read.

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
    /// The master identity itself, whose recipient is one of `master_recipients`: in key
    /// objects made since keys record version 2 and in passphrase key objects; never in a
    /// write key.
    pub master_identity: Option<String>,
    /// What the key object says about itself (version 2 only; not part of the secrets).
    #[serde(skip)]
    pub info: Option<KeyInfo>,
}

/// Description of one key object, appended to the record at version 2. Chosen by whoever
/// wrote the object: a name, not an authentication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// A name for the key (1 to 64 of `A-Z a-z 0-9 . _ -`, as [`valid_label`] checks).
    pub label: Option<String>,
    /// When the key object was made, seconds since the epoch.
    pub created_unix: i64,
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

    /// Encode (plaintext; the caller encrypts it): version 2 with its [`KeyInfo`], version 1
    /// (readable by every cairn) without one.
    pub fn encode(&self) -> Vec<u8> {
        match &self.info {
            Some(info) => record::encode(RecordKind::Keys, &(self, info)),
            None => record::encode_at(RecordKind::Keys, 1, self),
        }
    }

    /// Decode either version and check every key string and the label.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let rec = match record::version(RecordKind::Keys, bytes)? {
            1 => record::decode::<KeyRecord>(RecordKind::Keys, bytes)?,
            _ => {
                let (rec, info): (KeyRecord, KeyInfo) = record::decode(RecordKind::Keys, bytes)?;
                if let Some(l) = info.label.as_deref().filter(|l| !valid_label(l)) {
                    return Err(Error::malformed(
                        "keys",
                        format!("label {l:?} is not 1 to {MAX_LABEL_LEN} letters, digits, '.', '_' or '-'"),
                    ));
                }
                KeyRecord {
                    info: Some(info),
                    ..rec
                }
            }
        };
        crate::envelope::parse_identity(&rec.meta_identity)?;
        if rec.master_recipients.is_empty() {
            return Err(Error::malformed("keys", "no master recipient"));
        }
        for r in &rec.master_recipients {
            crate::envelope::parse_recipient(r)?;
        }
        if let Some(m) = &rec.master_identity {
            let public = crate::envelope::parse_identity(m)?.to_public().to_string();
            if !rec.master_recipients.contains(&public) {
                return Err(Error::malformed(
                    "keys",
                    "the master identity is not one of the master recipients",
                ));
            }
        }
        Ok(rec)
    }

    /// This record without the master identity and key object description: what a write
    /// key holds, and what every key object of a repository must agree on.
    pub fn to_write_key(&self) -> KeyRecord {
        KeyRecord {
            master_identity: None,
            info: None,
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
    Ok(rec.to_write_key())
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
            info: Some(KeyInfo {
                label: Some("admin".into()),
                created_unix: 1_700_000_000,
            }),
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
        let bytes = rec.encode();
        assert_eq!(&bytes[5..8], b"K\x02\x00");
        assert_eq!(KeyRecord::decode(&bytes).unwrap(), rec);
        let bare = KeyRecord { info: None, ..rec };
        assert_eq!(&bare.encode()[5..8], b"K\x01\x00");
        assert_eq!(KeyRecord::decode(&bare.encode()).unwrap(), bare);
    }

    /// A version-1 record as cairn wrote it before key object metadata: the secrets, then
    /// nothing. It must stay readable, and must not be read as version 2 (nor v2 as v1).
    #[test]
    fn version_1_records_stay_readable() {
        let rec = KeyRecord {
            info: None,
            ..sample()
        };
        let mut v1 = b"cairnK\x01\x00".to_vec();
        v1.extend(postcard::to_allocvec(&rec).unwrap());
        assert_eq!(KeyRecord::decode(&v1).unwrap(), rec);
        let mut as_v2 = v1.clone();
        as_v2[6] = 2;
        assert!(KeyRecord::decode(&as_v2).is_err());
        let mut v2_as_v1 = sample().encode();
        v2_as_v1[6] = 1;
        assert!(KeyRecord::decode(&v2_as_v1).is_err());
        let mut v3 = v1;
        v3[6] = 3;
        assert!(matches!(
            KeyRecord::decode(&v3),
            Err(Error::UnsupportedVersion { found: 3, .. })
        ));
    }

    #[test]
    fn invalid_key_object_labels_are_refused() {
        let mut rec = sample();
        rec.info = Some(KeyInfo {
            label: Some("\u{1b}[2J".into()),
            created_unix: 0,
        });
        assert!(KeyRecord::decode(&rec.encode()).is_err());
    }
}

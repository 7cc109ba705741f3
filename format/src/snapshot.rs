//! Snapshot objects: one per completed backup.

use crate::bounded::{self, bytes_cost, Limits};
use crate::record::{self, RecordKind};
use crate::{Error, Id};
use serde::{Deserialize, Deserializer, Serialize};

/// Most tags a snapshot may carry.
pub const MAX_TAGS: usize = 256;
/// Longest tag, in bytes.
pub const MAX_TAG_LEN: usize = 255;
/// Most paths a snapshot may record.
pub const MAX_PATHS: usize = 65_536;
/// Most facts a snapshot may record.
pub const MAX_FACTS: usize = 4096;
/// Most memory the lists of one decoded snapshot may take.
const MAX_SNAPSHOT_DECODED: usize = 8 << 20;

/// What was backed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SourceKind {
    /// Paths of a file system.
    Paths,
    /// An etcd snapshot.
    Etcd,
    /// Static pod resources.
    StaticPods,
    /// etcd snapshot plus static pod resources, taken together.
    Cluster,
    /// API objects of a project (namespace).
    Project,
}

impl SourceKind {
    /// Lower-case name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Paths => "paths",
            SourceKind::Etcd => "etcd",
            SourceKind::StaticPods => "static-pods",
            SourceKind::Cluster => "cluster",
            SourceKind::Project => "project",
        }
    }
}

/// Counters recorded with a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SnapshotStats {
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Other entries (symlinks, devices, ...).
    pub others: u64,
    /// Sum of file sizes.
    pub bytes: u64,
    /// Files whose content was read (the rest were unchanged since the parent).
    pub files_read: u64,
    /// New blobs written.
    pub blobs_added: u64,
    /// Stored (encrypted) bytes of the new packs.
    pub stored_added: u64,
    /// Entries that could not be read and are missing from the snapshot.
    pub unreadable: u64,
    /// Wall-clock duration, milliseconds.
    pub duration_ms: u64,
}

/// The `snapshots/<id>` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the backup started, nanoseconds since the Unix epoch (UTC).
    pub time_ns: i64,
    /// Host name recorded (defaults to the backup host's).
    pub host: String,
    /// User that ran the backup.
    pub username: String,
    /// Kind of source.
    pub source: SourceKind,
    /// Paths (or source names) as given, absolute.
    #[serde(deserialize_with = "bounded_paths")]
    pub paths: Vec<String>,
    /// Tags (1 to [`MAX_TAG_LEN`] bytes each, at most [`MAX_TAGS`]).
    #[serde(deserialize_with = "bounded_tags")]
    pub tags: Vec<String>,
    /// Root tree blob id.
    pub tree: Id,
    /// The snapshot used to skip unchanged files, if any.
    pub parent: Option<Id>,
    /// Counters.
    pub stats: SnapshotStats,
    /// Version of cairn that wrote it.
    pub program: String,
    /// Facts about the source (for etcd: revision, hash, key count, cluster version), as
    /// ordered key/value pairs.
    #[serde(deserialize_with = "bounded_facts")]
    pub facts: Vec<(String, String)>,
}

/// Is `tag` acceptable (non-empty, at most [`MAX_TAG_LEN`] bytes, no control characters)?
pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty() && tag.len() <= MAX_TAG_LEN && !tag.chars().any(char::is_control)
}

fn string_cost(s: &str) -> Result<usize, String> {
    Ok(std::mem::size_of::<String>() + bytes_cost(s.len()))
}

fn bounded_tags<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    bounded::vec(
        d,
        Limits {
            what: "tags",
            max_len: MAX_TAGS,
            max_bytes: MAX_SNAPSHOT_DECODED,
            cost: |t: &String| {
                if valid_tag(t) {
                    string_cost(t)
                } else {
                    Err(format!("invalid tag {t:?}"))
                }
            },
        },
    )
}

fn bounded_paths<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    bounded::vec(
        d,
        Limits {
            what: "paths",
            max_len: MAX_PATHS,
            max_bytes: MAX_SNAPSHOT_DECODED,
            cost: |p: &String| string_cost(p),
        },
    )
}

fn bounded_facts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    bounded::vec(
        d,
        Limits {
            what: "facts",
            max_len: MAX_FACTS,
            max_bytes: MAX_SNAPSHOT_DECODED,
            cost: |(k, v): &(String, String)| Ok(string_cost(k)? + string_cost(v)?),
        },
    )
}

impl Snapshot {
    /// The value of the fact `key`, if the snapshot recorded it.
    pub fn fact(&self, key: &str) -> Option<&str> {
        self.facts
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Encode as a snapshot record.
    pub fn encode(&self) -> Vec<u8> {
        record::encode(RecordKind::Snapshot, self)
    }

    /// Decode a snapshot record.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        record::decode(RecordKind::Snapshot, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = Snapshot {
            time_ns: 1_700_000_000_000_000_000,
            host: "master-0".into(),
            username: "root".into(),
            source: SourceKind::Paths,
            paths: vec!["/etc/kubernetes".into()],
            tags: vec!["daily".into()],
            tree: Id([4; 32]),
            parent: None,
            stats: SnapshotStats::default(),
            program: "cairn 0.1.0".into(),
            facts: vec![("revision".into(), "42".into())],
        };
        assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
        // A flood of empty tags (1 byte each encoded, 24 decoded) is refused while decoding.
        let mut flood = s.clone();
        flood.tags = vec![String::new(); 3];
        assert!(Snapshot::decode(&flood.encode()).is_err());
        flood.tags = (0..=MAX_TAGS).map(|i| i.to_string()).collect();
        let err = Snapshot::decode(&flood.encode()).unwrap_err().to_string();
        assert!(err.contains("tags"), "{err}");
    }
}

//! S3 Object Lock for a repository (SPEC §3 and §11, `policy/object-lock`).
//!
//! `init --object-lock-days N` checks that the bucket has Object Lock enabled and stores the
//! policy as the plaintext object [`OBJECT_LOCK`] (locked itself, like everything after it).
//! Whoever opens the repository reads it and gives every object it writes a retention of N
//! days from the write (leases and gc markers excepted: they are transient, not backup data).
//! Prune extends the retention of everything it keeps to N days from then, so the newest
//! backups stay protected N days and everything kept stays protected while kept. Deleting an
//! object on a versioned bucket only adds a delete marker; the locked version stays until its
//! retention ends (and `--as-of` can still read it).

use crate::backend::{Backend, LockMode, WriteLock};
use crate::{Error, Result};
use chrono::{DateTime, Utc};

/// The policy object: plaintext `mode = compliance|governance` and `days = N` lines.
pub const OBJECT_LOCK: &str = "policy/object-lock";
/// Largest policy object read.
const MAX_POLICY_LEN: usize = 4096;
/// Directories whose objects a kept snapshot needs (and `config`, [`OBJECT_LOCK`]).
const LOCKED_DIRS: [&str; 5] = ["keys", "index", "snapshots", "data", "tree"];
/// Tolerance between the writer's clock and the storage's when auditing retention.
const CLOCK_SLACK_SECS: i64 = 300;

/// The policy object's text.
pub fn encode(lock: &WriteLock) -> String {
    format!(
        "# S3 Object Lock policy of this cairn repository: every object is written with this retention\nmode = {}\ndays = {}\n",
        lock.mode.as_s3().to_ascii_lowercase(),
        lock.days
    )
}

/// Parse the policy object's text.
pub fn decode(bytes: &[u8]) -> std::result::Result<WriteLock, String> {
    if bytes.len() > MAX_POLICY_LEN {
        return Err(format!("longer than {MAX_POLICY_LEN} bytes"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let (mut mode, mut days) = (None, None);
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("line {line:?} is not `key = value`"))?;
        match k.trim() {
            "mode" => mode = Some(LockMode::parse(v).ok_or_else(|| format!("unknown mode {v:?}"))?),
            "days" => {
                days = Some(
                    v.trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|d| (1..=36500).contains(d))
                        .ok_or_else(|| format!("days {v:?} is not 1..=36500"))?,
                )
            }
            _ => {} // later additions
        }
    }
    match (mode, days) {
        (Some(mode), Some(days)) => Ok(WriteLock { mode, days }),
        _ => Err("mode or days missing".into()),
    }
}

/// Check that `backend`'s bucket has Object Lock enabled and lock every object written to it
/// from now on (before `init` writes anything).
pub fn enable_at_init(backend: &dyn Backend, lock: WriteLock) -> Result<()> {
    match backend.bucket_object_lock()? {
        None => Err(Error::Invalid(format!(
            "--object-lock-days needs an S3 repository; {} is not one",
            backend.location()
        ))),
        Some(false) => Err(Error::Invalid(format!(
            "the bucket of {} does not have Object Lock enabled; S3 allows that only when a bucket is created: create a new bucket with `aws s3api create-bucket --bucket NAME --object-lock-enabled-for-bucket` (versioning comes with it) and initialize the repository there",
            backend.location()
        ))),
        Some(true) => backend.set_write_lock(Some(lock)),
    }
}

/// Store the policy object (after [`enable_at_init`]).
pub fn write_policy(backend: &dyn Backend, lock: WriteLock) -> Result<()> {
    backend.put(OBJECT_LOCK, encode(&lock).as_bytes())
}

/// Read the repository's policy, if any, and lock what `backend` writes accordingly.
pub fn apply(backend: &dyn Backend) -> Result<Option<WriteLock>> {
    let bytes = match backend.get(OBJECT_LOCK) {
        Ok(b) => b,
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let lock = decode(&bytes).map_err(|e| {
        Error::Invalid(format!(
            "{OBJECT_LOCK} of {} cannot be read: {e}",
            backend.location()
        ))
    })?;
    backend.set_write_lock(Some(lock))?;
    Ok(Some(lock))
}

/// Every object a kept snapshot may need: `config`, the policy, keys, index, snapshots, packs.
fn protected_paths(backend: &dyn Backend) -> Result<Vec<String>> {
    let mut paths = vec!["config".to_string(), OBJECT_LOCK.to_string()];
    for dir in LOCKED_DIRS {
        paths.extend(backend.list(dir)?.into_iter().map(|o| o.path));
    }
    Ok(paths)
}

/// Extend the retention of every object the repository holds (after prune: all of them are
/// needed) but those `skip` names to `lock.days` from now. Returns how many objects were
/// extended.
pub fn extend(backend: &dyn Backend, lock: WriteLock, skip: impl Fn(&str) -> bool) -> Result<u64> {
    let retention = lock.from_now();
    let mut n = 0;
    for path in protected_paths(backend)?.into_iter().filter(|p| !skip(p)) {
        match backend.set_retention(&path, retention) {
            Ok(()) => n += 1,
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// An object whose protection ends before the policy says it should.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortLock {
    /// The object.
    pub path: String,
    /// When its retention ends (None: it has none).
    pub until: Option<DateTime<Utc>>,
    /// When it should end at the earliest: `days` after the object was written.
    pub expected: DateTime<Utc>,
}

/// Objects whose retention ends before `lock.days` after they were written (or that have
/// none): written by a writer that did not know the policy, or with the policy removed.
pub fn audit(backend: &dyn Backend, lock: WriteLock) -> Result<Vec<ShortLock>> {
    let mut written = std::collections::HashMap::new();
    for v in backend.versions("")? {
        // Newest version of each key first: that is the current one.
        written
            .entry(v.path)
            .or_insert((v.last_modified, v.delete_marker));
    }
    let mut out = Vec::new();
    for path in protected_paths(backend)? {
        let Some((at, false)) = written.get(&path).copied() else {
            continue;
        };
        let expected = at + chrono::Duration::days(i64::from(lock.days));
        let until = match backend.retention(&path) {
            Ok(r) => r.map(|r| r.until),
            Err(Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        if until.is_none_or(|u| u + chrono::Duration::seconds(CLOCK_SLACK_SECS) < expected) {
            out.push(ShortLock {
                path,
                until,
                expected,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_round_trip_and_refusals() {
        let lock = WriteLock {
            mode: LockMode::Governance,
            days: 30,
        };
        assert_eq!(decode(encode(&lock).as_bytes()), Ok(lock));
        assert!(decode(b"mode = compliance\n").is_err());
        assert!(decode(b"mode = forever\ndays = 3\n").is_err());
        assert!(decode(b"mode = compliance\ndays = 0\n").is_err());
        assert!(decode(&vec![b'#'; 5000]).is_err());
        assert_eq!(
            decode(b"mode=COMPLIANCE\ndays=7\nlater = 1\n"),
            Ok(WriteLock {
                mode: LockMode::Compliance,
                days: 7
            })
        );
    }
}

//! Looking at a repository's objects without cairn, and damaging them, on either backend:
//! packs, snapshot ids, leases and gc markers (decrypted with the write key's metadata
//! identity), leases written as another process would, and [`Store`] methods that delete an
//! object, flip bits in it or cut it short.

use crate::{s3, Fixture, Store};
use cairn_format::envelope;
use cairn_format::gc::{GcRecord, LeaseKind, LeaseRecord};
use cairn_format::keys::KeyRecord;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;

impl Store {
    /// Delete object `name`; it must exist.
    pub fn delete(&self, name: &str) {
        match self {
            Store::Dir(d) => {
                fs::remove_file(d.join(name)).unwrap_or_else(|e| panic!("deleting {name}: {e}"))
            }
            Store::S3 { bucket, prefix } => s3::shared().delete(bucket, &Store::key(prefix, name)),
        }
    }

    /// XOR the byte at `at` of object `name` with `mask` (its size stays the same); a negative
    /// `at` counts from the end (-1: the last byte).
    pub fn flip_bits(&self, name: &str, at: isize, mask: u8) {
        self.rewrite(name, |b| {
            let i = if at < 0 {
                b.len() - at.unsigned_abs()
            } else {
                at as usize
            };
            b[i] ^= mask;
        });
    }

    /// Flip one bit of object `name` in the middle (its size stays the same).
    pub fn flip_byte(&self, name: &str) {
        self.rewrite(name, |b| {
            let at = b.len() / 2;
            b[at] ^= 0x40;
        });
    }

    /// Cut object `name` to its first `len` bytes.
    pub fn truncate(&self, name: &str, len: usize) {
        self.rewrite(name, |b| b.truncate(len));
    }

    /// Replace object `name` (which must exist) by what `change` makes of its bytes.
    fn rewrite(&self, name: &str, change: impl FnOnce(&mut Vec<u8>)) {
        let mut b = self
            .read(name)
            .unwrap_or_else(|| panic!("no object {name}"));
        change(&mut b);
        self.write(name, &b);
    }
}

/// Every pack object (`data/…` and `tree/…`) with its size.
pub fn packs(store: &Store) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = store.list("data").into_iter().collect();
    out.extend(store.list("tree"));
    out
}

/// Total size of every pack object.
pub fn pack_bytes(store: &Store) -> u64 {
    packs(store).values().sum()
}

/// The ids of every snapshot object.
pub fn snapshot_ids(store: &Store) -> BTreeSet<String> {
    store
        .names("snapshots")
        .into_iter()
        .map(|n| n.trim_start_matches("snapshots/").to_string())
        .collect()
}

/// The write key's metadata identity (it decrypts index, snapshot, lease and marker objects).
pub fn meta_identity(fx: &Fixture) -> age::x25519::Identity {
    envelope::parse_identity(&fx.write_key_record().meta_identity).expect("meta identity")
}

/// Whom cairn encrypts metadata objects to: the metadata identity and the master recipients.
pub fn meta_recipients(keys: &KeyRecord) -> Vec<age::x25519::Recipient> {
    let meta = envelope::parse_identity(&keys.meta_identity).expect("meta identity");
    let mut v = vec![meta.to_public()];
    v.extend(
        keys.master_recipients
            .iter()
            .map(|r| envelope::parse_recipient(r).expect("recipient")),
    );
    v
}

/// Encrypt a metadata object as cairn does, with `fx`'s keys.
pub fn encrypt_meta(fx: &Fixture, plaintext: &[u8]) -> Vec<u8> {
    envelope::encrypt(plaintext, &meta_recipients(&fx.write_key_record()))
}

/// Read and decrypt metadata object `name` of `store` (a repository with `fx`'s keys); None
/// if it is gone or cannot be decrypted.
pub fn read_meta(fx: &Fixture, store: &Store, name: &str) -> Option<Vec<u8>> {
    let ct = store.read(name)?;
    let id = meta_identity(fx);
    envelope::decrypt(&ct, &[&id as &dyn age::Identity], 1 << 30).ok()
}

/// Every lease object of `store` (a repository with `fx`'s keys) with its record (None:
/// unreadable, or gone while reading).
pub fn leases(fx: &Fixture, store: &Store) -> Vec<(String, Option<LeaseRecord>)> {
    store
        .names("locks")
        .into_iter()
        .map(|n| {
            let rec = read_meta(fx, store, &n).and_then(|p| LeaseRecord::decode(&p).ok());
            (n, rec)
        })
        .collect()
}

/// The leases of `store` not released by their holders: `locks/<name>` for every lease with
/// no `locks/<name>.end` object (SPEC §11; lease objects are create-only, released ones stay
/// until a prune removes them). The prune lease counts while it exists.
pub fn unreleased_leases(store: &Store) -> Vec<String> {
    let names = store.names("locks");
    let mut out: Vec<String> = names
        .iter()
        .map(|n| match n.rsplit_once('.') {
            Some((base, suffix)) if suffix == "end" || suffix.parse::<u64>().is_ok() => {
                base.to_string()
            }
            _ => n.clone(),
        })
        .filter(|base| !names.contains(&format!("{base}.end")))
        .collect();
    out.dedup();
    out
}

/// Every gc marker of `store` (a repository with `fx`'s keys): (id, record). Panics on one
/// that cannot be read.
pub fn markers(fx: &Fixture, store: &Store) -> Vec<(String, GcRecord)> {
    store
        .names("gc")
        .into_iter()
        .map(|n| {
            let plain = read_meta(fx, store, &n).unwrap_or_else(|| panic!("marker {n}"));
            let rec = GcRecord::decode(&plain).unwrap_or_else(|e| panic!("marker {n}: {e}"));
            (n.trim_start_matches("gc/").to_string(), rec)
        })
        .collect()
}

/// A lease record of process `pid` on `host`, last renewed `renewed_ago` seconds ago (started
/// a minute before that), having seen the gc markers `seen` (hex ids).
pub fn lease(
    kind: LeaseKind,
    host: &str,
    pid: u32,
    renewed_ago: i64,
    seen: Option<Vec<String>>,
) -> LeaseRecord {
    let now = now_unix();
    LeaseRecord {
        kind,
        host: host.to_string(),
        pid,
        started_unix: now - renewed_ago - 60,
        renewed_unix: now - renewed_ago,
        seen_markers: seen.map(|v| v.iter().map(|m| m.parse().expect("marker id")).collect()),
    }
}

/// Store lease record `rec` at `name` (`locks/…`) of `store` (a repository with `fx`'s keys),
/// as another process would.
pub fn put_lease(fx: &Fixture, store: &Store, name: &str, rec: &LeaseRecord) {
    store.write(name, &encrypt_meta(fx, &rec.encode()));
}

/// This host's name, as cairn records it in leases.
pub fn host() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

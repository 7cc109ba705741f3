//! Key objects (`keys/<id>`): listing them (what each is, its label and creation time when the
//! credentials at hand open it), adding one for another recipient or passphrase, changing the
//! passphrase, and removing one without locking everyone out.

use crate::repo::{put_key_object, Repository, Role, MAX_KEYS_LEN, SCRYPT_LOG_N, SCRYPT_MAX_LOG_N};
use crate::{Error, Result};
use cairn_format::envelope;
use cairn_format::keys::{valid_label, KeyInfo, KeyRecord, MAX_LABEL_LEN};
use cairn_format::record::{self, RecordKind};
use cairn_format::Id;
use serde::Serialize;

/// What a key object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// Encrypted to age recipients (identity files).
    Recipients,
    /// Encrypted to a passphrase (scrypt).
    Passphrase,
    /// Not an age file, or its bytes do not match its name.
    Damaged,
}

/// One key object.
#[derive(Debug, Clone, Serialize)]
pub struct KeyObject {
    /// Its id (the blake3 of its bytes).
    pub id: String,
    /// What it is.
    pub kind: KeyKind,
    /// Stored bytes.
    pub size: u64,
    /// Whether the credentials at hand open it; None when they cannot tell (a write key, or a
    /// passphrase object without the passphrase).
    pub opens: Option<bool>,
    /// Its label, when the credentials open it and it has one.
    pub label: Option<String>,
    /// When it was made (seconds since the epoch), when the credentials open it and it
    /// records that (keys record version 2).
    pub created_unix: Option<i64>,
    /// Keys record version, when the credentials open it.
    pub version: Option<u16>,
}

/// Whom a new key object opens for.
pub enum NewKey<'a> {
    /// X25519 recipients (`age1…`): any one of their identities opens it.
    Recipients(&'a [String]),
    /// A passphrase.
    Passphrase(&'a str),
}

/// Every key object of `repo`, with whether its credentials (and `passphrase`, if given)
/// open it and, for those they open, what the object says about itself.
pub fn list(repo: &Repository, passphrase: Option<&str>) -> Result<Vec<KeyObject>> {
    let mut out = Vec::new();
    for obj in repo.backend().list("keys")? {
        let ct = repo.backend().get(&obj.path)?;
        let id = obj.path.rsplit('/').next().unwrap_or_default().to_string();
        let named = id.parse::<Id>().ok() == Some(Id::of_object(&ct));
        let kind = match envelope::is_passphrase_encrypted(&ct) {
            _ if !named => KeyKind::Damaged,
            Ok(true) => KeyKind::Passphrase,
            Ok(false) => KeyKind::Recipients,
            Err(_) => KeyKind::Damaged,
        };
        let plain = match kind {
            KeyKind::Damaged => Some(None),
            KeyKind::Recipients => repo
                .data_identities()
                .map(|ids| envelope::decrypt(&ct, &ids, MAX_KEYS_LEN).ok()),
            KeyKind::Passphrase => passphrase.map(|p| {
                envelope::decrypt_with_passphrase(&ct, p, SCRYPT_MAX_LOG_N, MAX_KEYS_LEN).ok()
            }),
        };
        let opened = plain.as_ref().and_then(|p| p.as_deref());
        let version = opened.and_then(|p| record::version(RecordKind::Keys, p).ok());
        let info = opened
            .and_then(|p| KeyRecord::decode(p).ok())
            .and_then(|r| r.info);
        out.push(KeyObject {
            id,
            kind,
            size: obj.size,
            opens: plain.map(|p| p.is_some()),
            label: info.as_ref().and_then(|i| i.label.clone()),
            created_unix: info.map(|i| i.created_unix),
            version,
        });
    }
    Ok(out)
}

/// Add a key object that opens the repository for `to`, holding the same secrets as the one
/// the credentials opened (needs the identity or passphrase). Returns its id.
pub fn add(repo: &Repository, to: &NewKey, label: Option<&str>) -> Result<String> {
    if repo.role() != Role::Full {
        return Err(Error::NeedsIdentity {
            what: "adding a key object",
        });
    }
    if let Some(l) = label.filter(|l| !valid_label(l)) {
        return Err(Error::Invalid(format!(
            "key label {l:?} is not 1 to {MAX_LABEL_LEN} letters, digits, '.', '_' or '-'"
        )));
    }
    let keys = repo.keys();
    if keys.master_identity.is_none() {
        return Err(Error::Invalid(
            "the key object your credentials open holds no master identity (it was made by a cairn \
             before keys record version 2): data is encrypted to the original recipients only, so \
             a new key could not read it; open the repository with its passphrase if it has one, \
             or keep using the original identities"
                .into(),
        ));
    }
    let rec = KeyRecord {
        master_identity: keys.master_identity.clone(),
        info: Some(KeyInfo {
            label: label.map(str::to_string),
            created_unix: chrono::Utc::now().timestamp(),
        }),
        ..keys.to_write_key()
    };
    let ct = match to {
        NewKey::Recipients(list) => {
            if list.is_empty() {
                return Err(Error::Invalid(
                    "a new key object needs at least one recipient".into(),
                ));
            }
            if list.len() > envelope::MAX_RECIPIENTS {
                return Err(Error::Invalid(format!(
                    "{} recipients for one key object; at most {} (readers refuse larger age \
                     headers): add several keys",
                    list.len(),
                    envelope::MAX_RECIPIENTS
                )));
            }
            let recipients = list
                .iter()
                .map(|r| envelope::parse_recipient(r))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            envelope::encrypt(&rec.encode(), &recipients)
        }
        NewKey::Passphrase(p) => envelope::encrypt_with_passphrase(&rec.encode(), p, SCRYPT_LOG_N),
    };
    put_key_object(repo.backend(), &ct)
}

/// Change the passphrase: add a key object for `new` (labelled `label`), then remove every
/// passphrase key object `old` opens. Returns the new id and the removed ones.
pub fn change_passphrase(
    repo: &Repository,
    old: &str,
    new: &str,
    label: Option<&str>,
) -> Result<(String, Vec<String>)> {
    if old == new {
        return Err(Error::Invalid(
            "the new passphrase is the same as the current one".into(),
        ));
    }
    let old_objects: Vec<String> = list(repo, Some(old))?
        .into_iter()
        .filter(|k| k.kind == KeyKind::Passphrase && k.opens == Some(true))
        .map(|k| k.id)
        .collect();
    if old_objects.is_empty() {
        return Err(Error::Invalid(
            "the current passphrase opens no passphrase key object; open the repository with \
             --passphrase-file CURRENT (an identity adds a passphrase with `key add`)"
                .into(),
        ));
    }
    let added = add(repo, &NewKey::Passphrase(new), label)?;
    for id in &old_objects {
        repo.backend().delete(&format!("keys/{id}"))?;
    }
    Ok((added, old_objects))
}

/// Remove the key object whose id starts with `prefix` (needs the identity). Refuses to
/// remove the last key object, and — unless `force` — the last one the credentials at hand
/// open (which would lock them out).
pub fn remove(
    repo: &Repository,
    prefix: &str,
    passphrase: Option<&str>,
    force: bool,
) -> Result<String> {
    if repo.role() != Role::Full {
        return Err(Error::NeedsIdentity {
            what: "removing a key object",
        });
    }
    let keys = list(repo, passphrase)?;
    let prefix = prefix.to_ascii_lowercase();
    let mut matching = keys
        .iter()
        .filter(|k| !prefix.is_empty() && k.id.starts_with(&prefix));
    let target = matching.next().ok_or_else(|| {
        Error::Invalid(format!(
            "no key object id starts with {prefix:?}; `cairn key list` shows them"
        ))
    })?;
    if matching.next().is_some() {
        return Err(Error::Invalid(format!(
            "more than one key object id starts with {prefix:?}; give more of it"
        )));
    }
    let usable = |k: &&KeyObject| k.kind != KeyKind::Damaged;
    if keys.iter().filter(usable).count() <= 1 && target.kind != KeyKind::Damaged {
        return Err(Error::Invalid(format!(
            "keys/{} is the repository's last key object; removing it would make every backup unreadable",
            target.id
        )));
    }
    let opened_by_us = keys.iter().filter(|k| k.opens == Some(true)).count();
    if target.opens == Some(true) && opened_by_us <= 1 && !force {
        return Err(Error::Invalid(format!(
            "keys/{} is the only key object your credentials open; removing it locks them out (add --force if another identity or passphrase opens the others)",
            target.id
        )));
    }
    repo.backend().delete(&format!("keys/{}", target.id))?;
    Ok(target.id.clone())
}

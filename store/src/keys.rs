//! Listing and removing key objects (`keys/<id>`): what each one is, and whether the
//! credentials at hand open it.

use crate::repo::{Repository, Role};
use crate::{Error, Result};
use cairn_format::envelope::{self, EnvelopeError};
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
}

/// Every key object of `repo`, with whether its credentials (and `passphrase`, if given)
/// open it.
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
        let opens = match kind {
            KeyKind::Damaged => Some(false),
            KeyKind::Recipients => repo
                .data_identities()
                .map(|ids| envelope::decrypt(&ct, &ids, crate::repo::MAX_KEYS_LEN).is_ok()),
            KeyKind::Passphrase => passphrase.map(|p| {
                !matches!(
                    envelope::decrypt_with_passphrase(
                        &ct,
                        p,
                        crate::repo::SCRYPT_MAX_LOG_N,
                        crate::repo::MAX_KEYS_LEN
                    ),
                    Err(EnvelopeError::WrongPassphrase
                        | EnvelopeError::ExcessiveWork { .. }
                        | EnvelopeError::NotAge
                        | EnvelopeError::Damaged)
                )
            }),
        };
        out.push(KeyObject {
            id,
            kind,
            size: obj.size,
            opens,
        });
    }
    Ok(out)
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

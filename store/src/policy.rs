//! Repository policies the identity holder sets for write keys.
//!
//! Write keys are **append-only** by default: they back up, list and check, but `forget`,
//! `prune` and `repair` — everything that removes objects — refuse with a write key unless the
//! identity holder has allowed host-side retention, by storing the object
//! [`HOST_RETENTION`]. This guards against a compromised host running cairn's own commands; it
//! is not cryptographic (anyone who can write the storage can add the object, and anyone whose
//! storage credentials may delete can delete objects directly): the protection proper is
//! storage credentials that cannot delete, and S3 Object Lock.

use crate::backend::Backend;
use crate::repo::{Repository, Role};
use crate::{Error, Result};

/// The object whose presence lets write keys apply retention (its content is informational).
pub const HOST_RETENTION: &str = "policy/host-retention";

/// May write keys of `repo` remove history?
pub fn host_retention_allowed(repo: &Repository) -> Result<bool> {
    repo.backend().exists(HOST_RETENTION)
}

/// Allow or forbid host-side retention; needs the identity.
pub fn set_host_retention(repo: &Repository, allow: bool) -> Result<()> {
    if repo.role() != Role::Full {
        return Err(Error::NeedsIdentity {
            what: "changing what write keys may do",
        });
    }
    if allow {
        allow_at_init(repo.backend())
    } else {
        match repo.backend().delete(HOST_RETENTION) {
            Err(Error::NotFound { .. }) => Ok(()),
            r => r,
        }
    }
}

/// Allow host-side retention in a repository being created: whoever creates it decides
/// (`init` holds recipients, not necessarily an identity).
pub fn allow_at_init(backend: &dyn Backend) -> Result<()> {
    let note = format!(
        "write keys of this repository may forget, prune and repair (allowed {})\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    backend.put(HOST_RETENTION, note.as_bytes())
}

/// Refuse `what` (an operation that removes objects) for a write key unless host-side
/// retention is allowed. The identity may always.
pub fn ensure_may_remove(repo: &Repository, what: &'static str) -> Result<()> {
    if repo.role() == Role::Full || host_retention_allowed(repo)? {
        Ok(())
    } else {
        Err(Error::AppendOnly { what })
    }
}

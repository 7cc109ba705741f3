//! What `check` says about S3 Object Lock.

use anyhow::Result;
use cairn_store::backend::Backend;
use cairn_store::object_lock;

/// Objects listed by name at most.
const LISTED: usize = 20;

/// If the repository has an Object Lock policy, add a note for every object whose protection
/// ends before the policy's days after its write (or that has none).
pub fn audit(backend: &dyn Backend, notes: &mut Vec<String>) -> Result<()> {
    let Some(lock) = object_lock::apply(backend)? else {
        return Ok(());
    };
    let short = object_lock::audit(backend, lock)?;
    if short.is_empty() {
        notes.push(format!(
            "Object Lock: every object is protected at least {} days from its write",
            lock.days
        ));
        return Ok(());
    }
    notes.push(format!(
        "Object Lock: {} objects are protected for less than the policy's {} days from their write (written without the policy, or its retention removed); run `cairn prune` with credentials that may set retention to extend what is kept",
        short.len(),
        lock.days
    ));
    for s in short.iter().take(LISTED) {
        let until = s.until.map_or("no retention".to_string(), |u| {
            format!("retained until {}", u.format("%Y-%m-%dT%H:%M:%SZ"))
        });
        notes.push(format!(
            "Object Lock: {} {until}, should be until at least {}",
            s.path,
            s.expected.format("%Y-%m-%dT%H:%M:%SZ")
        ));
    }
    if short.len() > LISTED {
        notes.push(format!("Object Lock: … and {} more", short.len() - LISTED));
    }
    Ok(())
}

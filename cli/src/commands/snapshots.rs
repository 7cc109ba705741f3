//! `cairn snapshots`.

use crate::args::{Global, SnapshotsArgs};
use crate::exit::Code;
use crate::{credentials, output};
use anyhow::Result;
use cairn_store::snapshots::{self, Filter};
use serde_json::json;

pub fn run(g: &Global, a: SnapshotsArgs) -> Result<Code> {
    let repo = credentials::open(g)?;
    let filter = Filter::from(&a.filter);
    let listing = snapshots::list(&repo)?;
    let shown: Vec<_> = listing
        .snapshots
        .iter()
        .filter(|(_, s)| filter.matches(s))
        .collect();
    let now = snapshots::now_ns();
    if g.json {
        let items: Vec<_> = shown
            .iter()
            .map(|(id, s)| {
                json!({
                    "id": id.to_hex(),
                    "time": output::time(s.time_ns),
                    "host": s.host,
                    "username": s.username,
                    "source": s.source.name(),
                    "made_by": snapshots::made_by(s),
                    "paths": s.paths,
                    "tags": s.tags,
                    "tree": s.tree.to_hex(),
                    "parent": s.parent.map(|p| p.to_hex()),
                    "program": s.program,
                    "future": snapshots::is_future(s, now),
                    "facts": s.facts.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                    "stats": {
                        "files": s.stats.files,
                        "dirs": s.stats.dirs,
                        "others": s.stats.others,
                        "bytes": s.stats.bytes,
                        "files_read": s.stats.files_read,
                        "blobs_added": s.stats.blobs_added,
                        "added_bytes": s.stats.stored_added,
                        "unreadable": s.stats.unreadable,
                        "duration_ms": s.stats.duration_ms,
                    },
                })
            })
            .collect();
        output::json(&items)?;
    } else {
        crate::outln!(
            "{:<8}  {:<20}  {:<16}  {:<6}  {:>10}  {:>7}  {:<12}  paths",
            "id",
            "time (UTC)",
            "host",
            "source",
            "size",
            "files",
            "tags"
        )?;
        for (id, s) in &shown {
            crate::outln!(
                "{:<8}  {:<20}  {:<16}  {:<6}  {:>10}  {:>7}  {:<12}  {}",
                id.short(),
                output::time(s.time_ns),
                output::quoted(s.host.as_bytes()),
                snapshots::made_by(s),
                output::bytes(s.stats.bytes),
                s.stats.files,
                output::quoted(s.tags.join(",").as_bytes()),
                output::quoted_list(&s.paths)
            )?;
            if let Some(line) = facts_line(&s.facts) {
                crate::outln!("          {line}")?;
            }
        }
        crate::outln!("{}", output::count(shown.len() as u64, "snapshot"))?;
    }
    for (id, s) in shown.iter().filter(|(_, s)| snapshots::is_future(s, now)) {
        output::warn(format_args!(
            "snapshot {} is dated {}, in the future (planted, or host {}'s clock is wrong): not taken as latest, not counted by retention",
            id.short(),
            output::time(s.time_ns),
            output::printable(&s.host)
        ));
    }
    for u in &listing.unreadable {
        output::warn(format_args!("{} could not be read: {}", u.path, u.why));
    }
    Ok(if listing.unreadable.is_empty() {
        Code::Ok
    } else {
        Code::Partial
    })
}

/// The facts operators look for, on one line: etcd revision, keys, size, hash, cluster
/// version, static pod revisions.
fn facts_line(facts: &[(String, String)]) -> Option<String> {
    let get = |k: &str| {
        facts
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let mut parts = Vec::new();
    if let Some(v) = get(snapshots::KEY_LABEL_FACT) {
        parts.push(format!("written with write key {v}"));
    }
    if let Some(v) = get("etcd.revision") {
        parts.push(format!("etcd revision {v}"));
    }
    if let Some(v) = get("etcd.total_keys") {
        parts.push(format!("{v} keys"));
    }
    if let Some(v) = get("etcd.total_size").or(get("etcd.size")) {
        parts.push(format!(
            "db {}",
            v.parse()
                .map(output::bytes)
                .unwrap_or_else(|_| v.to_string())
        ));
    }
    if let Some(v) = get("etcd.hash") {
        parts.push(format!("hash {v}"));
    }
    if let Some(v) = get("cluster.version") {
        parts.push(format!("cluster {v}"));
    }
    if let Some(v) = get("project.namespaces") {
        parts.push(format!("namespaces {v}"));
    }
    if let Some(v) = get("project.objects") {
        parts.push(format!("{v} objects"));
    }
    if let Some(v) = get("host.presets") {
        parts.push(format!("presets {v}"));
    }
    if let Some(v) = get("inventory.packages") {
        parts.push(format!("{v} packages"));
    }
    if let Some(v) = get("static_pods.revisions") {
        parts.push(format!("static pods {v}"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

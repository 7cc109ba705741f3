//! `cairn backup etcd | static-pods | cluster`.

use super::paths::walk;
use super::{Produced, Session};
use crate::args::{ClusterArgs, EtcdArgs, Global, StaticPodsArgs};
use crate::source::etcd::Connection;
use crate::source::static_pods;
use crate::source::trailer::{BlockCheck, Digest, Verdict};
use anyhow::{bail, Context, Result};
use cairn_format::snapshot::{SnapshotStats, SourceKind};
use cairn_format::tree::{Node, Tree};
use std::io::Read;
use std::time::Duration;

/// bbolt pages are 4 KiB on every platform etcd runs on; chunks at page boundaries
/// deduplicate a day's scattered changes (see format/SPEC.md).
pub const ETCD_PAGE: u32 = 4096;

/// A stored etcd snapshot and what is known about it.
struct EtcdSaved {
    node: Node,
    facts: Vec<(String, String)>,
}

fn connection(a: &EtcdArgs) -> Connection {
    Connection {
        endpoints: a.endpoints.clone(),
        cacert: a.cacert.clone(),
        cert: a.cert.clone(),
        key: a.cert_key.clone(),
        timeout: Duration::from_secs(a.timeout),
    }
}

/// Chunk `reader` into the session as the file `name`, checking the sha256 trailer (and,
/// with `inspect`, computing the bbolt facts from the stream) on a side thread, while the
/// pages are hashed on every core.
fn save_db(
    s: &mut Session<'_>,
    reader: impl Read,
    name: String,
    inspect: bool,
) -> Result<(Node, Digest)> {
    let t = std::time::Instant::now();
    let mut check = BlockCheck::new(inspect);
    let progress = s.progress.clone();
    let (ids, size) = s
        .saver
        .save_pages(reader, ETCD_PAGE, |b| check.feed(b), |n| progress.inc(n))?
        .with_context(|| {
            format!(
                "reading the etcd snapshot ({} bytes read); nothing was saved",
                check.len()
            )
        })?;
    tracing::debug!(
        "etcd: {size} bytes read, hashed and stored in {:?}",
        t.elapsed()
    );
    let digest = check
        .finish()
        .context("the snapshot's sha256 check stopped before the end of the stream")?;
    tracing::debug!(
        "etcd: sha256 trailer and bbolt checks done after {:?}",
        t.elapsed()
    );
    let mut node = cairn_store::host::file_node(name.as_bytes(), ids, size, s.time_ns);
    node.mode = 0o600;
    Ok((node, digest))
}

/// The facts the side thread computed, or why the stream is not an etcd database.
fn bbolt_facts(digest: &Digest, what: &str) -> Result<Vec<(String, String)>> {
    match &digest.bbolt {
        Some(Ok(status)) => Ok(crate::source::bbolt_facts::facts(status)),
        Some(Err(e)) => bail!("{what} is not a readable etcd database: {e}; nothing was saved"),
        None => Ok(Vec::new()),
    }
}

/// Take the etcd snapshot the arguments describe (live or from a file).
fn save_etcd(s: &mut Session<'_>, a: &EtcdArgs) -> Result<EtcdSaved> {
    let mut facts = Vec::new();
    let (node, digest) = if let Some(file) = &a.snapshot_file {
        let f = std::fs::File::open(file)
            .with_context(|| format!("opening etcd snapshot file {}", file.display()))?;
        let given = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let name = if given.starts_with("snapshot_") && given.ends_with(".db") {
            given.to_string()
        } else {
            format!("snapshot_{}.db", s.stamp())
        };
        facts.push(("etcd.source".into(), format!("file {}", file.display())));
        // A file that is not an etcd database is refused before anything is stored; the full
        // inspection runs on the stream, beside chunking.
        crate::source::bbolt_facts::looks_like_bbolt(file)?;
        let saved = save_db(s, f, name, true)?;
        facts.extend(bbolt_facts(&saved.1, &file.display().to_string())?);
        saved
    } else {
        let conn = connection(a);
        let (member, skipped) = conn.select()?;
        for (e, why) in &skipped {
            eprintln!("cairn: skipping etcd endpoint {e}: {why}");
        }
        if !s.g.quiet && !s.g.json {
            eprintln!(
                "using etcd member {} at {} ({}, etcd {}, revision {}, database {}): {}",
                member.id,
                member.endpoint,
                if member.leader { "leader" } else { "follower" },
                member.version,
                member.revision,
                crate::output::bytes(member.db_size.max(0) as u64),
                if skipped.is_empty() {
                    "first healthy endpoint given".to_string()
                } else {
                    format!("first healthy endpoint after {} unhealthy", skipped.len())
                }
            );
        }
        facts.push(("etcd.source".into(), "live".into()));
        facts.push(("etcd.endpoint".into(), member.endpoint.clone()));
        facts.push(("etcd.member".into(), member.id.clone()));
        facts.push(("etcd.version".into(), member.version.clone()));
        if let Some(v) = conn.cluster_version(&member.endpoint) {
            facts.push(("cluster.version".into(), v));
        }
        let reader = conn.snapshot(&member.endpoint)?;
        let saved = save_db(s, reader, format!("snapshot_{}.db", s.stamp()), true)?;
        let what = format!("the snapshot streamed from {}", member.endpoint);
        facts.extend(bbolt_facts(&saved.1, &what)?);
        saved
    };
    match digest.verdict {
        Verdict::Valid => facts.push(("etcd.sha256".into(), "verified".into())),
        Verdict::Invalid if a.skip_hash_check => {
            eprintln!("cairn: warning: the etcd snapshot has no valid sha256 trailer; restoring it will need `etcdctl snapshot restore --skip-hash-check`, which cannot tell a damaged database from a good one");
            facts.push(("etcd.sha256".into(), "missing".into()));
        }
        Verdict::Invalid if a.snapshot_file.is_some() => bail!(
            "the snapshot file has no valid sha256 trailer: it was not written by `etcdctl snapshot save`, or it is damaged or truncated; nothing was saved. Pass --skip-hash-check to keep it anyway"
        ),
        Verdict::Invalid => bail!(
            "the sha256 trailer of the snapshot stream does not match its content: the stream was corrupted or cut short; nothing was saved"
        ),
    }
    facts.push(("etcd.size".into(), node.size.to_string()));
    if let Some(v) = &a.cluster_version {
        facts.retain(|(k, _)| k != "cluster.version");
        facts.push(("cluster.version".into(), v.clone()));
    }
    Ok(EtcdSaved { node, facts })
}

pub fn run_etcd(g: &Global, a: &EtcdArgs) -> Result<super::Saved> {
    let mut s = Session::open(g, &a.common)?;
    let t = std::time::Instant::now();
    super::list_base::offer_previous(&mut s, SourceKind::Etcd);
    tracing::debug!("etcd: previous content list offered in {:?}", t.elapsed());
    let saved = save_etcd(&mut s, a)?;
    let name = String::from_utf8_lossy(&saved.node.name).into_owned();
    let stats = SnapshotStats {
        files: 1,
        files_read: 1,
        bytes: saved.node.size,
        ..SnapshotStats::default()
    };
    s.finish(Produced {
        root: Tree {
            nodes: vec![saved.node],
        },
        source: SourceKind::Etcd,
        paths: vec![format!("/{name}")],
        facts: [vec![("etcd.file".to_string(), name)], saved.facts].concat(),
        parent: None,
        stats,
        unreadable: Vec::new(),
        changed: Vec::new(),
    })
}

fn static_pod_paths(dir: &std::path::Path) -> Result<(Vec<String>, String)> {
    let revs = static_pods::latest(dir)?;
    if revs.is_empty() {
        bail!(
            "no <component>-pod-<revision> directory in {}; is this a control-plane host?",
            dir.display()
        );
    }
    let paths =
        super::paths::absolute_paths(&revs.iter().map(|r| r.path.clone()).collect::<Vec<_>>())?;
    Ok((paths, static_pods::describe(&revs)))
}

pub fn run_static_pods(g: &Global, a: &StaticPodsArgs) -> Result<super::Saved> {
    let (paths, revisions) = static_pod_paths(&a.dir)?;
    let mut s = Session::open(g, &a.common)?;
    let mut produced = walk(&mut s, SourceKind::StaticPods, paths, Default::default())?;
    produced
        .facts
        .push(("static_pods.revisions".into(), revisions));
    s.finish(produced)
}

pub fn run_cluster(g: &Global, a: &ClusterArgs) -> Result<super::Saved> {
    let (paths, revisions) = static_pod_paths(&a.static_pods_dir)?;
    let mut s = Session::open(g, &a.etcd.common)?;
    super::list_base::offer_previous(&mut s, SourceKind::Cluster);
    let saved = save_etcd(&mut s, &a.etcd)?;
    let mut produced = walk(&mut s, SourceKind::Cluster, paths, Default::default())?;
    let name = String::from_utf8_lossy(&saved.node.name).into_owned();
    produced.stats.files += 1;
    produced.stats.files_read += 1;
    produced.stats.bytes += saved.node.size;
    produced.root.nodes.push(saved.node);
    produced.facts.push(("etcd.file".into(), name));
    produced.facts.extend(saved.facts);
    produced
        .facts
        .push(("static_pods.revisions".into(), revisions));
    s.finish(produced)
}

//! `cairn backup etcd | static-pods | cluster`.

use super::{session, session_parts};
use crate::args::{ClusterArgs, EtcdArgs, Global, StaticPodsArgs};
use anyhow::Result;
use cairn_store::backup::etcd::{self as engine, EtcdSource, Note, StaticPodRevisions};
use cairn_store::backup::Saved;
use cairn_store::source::etcd::Connection;

fn source(a: &EtcdArgs) -> EtcdSource {
    EtcdSource {
        connection: Connection {
            endpoints: a.endpoints.clone(),
            cacert: a.cacert.clone(),
            cert: a.cert.clone(),
            key: a.cert_key.clone(),
            timeout: a.timeout,
        },
        snapshot_file: a.snapshot_file.clone(),
        skip_hash_check: a.skip_hash_check,
        cluster_version: a.cluster_version.clone(),
    }
}

/// Print what the engine notes: skipped endpoints and warnings always (stderr), the member
/// chosen unless quiet or JSON.
fn printer(g: &Global) -> impl FnMut(Note) + '_ {
    |note| match note {
        Note::Skipped { endpoint, why } => {
            crate::output::remark(format_args!("skipping etcd endpoint {endpoint}: {why}"))
        }
        Note::Warning(text) => crate::output::warn(format_args!("{text}")),
        Note::Chosen { member, skipped } if !g.quiet && !g.json => eprintln!(
            "using etcd member {} at {} ({}, etcd {}, revision {}, database {}): {}",
            member.id,
            member.endpoint,
            if member.leader { "leader" } else { "follower" },
            member.version,
            member.revision,
            crate::output::bytes(member.db_size.max(0) as u64),
            if skipped == 0 {
                "first healthy endpoint given".to_string()
            } else {
                format!("first healthy endpoint after {skipped} unhealthy")
            }
        ),
        Note::Chosen { .. } => {}
    }
}

pub fn run_etcd(g: &Global, a: &EtcdArgs) -> Result<Saved> {
    let (repo, origin, progress) = session_parts(g, &a.common)?;
    let s = engine::start_etcd(repo, origin, progress)?;
    Ok(engine::etcd(s, &source(a), &mut printer(g))?)
}

pub fn run_static_pods(g: &Global, a: &StaticPodsArgs) -> Result<Saved> {
    // The revisions are looked for before the repository is opened: a host that is not a
    // control-plane host is told so without credentials.
    let pods = StaticPodRevisions::find(&a.dir)?;
    let s = session(g, &a.common)?;
    Ok(engine::static_pods(s, &pods)?)
}

pub fn run_cluster(g: &Global, a: &ClusterArgs) -> Result<Saved> {
    let pods = StaticPodRevisions::find(&a.static_pods_dir)?;
    let (repo, origin, progress) = session_parts(g, &a.etcd.common)?;
    let s = engine::start_cluster(repo, origin, progress)?;
    Ok(engine::cluster(
        s,
        &source(&a.etcd),
        &pods,
        &mut printer(g),
    )?)
}

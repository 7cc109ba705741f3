//! `cairn backup project NS… | --all-namespaces`: the engine is `cairn_store::project`.

use super::session;
use crate::args::{Global, ProjectArgs};
use anyhow::{bail, Context, Result};
use cairn_format::snapshot::{SnapshotStats, SourceKind};
use cairn_store::backup::{Produced, Saved};
use cairn_store::project::export::{self, Options};
use cairn_store::project::layout::ProjectTree;
use cairn_store::project::{discovery, is_namespace, Kube};
use globset::{Glob, GlobSetBuilder};

/// The namespaces to export, sorted.
fn namespaces(kube: &Kube, a: &ProjectArgs) -> Result<Vec<String>> {
    let mut out = if a.all_namespaces {
        let mut b = GlobSetBuilder::new();
        for p in &a.exclude_namespaces {
            b.add(Glob::new(p).with_context(|| format!("invalid --exclude-namespace {p:?}"))?);
        }
        let excluded = b.build()?;
        let mut all = export::namespaces(kube, a.page_size)?;
        all.retain(|ns| !excluded.is_match(ns));
        all
    } else {
        if let Some(bad) = a.namespaces.iter().find(|ns| !is_namespace(ns)) {
            return Err(crate::exit::usage(
                format!("{bad:?} is not a namespace name (lower-case letters, digits and '-', at most 63)"),
                "name the namespaces as `kubectl get namespaces` lists them",
            ));
        }
        a.namespaces.clone()
    };
    out.sort();
    out.dedup();
    if out.is_empty() {
        bail!("no namespace left to export; nothing was saved");
    }
    Ok(out)
}

pub fn run(g: &Global, a: &ProjectArgs) -> Result<Saved> {
    let kube = Kube::connect(&a.kube.connection())?;
    let namespaces = namespaces(&kube, a)?;
    let found = discovery::discover(&kube)?;
    let version = kube
        .get_json("/version")
        .ok()
        .and_then(|v| v.get("gitVersion")?.as_str().map(String::from));
    let mut s = session(g, &a.common)?;
    let policy = s.repo().cdc_policy();
    let mut tree = ProjectTree::default();
    let opts = Options {
        include_owned: a.include_owned,
        page_size: a.page_size,
    };
    let saver = &mut s.saver;
    let exported = export::export(
        &kube,
        &found.types,
        &namespaces,
        &opts,
        |path, doc, mtime| tree.add(saver, policy, path, doc, mtime),
    )?;
    let stats = SnapshotStats {
        files: tree.files,
        dirs: tree.dirs(),
        bytes: tree.bytes,
        files_read: tree.files,
        ..SnapshotStats::default()
    };
    let root = tree.save(&mut s.saver)?;
    let mut facts = vec![
        ("project.namespaces".to_string(), namespaces.join(",")),
        (
            "project.objects".to_string(),
            exported.objects().to_string(),
        ),
        ("project.crds".to_string(), exported.crds.to_string()),
        ("project.types".to_string(), found.types.len().to_string()),
        (
            "project.skipped".to_string(),
            exported.skipped.values().sum::<u64>().to_string(),
        ),
        ("project.server".to_string(), kube.server().to_string()),
        ("project.requests".to_string(), kube.requests().to_string()),
    ];
    if let Some(v) = version {
        facts.push(("kubernetes.version".into(), v));
    }
    if !g.quiet && !g.json {
        for (ns, n) in &exported.per_namespace {
            eprintln!("namespace {ns}: {}", crate::output::count(*n, "object"));
        }
        if exported.crds > 0 {
            eprintln!(
                "their custom resources' definitions: {}",
                crate::output::count(exported.crds, "object")
            );
        }
        for (why, n) in &exported.skipped {
            eprintln!("left out {}: {why}", crate::output::count(*n, "object"));
        }
    }
    let mut unreadable = found.failed;
    unreadable.extend(exported.unreadable);
    Ok(s.finish(Produced {
        root,
        source: SourceKind::Project,
        paths: namespaces.iter().map(|ns| format!("/{ns}")).collect(),
        facts,
        parent: None,
        stats,
        unreadable,
        changed: Vec::new(),
    })?)
}
